//! Output: aligned text tables for people, JSON for scripts.

/// How a list command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned table.
    Table,
    /// JSON, one document.
    Json,
}

pub use weftctl::text::table;
