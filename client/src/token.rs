//! Join tokens: `<id>.<secret>`, a 6-character public id and a 16-character
//! secret, both of `[a-z0-9]` (kubeadm's bootstrap-token format). The control
//! plane stores the id and a hash of the secret; the whole token is shown once.
//!
//! Parsing is strict (no trimming) and every malformation has its own error.
//! Neither `Debug` nor any error message shows the secret.

use std::fmt;
use std::str::FromStr;

use rand::Rng as _;

/// Length of the public token id.
pub(crate) const ID_LEN: usize = 6;
/// Length of the token secret.
pub(crate) const SECRET_LEN: usize = 16;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A well-formed join token.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct JoinToken {
    id: String,
    secret: String,
}

/// Why a string is not a join token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The string is empty.
    #[error("the token is empty; expected <6 chars [a-z0-9]>.<16 chars [a-z0-9]>")]
    Empty,
    /// There is no `.` between id and secret.
    #[error("no '.' found; expected <6 chars [a-z0-9]>.<16 chars [a-z0-9]>")]
    MissingDot,
    /// The id has the wrong length.
    #[error("the token id has {0} characters; expected 6")]
    IdLength(usize),
    /// The id holds a character outside `[a-z0-9]`.
    #[error("the token id has {ch:?} at position {pos}; only [a-z0-9] are allowed")]
    IdChar {
        /// The offending character.
        ch: char,
        /// Its character position in the id, from 0.
        pos: usize,
    },
    /// The secret has the wrong length.
    #[error("the token secret has {0} characters; expected 16")]
    SecretLength(usize),
    /// The secret holds a character outside `[a-z0-9]` (not shown).
    #[error("the token secret has a character outside [a-z0-9] at position {pos}{hint}")]
    SecretChar {
        /// The character position in the secret, from 0.
        pos: usize,
        /// A hint about the kind of character, e.g. " (an uppercase letter)".
        hint: &'static str,
    },
}

impl JoinToken {
    /// A fresh random token from the operating system's RNG.
    pub fn generate() -> Self {
        let mut rng = rand::rngs::OsRng;
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
                .collect()
        };
        let id = pick(ID_LEN);
        let secret = pick(SECRET_LEN);
        Self { id, secret }
    }

    /// The public id (safe to log).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The secret (never log it).
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

fn allowed(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn hint(c: char) -> &'static str {
    if c.is_ascii_uppercase() {
        " (an uppercase letter)"
    } else if c.is_whitespace() {
        " (whitespace)"
    } else if c == '.' {
        " (a second '.')"
    } else {
        ""
    }
}

impl FromStr for JoinToken {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, TokenError> {
        if s.is_empty() {
            return Err(TokenError::Empty);
        }
        let (id, secret) = s.split_once('.').ok_or(TokenError::MissingDot)?;
        if let Some((pos, ch)) = id.chars().enumerate().find(|(_, c)| !allowed(*c)) {
            return Err(TokenError::IdChar { ch, pos });
        }
        if id.len() != ID_LEN {
            return Err(TokenError::IdLength(id.len()));
        }
        if let Some((pos, ch)) = secret.chars().enumerate().find(|(_, c)| !allowed(*c)) {
            return Err(TokenError::SecretChar {
                pos,
                hint: hint(ch),
            });
        }
        if secret.len() != SECRET_LEN {
            return Err(TokenError::SecretLength(secret.len()));
        }
        Ok(Self {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "abc123.0123456789abcdef";

    fn err(s: &str) -> TokenError {
        s.parse::<JoinToken>().unwrap_err()
    }

    #[test]
    fn parses_and_displays_back() {
        let t: JoinToken = GOOD.parse().unwrap();
        assert_eq!(t.id(), "abc123");
        assert_eq!(t.secret(), "0123456789abcdef");
        assert_eq!(t.to_string(), GOOD);
    }

    #[test]
    fn every_malformation_has_its_error() {
        assert_eq!(err(""), TokenError::Empty);
        assert_eq!(err("abc1230123456789abcdef"), TokenError::MissingDot);
        assert_eq!(err("abc12.0123456789abcdef"), TokenError::IdLength(5));
        assert_eq!(err("abc1234.0123456789abcdef"), TokenError::IdLength(7));
        assert_eq!(err(".0123456789abcdef"), TokenError::IdLength(0));
        assert_eq!(
            err("abC123.0123456789abcdef"),
            TokenError::IdChar { ch: 'C', pos: 2 }
        );
        assert_eq!(
            err(" abc123.0123456789abcdef"),
            TokenError::IdChar { ch: ' ', pos: 0 }
        );
        assert_eq!(err("abc123.0123456789abcde"), TokenError::SecretLength(15));
        assert_eq!(
            err("abc123.0123456789abcdef0"),
            TokenError::SecretLength(17)
        );
        assert_eq!(err("abc123."), TokenError::SecretLength(0));
        assert_eq!(
            err("abc123.0123456789ABCDEF"),
            TokenError::SecretChar {
                pos: 10,
                hint: " (an uppercase letter)"
            }
        );
        assert_eq!(
            err("abc123.0123456789abcdef\n"),
            TokenError::SecretChar {
                pos: 16,
                hint: " (whitespace)"
            }
        );
        assert_eq!(
            err("abc123.01234567.89abcdef"),
            TokenError::SecretChar {
                pos: 8,
                hint: " (a second '.')"
            }
        );
        assert_eq!(
            err("abc123.0123456789abcdé"),
            TokenError::SecretChar { pos: 14, hint: "" }
        );
        assert_eq!(
            err("abcdé1.0123456789abcdef"),
            TokenError::IdChar { ch: 'é', pos: 4 }
        );
    }

    #[test]
    fn errors_do_not_show_the_secret() {
        for bad in [
            "abc123.SECRETSECRETSECRE",
            "abc123.secretsecretsecret",
            "ab.secretsecretsecr",
        ] {
            let msg = err(bad).to_string();
            assert!(!msg.to_lowercase().contains("secretsecret"), "{msg}");
        }
        let t: JoinToken = GOOD.parse().unwrap();
        assert!(!format!("{t:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn messages_say_what_is_expected() {
        assert!(err("x")
            .to_string()
            .contains("<6 chars [a-z0-9]>.<16 chars [a-z0-9]>"));
        assert_eq!(
            err("abc12.0123456789abcdef").to_string(),
            "the token id has 5 characters; expected 6"
        );
    }

    #[test]
    fn generated_tokens_parse_and_differ() {
        let a = JoinToken::generate();
        let b = JoinToken::generate();
        assert_ne!(a, b);
        for t in [a, b] {
            assert_eq!(t.to_string().parse::<JoinToken>().unwrap(), t);
        }
    }
}
