//! OCI image layouts, written without a registry or a container daemon.
//!
//! [`write_layout`] turns a directory tree into an [OCI image layout] packed
//! in one tar (what `ctr images import`, `skopeo copy oci-archive:` and
//! `podman load` read):
//!
//! ```text
//! oci-layout                      {"imageLayoutVersion":"1.0.0"}
//! index.json                      one manifest, named by annotations
//! blobs/sha256/<config>           the image config (entrypoint, env, diff_ids)
//! blobs/sha256/<layer>            the tree as a gzip-compressed tar
//! blobs/sha256/<manifest>         config + layer descriptors
//! ```
//!
//! Contract: the output depends only on the tree ([`layer`]'s rules), the
//! [`ImageSpec`] and the mtime given; every digest is the SHA-256 of the
//! bytes it names. No clock is read (the config has no `created`).
//!
//! [OCI image layout]: https://github.com/opencontainers/image-spec/blob/main/image-layout.md

pub mod layer;
mod layout;

use std::path::{Path, PathBuf};

pub use layout::{write_layout, LayoutSummary};

/// Media types of the OCI image spec.
pub mod media {
    /// `index.json` and image indexes.
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// An image manifest.
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// An image config.
    pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// A gzip-compressed layer tar.
    pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
}

/// What the image is called and how it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageSpec {
    /// The full reference, e.g. `docker.io/weft/weft-agent:0.1.0`: recorded
    /// as `io.containerd.image.name` (containerd names the imported image
    /// by it) and, its tag, as `org.opencontainers.image.ref.name`.
    pub name: String,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd` (arguments after the entrypoint).
    pub cmd: Vec<String>,
    /// `Env`, each `KEY=VALUE`.
    pub env: Vec<String>,
    /// `Labels`, also copied to the manifest's annotations.
    pub labels: Vec<(String, String)>,
    /// `WorkingDir` (empty: `/`).
    pub working_dir: String,
}

impl ImageSpec {
    /// Checks the name and the environment entries.
    pub fn validate(&self) -> Result<(), OciError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 255
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:@".contains(&b))
            && tag(&self.name).is_some();
        if !name_ok {
            return Err(OciError::BadSpec(format!(
                "image name '{}' must be a lowercase reference with a tag, e.g. docker.io/weft/weft-agent:0.1.0",
                self.name
            )));
        }
        if let Some(bad) = self.env.iter().find(|e| !e.contains('=')) {
            return Err(OciError::BadSpec(format!(
                "environment entry '{bad}' must be KEY=VALUE"
            )));
        }
        Ok(())
    }
}

/// The tag of a reference `repo:tag` (not a port of the registry part).
fn tag(name: &str) -> Option<&str> {
    let last = name.rsplit('/').next()?;
    let (_, tag) = last.split_once(':')?;
    (!tag.is_empty()).then_some(tag)
}

/// Why a layout could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// Reading the tree or writing the output failed.
    #[error("{path}: {cause}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The root of the tree is not a directory.
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    /// The tree holds a device, a fifo or a socket.
    #[error("{0}: only regular files, directories and symlinks can go in a layer")]
    UnsupportedFile(PathBuf),
    /// The image spec is unusable.
    #[error("{0}")]
    BadSpec(String),
}

impl OciError {
    pub(crate) fn io(path: &Path, cause: std::io::Error) -> Self {
        OciError::Io {
            path: path.to_path_buf(),
            cause,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_need_a_tag() {
        let mut spec = ImageSpec {
            name: "docker.io/weft/weft-agent:0.1.0".into(),
            ..ImageSpec::default()
        };
        assert!(spec.validate().is_ok());
        assert_eq!(tag(&spec.name), Some("0.1.0"));
        for bad in ["", "Weft:1", "localhost:5000/weft", "weft:", "a b:1"] {
            spec.name = bad.into();
            assert!(spec.validate().is_err(), "{bad}");
        }
        spec.name = "localhost:5000/weft:1".into();
        assert_eq!(tag(&spec.name), Some("1"));
        spec.env = vec!["PATH".into()];
        assert!(spec
            .validate()
            .unwrap_err()
            .to_string()
            .contains("KEY=VALUE"));
    }
}
