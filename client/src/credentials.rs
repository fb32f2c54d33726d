//! [`Credentials`]: a JSON file holding where the control plane is, the
//! cluster CA, and a client certificate and key. It is the format of
//! `admin.conf` and of a node agent's stored credential.
//!
//! [`Credentials::load`] checks the PEM fields as well as the JSON shape, so a
//! broken file is reported when it is read, naming the file and the field.
//! [`Credentials::save`] writes atomically (temporary file, fsync, rename)
//! with mode 0600, since the file holds a private key.

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{pem, ClientError};

/// A client credential for the control plane.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The control plane's address, `host:port`.
    pub server: String,
    /// The cluster CA certificate (PEM) that verifies the server.
    pub ca_pem: String,
    /// The client certificate (PEM) issued by the cluster CA.
    pub cert_pem: String,
    /// The client certificate's private key (PEM).
    pub key_pem: String,
    /// Who this credential is: `"admin"` or the node name.
    pub name: String,
}

impl Credentials {
    /// Reads and checks a credentials file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).map_err(|cause| ClientError::ReadCredentials {
            path: path.to_path_buf(),
            cause,
        })?;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "credentials file is readable by others; it should be mode 0600");
            }
        }
        let creds: Credentials =
            serde_json::from_str(&text).map_err(|cause| ClientError::ParseCredentials {
                path: path.to_path_buf(),
                cause,
            })?;
        creds
            .check()
            .map_err(|reason| ClientError::InvalidCredentials {
                path: path.to_path_buf(),
                reason,
            })?;
        Ok(creds)
    }

    /// Checks every field: a `host:port` server, a CA certificate, a client
    /// certificate and a private key. Returns what is wrong, naming the field.
    pub fn check(&self) -> Result<(), String> {
        crate::connect::endpoint(&self.server).map_err(|e| format!("field \"server\": {e}"))?;
        pem::certs("CA certificate", &self.ca_pem).map_err(|e| format!("field \"ca_pem\": {e}"))?;
        pem::certs("client certificate", &self.cert_pem)
            .map_err(|e| format!("field \"cert_pem\": {e}"))?;
        pem::private_key("client key", &self.key_pem)
            .map_err(|e| format!("field \"key_pem\": {e}"))?;
        if self.name.is_empty() {
            return Err("field \"name\" is empty".to_string());
        }
        Ok(())
    }

    /// Writes the file atomically with mode 0600, creating its directory if
    /// needed.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ClientError> {
        let path = path.as_ref();
        let mut json =
            serde_json::to_string_pretty(self).map_err(|e| ClientError::WriteCredentials {
                path: path.to_path_buf(),
                cause: std::io::Error::other(e),
            })?;
        json.push('\n');
        write_private_file(path, json.as_bytes())
            .map_err(|(path, cause)| ClientError::WriteCredentials { path, cause })
    }
}

/// Writes `contents` to `path` atomically with mode 0600, creating its
/// directory if needed. On error, returns the path that failed with the error.
fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), (PathBuf, std::io::Error)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| (dir.to_path_buf(), e))?;
    }
    weft_files::write_atomic(path, contents, 0o600).map_err(|e| (path.to_path_buf(), e))
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .field("name", &self.name)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Credentials {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(vec![])
            .unwrap()
            .self_signed(&ca_key)
            .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        Credentials {
            server: "127.0.0.1:7443".to_string(),
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            name: "admin".to_string(),
        }
    }

    #[test]
    fn save_then_load_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/admin.conf");
        let creds = sample();
        creds.save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Credentials::load(&path).unwrap(), creds);
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn save_replaces_an_open_file_and_tightens_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.conf");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        sample().save(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(Credentials::load(&path).is_ok());
    }

    #[test]
    fn missing_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.conf");
        let err = Credentials::load(&path).unwrap_err();
        assert!(
            matches!(err, ClientError::ReadCredentials { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("nope.conf") && msg.contains("No such file"),
            "{msg}"
        );
    }

    #[test]
    fn bad_json_names_the_path_and_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.conf");
        fs::write(&path, "{\"server\": \"x:1\",\n oops}").unwrap();
        let err = Credentials::load(&path).unwrap_err();
        assert!(
            matches!(err, ClientError::ParseCredentials { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("bad.conf") && msg.contains("line 2"), "{msg}");

        fs::write(&path, "{\"server\": \"x:1\"}").unwrap();
        let msg = Credentials::load(&path).unwrap_err().to_string();
        assert!(msg.contains("missing field `ca_pem`"), "{msg}");
    }

    #[test]
    fn bad_fields_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.conf");
        type Spoil = fn(&mut Credentials);
        let cases: [(Spoil, &str); 5] = [
            (
                |c| c.ca_pem = "junk".into(),
                "field \"ca_pem\": bad CA certificate",
            ),
            (|c| c.cert_pem = String::new(), "field \"cert_pem\""),
            (|c| c.key_pem = c.cert_pem.clone(), "field \"key_pem\""),
            (|c| c.server = "no-port".into(), "field \"server\""),
            (|c| c.name = String::new(), "field \"name\" is empty"),
        ];
        for (spoil, want) in cases {
            let mut creds = sample();
            spoil(&mut creds);
            creds.save(&path).unwrap();
            let err = Credentials::load(&path).unwrap_err();
            assert!(
                matches!(err, ClientError::InvalidCredentials { .. }),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains("c.conf") && msg.contains(want),
                "{msg} lacks {want}"
            );
        }
    }

    #[test]
    fn debug_hides_the_key() {
        let creds = sample();
        assert!(!format!("{creds:?}").contains("PRIVATE KEY"));
    }
}
