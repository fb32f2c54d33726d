//! Everything weftctl prints for people: aligned tables, the connectivity
//! matrix, `get`'s object tables, the lab's tables and progress lines, a node's status. Commands
//! (`cmd/`) compute; these functions only format.

pub mod check;
pub mod lab;
pub mod objects;
pub mod progress;
pub mod table;

pub use table::table;
