//! Everything weftctl prints for people: aligned tables, the connectivity
//! matrix, the lab's tables and progress lines, a node's status. Commands
//! (`cmd/`) compute; these functions only format.

pub mod check;
pub mod lab;
pub mod progress;
pub mod table;

pub use table::table;
