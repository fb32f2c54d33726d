//! The node's WireGuard (X25519) key pair, [`NodeKey`]: the one key type of
//! the agent. The cluster client announces its public half; the engine's
//! tunnels and gate use the pair. It is generated on first start and kept
//! in `<state-dir>/private.key` as standard base64 (the format of
//! `wg genkey`), mode 0600.
//!
//! Contract: [`NodeKey::load_or_generate`] creates the file only if it does
//! not exist. An existing file is used as is, or refused with a
//! [`KeyError`] that names the file and says what to do: if group or others
//! may read it, or if it is not base64 of exactly 32 bytes. It never
//! overwrites a key, since a new key is a new identity for the peers.
//! Neither `Debug` nor any error shows the private key.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use boringtun::x25519::{PublicKey, StaticSecret};
use rand::RngCore as _;

use weft_files::write_atomic;

/// Why the private key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file exists but could not be read, or a new one not written.
    #[error("private key {path}: {op}: {cause}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The IO error.
        cause: io::Error,
    },
    /// Group or others may read (or write) the file.
    #[error(
        "private key {path} has mode {mode:04o}: group or others can access it; \
         run `chmod 600 {path}` (the agent refuses to use a key others may have read)"
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file does not hold standard base64 of 32 bytes.
    #[error(
        "private key {path} is malformed: {reason}; expected the standard base64 of 32 bytes \
         (the output of `wg genkey`), or remove the file to have a new key generated \
         (a new key changes the node's identity)"
    )]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The node's X25519 key pair.
#[derive(Clone)]
pub struct NodeKey {
    secret: StaticSecret,
    public: PublicKey,
}

impl NodeKey {
    /// A fresh key from the operating system's RNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    /// The key pair for a private key.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret);
        Self { secret, public }
    }

    /// Parses the base64 text of a key file (surrounding whitespace allowed).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("the file is empty".to_string());
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| format!("not standard base64 ({e})"))?;
        let bytes = <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| format!("it decodes to {} bytes, not 32", bytes.len()))?;
        Ok(Self::from_bytes(bytes))
    }

    /// Loads the key from `path`, or generates one and writes it there
    /// (mode 0600) if the file does not exist. Returns the key and whether
    /// it was generated.
    pub fn load_or_generate(path: &Path) -> Result<(Self, bool), KeyError> {
        match Self::load(path) {
            Ok(key) => Ok((key, false)),
            Err(KeyError::Io { cause, .. }) if cause.kind() == io::ErrorKind::NotFound => {
                let key = Self::generate();
                let mut text = key.private_base64();
                text.push('\n');
                write_atomic(path, text.as_bytes(), 0o600).map_err(|source| KeyError::Io {
                    path: path.to_path_buf(),
                    op: "writing a new key",
                    cause: source,
                })?;
                tracing::info!(path = %path.display(), public_key = %key.public_base64(), "generated a new WireGuard key");
                Ok((key, true))
            }
            Err(e) => Err(e),
        }
    }

    /// Loads an existing key file, checking its mode and contents.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let io_err = |op, source| KeyError::Io {
            path: path.to_path_buf(),
            op,
            cause: source,
        };
        let meta = fs::metadata(path).map_err(|e| io_err("inspecting", e))?;
        if !meta.is_file() {
            return Err(KeyError::Malformed {
                path: path.to_path_buf(),
                reason: "it is not a regular file".to_string(),
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let bytes = fs::read(path).map_err(|e| io_err("reading", e))?;
        let text = String::from_utf8(bytes).map_err(|_| KeyError::Malformed {
            path: path.to_path_buf(),
            reason: "it is not text".to_string(),
        })?;
        Self::parse(&text).map_err(|reason| KeyError::Malformed {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// The X25519 secret (for boringtun, inside [`crate::wg`] only).
    pub(super) fn secret(&self) -> &StaticSecret {
        &self.secret
    }

    /// The X25519 public key (for boringtun, inside [`crate::wg`] only).
    pub(super) fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The private key bytes.
    pub fn private_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    /// The public key bytes.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.public.to_bytes()
    }

    /// The public key as standard base64 (what the control plane stores).
    pub fn public_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.public.as_bytes())
    }

    fn private_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.secret.as_bytes())
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey")
            .field("public", &self.public_base64())
            .field("private", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_then_load_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("private.key");
        let (a, created) = NodeKey::load_or_generate(&path).unwrap();
        assert!(created);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (b, created) = NodeKey::load_or_generate(&path).unwrap();
        assert!(!created);
        assert_eq!(a.public_bytes(), b.public_bytes());
        assert_eq!(a.private_bytes(), b.private_bytes());
    }

    #[test]
    fn known_vector() {
        // RFC 7748 section 6.1, Alice.
        let private: [u8; 32] = [
            0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2,
            0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5,
            0x1d, 0xb9, 0x2c, 0x2a,
        ];
        let key = NodeKey::from_bytes(private);
        assert_eq!(
            hex(&key.public_bytes()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn malformed_and_exposed_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("private.key");
        for (text, want) in [
            ("", "the file is empty"),
            ("not base64!", "not standard base64"),
            ("AAAA", "decodes to 3 bytes, not 32"),
        ] {
            write_atomic(&path, text.as_bytes(), 0o600).unwrap();
            let msg = NodeKey::load(&path).unwrap_err().to_string();
            assert!(msg.contains(want), "{msg}");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
        }
        let (key, _) = {
            fs::remove_file(&path).unwrap();
            NodeKey::load_or_generate(&path).unwrap()
        };
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = NodeKey::load_or_generate(&path).unwrap_err();
        assert!(
            matches!(err, KeyError::Permissions { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
        // The key was not overwritten.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            NodeKey::load(&path).unwrap().public_bytes(),
            key.public_bytes()
        );
        assert!(!format!("{key:?}").contains(&key.private_base64()));
    }
}
