//! Showing strings that came from outside (API callers, stored records) in
//! logs and error messages, safely.
//!
//! Contract: [`untrusted`] wraps a string so that its `Display` is
//! - quoted, with every control character, quote and backslash escaped
//!   (`\n`, `\u{1b}`, ...): a caller cannot start a new log line or emit
//!   terminal escapes;
//! - at most [`SHOWN_CHARS`] characters of the input, followed by `…` and the
//!   input's full length in bytes when it was cut: a caller cannot make a log
//!   line or an error message larger than a few hundred bytes.
//!
//! Every log field and error message in the control plane that quotes a
//! caller's input goes through it.

use std::fmt;

/// Most characters of an untrusted string that are shown.
pub const SHOWN_CHARS: usize = 64;

/// An untrusted string, displayed quoted, escaped and truncated.
#[derive(Clone, Copy)]
pub struct Untrusted<'a>(&'a str);

/// Wrap `s` for display in a log or an error message.
pub fn untrusted(s: &str) -> Untrusted<'_> {
    Untrusted(s)
}

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        f.write_char('"')?;
        let mut cut = false;
        for (shown, c) in self.0.chars().enumerate() {
            if shown == SHOWN_CHARS {
                cut = true;
                break;
            }
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                // Control characters, and the Unicode ones that move or
                // hide text (line/paragraph separators, bidi overrides).
                c if c.is_control()
                    || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
                {
                    write!(f, "\\u{{{:x}}}", u32::from(c))?
                }
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')?;
        if cut {
            write!(f, "… ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_are_quoted_whole() {
        assert_eq!(untrusted("node-1").to_string(), "\"node-1\"");
        assert_eq!(untrusted("").to_string(), "\"\"");
    }

    #[test]
    fn control_characters_cannot_start_a_line() {
        let s = untrusted("a\nINFO forged\r\t\u{1b}[31m\"\\\u{2028}").to_string();
        assert_eq!(s, "\"a\\nINFO forged\\r\\t\\u{1b}[31m\\\"\\\\\\u{2028}\"");
        assert!(!s.chars().any(char::is_control), "{s}");
    }

    #[test]
    fn long_strings_are_cut_with_their_length() {
        let long = "x".repeat(4_000_000);
        let s = untrusted(&long).to_string();
        assert_eq!(
            s,
            format!("\"{}\"… (4000000 bytes)", "x".repeat(SHOWN_CHARS))
        );
        // Exactly the limit is not cut.
        let exact = "y".repeat(SHOWN_CHARS);
        assert_eq!(untrusted(&exact).to_string(), format!("\"{exact}\""));
        // Multi-byte characters are never split.
        let wide = "é".repeat(100);
        let s = untrusted(&wide).to_string();
        assert!(s.ends_with("… (200 bytes)"), "{s}");
        assert_eq!(s.matches('é').count(), SHOWN_CHARS);
    }

    #[test]
    fn the_output_is_bounded_for_any_input() {
        // Worst case: every shown character escapes to \u{10ffff}-like text.
        let nasty = "\u{1}".repeat(10_000);
        assert!(untrusted(&nasty).to_string().len() < 64 * 10 + 40);
    }
}
