//! Output: aligned text tables for people, JSON for scripts.

/// How a list command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Text for people: aligned tables, one-line results.
    Table,
    /// JSON, one document.
    Json,
}

/// Prints `text` to stdout, ignoring a closed pipe (`weftctl ... | head`).
pub(crate) fn print_out(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
