//! Everything weftctl prints for people: aligned tables, the connectivity
//! matrix, `get`'s object tables, the lab's tables and progress lines, a node's status. Commands
//! (`cmd/`) compute; these functions only format.

pub(crate) mod check;
pub(crate) mod lab;
pub(crate) mod objects;
pub(crate) mod progress;
pub(crate) mod table;

pub(crate) use table::table;
