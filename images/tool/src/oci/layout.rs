//! The image's JSON documents and the layout tar around them.

use std::io::Write;
use std::path::Path;

use flate2::{Compression, GzBuilder};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{layer, media, tag, ImageSpec, OciError};

/// What [`write_layout`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutSummary {
    /// The manifest's digest (`sha256:...`): the image's identity.
    pub manifest_digest: String,
    /// The config's digest (containerd's and docker's "image id").
    pub config_digest: String,
    /// The compressed layer's digest.
    pub layer_digest: String,
    /// The uncompressed layer's digest (the config's `diff_ids`).
    pub diff_id: String,
    /// The compressed layer's size in bytes.
    pub layer_size: u64,
    /// The uncompressed layer's size in bytes.
    pub layer_uncompressed_size: u64,
    /// The whole layout tar's size in bytes.
    pub archive_size: u64,
}

/// Writes the OCI layout tar of the image whose `/` is the tree at `rootfs`
/// to `out`; every file time (in the layer and in the layout tar) is
/// `mtime`.
pub fn write_layout(
    rootfs: &Path,
    spec: &ImageSpec,
    mtime: u64,
    out: &mut impl Write,
) -> Result<LayoutSummary, OciError> {
    spec.validate()?;
    let tar = layer::tree_tar(rootfs, mtime)?;
    let diff_id = digest(&tar);
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::default());
    gz.write_all(&tar)
        .and_then(|_| gz.try_finish())
        .map_err(|e| OciError::io(Path::new("<gzip>"), e))?;
    let layer_gz = gz
        .finish()
        .map_err(|e| OciError::io(Path::new("<gzip>"), e))?;
    let layer_digest = digest(&layer_gz);

    let config = to_bytes(&config_json(spec, &diff_id));
    let config_digest = digest(&config);
    let labels: Map<String, Value> = spec
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::MANIFEST,
        "config": descriptor(media::CONFIG, &config_digest, config.len()),
        "layers": [descriptor(media::LAYER_GZIP, &layer_digest, layer_gz.len())],
    });
    if !labels.is_empty() {
        manifest["annotations"] = Value::Object(labels);
    }
    let manifest = to_bytes(&manifest);
    let manifest_digest = digest(&manifest);
    let mut entry = descriptor(media::MANIFEST, &manifest_digest, manifest.len());
    entry["platform"] = json!({ "architecture": "amd64", "os": "linux" });
    entry["annotations"] = json!({
        "io.containerd.image.name": spec.name,
        "org.opencontainers.image.ref.name": tag(&spec.name).unwrap_or_default(),
    });
    let index = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": media::INDEX,
        "manifests": [entry],
    }));

    let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
    let mut files: Vec<(String, &[u8])> = vec![
        (blob(&config_digest), &config),
        (blob(&layer_digest), &layer_gz),
        (blob(&manifest_digest), &manifest),
    ];
    files.sort();
    let mut archive = tar::Builder::new(Vec::new());
    let oci_layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let mut all: Vec<(String, &[u8])> = vec![
        ("oci-layout".to_string(), oci_layout.as_slice()),
        ("index.json".to_string(), &index),
    ];
    all.extend(files);
    for dir in ["blobs/", "blobs/sha256/"] {
        append(&mut archive, dir, None, mtime)?;
    }
    for (name, data) in &all {
        append(&mut archive, name, Some(data), mtime)?;
    }
    let bytes = archive
        .into_inner()
        .map_err(|e| OciError::io(Path::new("<layout tar>"), e))?;
    out.write_all(&bytes)
        .map_err(|e| OciError::io(Path::new("<output>"), e))?;
    Ok(LayoutSummary {
        manifest_digest,
        config_digest,
        layer_digest,
        diff_id,
        layer_size: layer_gz.len() as u64,
        layer_uncompressed_size: tar.len() as u64,
        archive_size: bytes.len() as u64,
    })
}

/// The image config: platform, run settings and the layer's diff id.
fn config_json(spec: &ImageSpec, diff_id: &str) -> Value {
    let mut run = Map::new();
    if !spec.entrypoint.is_empty() {
        run.insert("Entrypoint".into(), json!(spec.entrypoint));
    }
    if !spec.cmd.is_empty() {
        run.insert("Cmd".into(), json!(spec.cmd));
    }
    if !spec.env.is_empty() {
        run.insert("Env".into(), json!(spec.env));
    }
    let dir = if spec.working_dir.is_empty() {
        "/"
    } else {
        &spec.working_dir
    };
    run.insert("WorkingDir".into(), json!(dir));
    if !spec.labels.is_empty() {
        let labels: Map<String, Value> = spec
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        run.insert("Labels".into(), Value::Object(labels));
    }
    json!({
        "architecture": "amd64",
        "os": "linux",
        "config": Value::Object(run),
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    })
}

fn descriptor(media_type: &str, digest: &str, size: usize) -> Value {
    json!({ "mediaType": media_type, "digest": digest, "size": size })
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn to_bytes(value: &Value) -> Vec<u8> {
    // Serializing a Value cannot fail (string keys, no non-finite floats).
    serde_json::to_vec(value).unwrap_or_default()
}

fn append(
    archive: &mut tar::Builder<Vec<u8>>,
    name: &str,
    data: Option<&[u8]>,
    mtime: u64,
) -> Result<(), OciError> {
    let mut header = tar::Header::new_gnu();
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    let body = data.unwrap_or_default();
    match data {
        Some(_) => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
        }
        None => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
        }
    }
    header.set_size(body.len() as u64);
    archive
        .append_data(&mut header, name, body)
        .map_err(|e| OciError::io(Path::new(name), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Read;

    fn spec() -> ImageSpec {
        ImageSpec {
            name: "docker.io/weft/test:1.2".into(),
            entrypoint: vec!["/bin/tool".into()],
            cmd: vec!["--flag".into()],
            env: vec!["PATH=/bin".into()],
            labels: vec![("org.opencontainers.image.title".into(), "test".into())],
            working_dir: String::new(),
        }
    }

    fn files(archive: &[u8]) -> HashMap<String, Vec<u8>> {
        let mut out = HashMap::new();
        let mut a = tar::Archive::new(archive);
        for entry in a.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            out.insert(name, data);
        }
        out
    }

    fn blob<'a>(files: &'a HashMap<String, Vec<u8>>, digest: &str) -> &'a [u8] {
        let name = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
        files.get(&name).unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn a_layout_whose_digests_name_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/tool"), b"tool").unwrap();
        let mut out = Vec::new();
        let summary = write_layout(dir.path(), &spec(), 0, &mut out).unwrap();
        assert_eq!(summary.archive_size, out.len() as u64);

        let files = files(&out);
        assert_eq!(files["oci-layout"], br#"{"imageLayoutVersion":"1.0.0"}"#);
        let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
        assert_eq!(index["schemaVersion"], 2);
        let m = &index["manifests"][0];
        assert_eq!(m["digest"], summary.manifest_digest.as_str());
        assert_eq!(
            m["annotations"]["io.containerd.image.name"],
            "docker.io/weft/test:1.2"
        );
        assert_eq!(m["annotations"]["org.opencontainers.image.ref.name"], "1.2");

        // Every descriptor's digest and size match the blob.
        for (name, data) in &files {
            if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                if !hex.is_empty() {
                    assert_eq!(digest(data), format!("sha256:{hex}"));
                }
            }
        }
        let manifest: Value =
            serde_json::from_slice(blob(&files, &summary.manifest_digest)).unwrap();
        assert_eq!(m["size"], blob(&files, &summary.manifest_digest).len());
        assert_eq!(manifest["config"]["digest"], summary.config_digest.as_str());
        assert_eq!(manifest["layers"][0]["mediaType"], media::LAYER_GZIP);
        let config: Value = serde_json::from_slice(blob(&files, &summary.config_digest)).unwrap();
        assert_eq!(config["config"]["Entrypoint"][0], "/bin/tool");
        assert_eq!(config["config"]["Env"][0], "PATH=/bin");
        assert_eq!(config["rootfs"]["diff_ids"][0], summary.diff_id.as_str());

        // The layer unpacks to the tree, and its diff id is its tar's digest.
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(blob(&files, &summary.layer_digest))
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(digest(&tar), summary.diff_id);
        let layer = self::files(&tar);
        assert_eq!(layer["bin/tool"], b"tool");
    }

    #[test]
    fn reproducible_and_sensitive_to_inputs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"1").unwrap();
        let build = |s: &ImageSpec, mtime| {
            let mut out = Vec::new();
            write_layout(dir.path(), s, mtime, &mut out).unwrap();
            out
        };
        let a = build(&spec(), 0);
        assert_eq!(a, build(&spec(), 0));
        assert_ne!(a, build(&spec(), 7));
        let mut other = spec();
        other.cmd.clear();
        assert_ne!(a, build(&other, 0));
    }

    #[test]
    fn bad_specs_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = spec();
        s.name = "no-tag".into();
        let mut out = Vec::new();
        assert!(write_layout(dir.path(), &s, 0, &mut out).is_err());
        assert!(out.is_empty());
    }
}
