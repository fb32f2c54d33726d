//! Two checks on the workspace's messages, by reading its sources:
//!
//! - The messages the docs quote are messages weft prints: every error
//!   quoted in a troubleshooting table (its first column, in backticks) or
//!   in an example block of `weft-agent: ...` lines in docs/ is looked for
//!   in the workspace's Rust sources, piece by piece (the parts that vary,
//!   written `...`, `"x"`, `<name>` or numbers in the docs, are left out).
//!   A doc that quotes a message the code no longer prints fails here,
//!   naming the piece that is missing.
//! - No `thiserror` variant both prints its cause (`{source}`, `{0}`) and
//!   returns it from `source()` (a field named `source`, `#[source]` or
//!   `#[from]`): anyhow's `{:#}` would print that cause twice.

use std::path::{Path, PathBuf};

/// The workspace root (this crate is one level down).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("weftctl lives in the workspace")
        .to_path_buf()
}

/// Every `.rs` file under the workspace's crates (not `target/`), joined,
/// with Rust's `\`-newline string continuations undone so a message split
/// over source lines reads whole.
fn sources() -> String {
    fn walk(dir: &Path, out: &mut String) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if name != "target" && !name.to_string_lossy().starts_with('.') {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    out.push_str(&join_continuations(&text));
                    out.push('\n');
                }
            }
        }
    }
    let mut all = String::new();
    walk(&root(), &mut all);
    all
}

/// `"abc \` + newline + spaces + `def"` -> `"abc def"`.
fn join_continuations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("\\\n") {
        out.push_str(&rest[..i]);
        rest = rest[i + 2..].trim_start_matches([' ', '\t']);
    }
    out.push_str(rest);
    out
}

/// The quoted messages of one doc: backticked spans in the first column of
/// the rows of its "Troubleshooting" tables, and the lines of code blocks
/// that start with `weft-agent: ` or `weft-control-plane: `.
fn quoted_messages(doc: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut in_troubleshooting = false;
    let mut in_block = false;
    for line in doc.lines() {
        if line.starts_with("## ") {
            in_troubleshooting = line.contains("Troubleshooting");
        }
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            for prefix in ["weft-agent: ", "weft-control-plane: "] {
                if let Some(msg) = line.strip_prefix(prefix) {
                    found.push(msg.to_string());
                }
            }
            continue;
        }
        if in_troubleshooting && line.starts_with("| ") && !line.starts_with("| symptom") {
            let first = line[2..].split(" | ").next().unwrap_or("");
            // ``a `b` c`` spans when the message holds backticks itself.
            let delimiter = if first.contains("``") { "``" } else { "`" };
            let mut parts = first.split(delimiter);
            parts.next();
            while let (Some(span), _) = (parts.next(), parts.next()) {
                found.push(span.trim().to_string());
            }
        }
    }
    found
}

/// Texts that come from the OS or other libraries, not from weft's code.
const FOREIGN: &[&str] = &[
    "No such file or directory",
    "Address already in use",
    "Permission denied",
    "Connection refused",
];

/// Whether a word of a quoted message stands for something that varies:
/// it holds a digit (`node-7`, `192.0.2.1:7443`, `weft0`), is a path
/// (`/var/...`), an ellipsis, a quoted value (`"x"`, `'lab'`), a
/// placeholder (`<name>`), or a parenthesised enum name (`(Unauthenticated)`,
/// printed with `{:?}`).
fn varies(word: &str) -> bool {
    let bare = word.trim_end_matches([';', ':', ',', '.']);
    let enum_name = bare.starts_with('(')
        && bare.ends_with(')')
        && bare[1..].starts_with(|c: char| c.is_ascii_uppercase())
        && bare[1..bare.len() - 1]
            .chars()
            .all(|c| c.is_ascii_alphanumeric());
    word.chars().any(|c| c.is_ascii_digit())
        || word.starts_with('/')
        || word.contains("...")
        || word.contains(['"', '\'', '<', '>'])
        || enum_name
}

/// The literal pieces of a quoted message: the runs of words between the
/// parts that vary (see [`varies`]), backticked commands and the OS's
/// texts, cut at every ": "
/// too (a message is often a context, a colon and a cause, each from
/// another format string); only runs of two or more words.
fn pieces(message: &str) -> Vec<String> {
    let mut text = message.to_string();
    for foreign in FOREIGN {
        text = text.replace(foreign, " ... ");
    }
    // A command or value in backticks inside a message is often built at
    // run time (a profile flag, a name): it counts as varying.
    while let Some(start) = text.find('`') {
        let end = text[start + 1..]
            .find('`')
            .map_or(text.len(), |e| start + e + 2);
        text.replace_range(start..end, " ... ");
    }
    while let Some(start) = text.find("(os error ") {
        let end = text[start..]
            .find(')')
            .map_or(text.len(), |e| start + e + 1);
        text.replace_range(start..end, " ... ");
    }
    let mut pieces = Vec::new();
    for segment in text.split(": ") {
        let mut run: Vec<&str> = Vec::new();
        for word in segment.split_whitespace().chain(std::iter::once("...")) {
            if varies(word) {
                if run.len() >= 2 {
                    pieces.push(run.join(" "));
                }
                run.clear();
            } else {
                run.push(word);
            }
        }
    }
    pieces
}

#[test]
fn pieces_leave_out_what_varies() {
    assert_eq!(
        pieces("join token ... is used up"),
        vec!["join token", "is used up"]
    );
    assert_eq!(
        pieces("node name \"x\" is held by a live node"),
        vec!["node name", "is held by a live node"]
    );
    assert_eq!(
        pieces("binding UDP port 51820 for WireGuard: it is already in use"),
        vec!["binding UDP port", "for WireGuard", "it is already in use"]
    );
    assert_eq!(
        pieces("reading credentials /x: No such file or directory (os error 2)"),
        vec!["reading credentials"]
    );
    assert_eq!(
        pieces("joining as node-7: the control plane refused (Unauthenticated): x"),
        vec!["joining as", "the control plane refused"]
    );
}

/// The variants of `source_text` (one file) that print a cause they also
/// return from `source()`, as "line N: the error attribute".
fn doubled_causes(source_text: &str) -> Vec<String> {
    let lines: Vec<&str> = source_text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(start) = line.find("#[error(") else {
            continue;
        };
        if line[start..].starts_with("#[error(transparent") {
            continue;
        }
        // The attribute (it may span lines), then the variant up to the
        // next attribute or the end of its fields.
        let mut attribute = String::new();
        let mut j = i;
        while j < lines.len() {
            attribute.push_str(lines[j]);
            if lines[j].trim_end().ends_with(")]") {
                break;
            }
            j += 1;
        }
        let mut body = String::new();
        for next in lines.iter().skip(j + 1) {
            if next.contains("#[error(") || next.trim() == "}" {
                break;
            }
            body.push_str(next);
            body.push('\n');
            if next.trim_start().starts_with("},") || next.trim_end().ends_with("),") {
                break;
            }
        }
        let named_source = body.lines().any(|l| l.trim_start().starts_with("source:"));
        let marked = body.contains("#[source]") || body.contains("#[from]");
        let prints_source = attribute.contains("{source");
        let prints_zero = attribute.contains("{0");
        if (prints_source && (named_source || marked)) || (prints_zero && marked) {
            found.push(format!("line {}: {}", i + 1, attribute.trim()));
        }
    }
    found
}

#[test]
fn the_doubled_cause_check_finds_what_it_looks_for() {
    let bad = r#"
enum E {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("starting: {0}")]
    Start(#[from] std::io::Error),
    #[error("fine: {cause}")]
    Fine { cause: std::io::Error },
    #[error(transparent)]
    Inner(#[from] Other),
}
"#;
    let found = doubled_causes(bad);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("line 3:"), "{found:?}");
    assert!(found[1].starts_with("line 8:"), "{found:?}");
}

#[test]
fn no_error_prints_a_cause_it_also_returns_as_its_source() {
    fn walk(dir: &Path, found: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if name != "target" && !name.to_string_lossy().starts_with('.') {
                    walk(&path, found);
                }
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.ends_with("weftctl/tests/messages.rs")
            {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for hit in doubled_causes(&text) {
                    found.push(format!("{}: {hit}", path.display()));
                }
            }
        }
    }
    let mut found = Vec::new();
    walk(&root(), &mut found);
    assert!(
        found.is_empty(),
        "these print their cause and also return it from source() (anyhow's {{:#}} \
         prints it twice): rename the field (e.g. `cause`) or drop #[from]/#[source]:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_quoted_message_is_printed_by_the_code() {
    let code = sources();
    let docs = root().join("docs");
    let mut missing = Vec::new();
    let mut checked = 0;
    for doc in ["control-plane.md", "agent.md", "lab.md", "cni.md"] {
        let text = std::fs::read_to_string(docs.join(doc)).expect("the doc exists");
        for message in quoted_messages(&text) {
            for piece in pieces(&message) {
                checked += 1;
                if !code.contains(&piece) {
                    missing.push(format!("docs/{doc}: {piece:?} (from `{message}`)"));
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} pieces found: is the parser lost?"
    );
    assert!(
        missing.is_empty(),
        "quoted in the docs but printed nowhere in the code:\n{}",
        missing.join("\n")
    );
}
