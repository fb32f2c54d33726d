//! Reading `-f` arguments as kubectl does: a file, a directory (its
//! `.yaml`, `.yml` and `.json` files, sorted by name, not recursive), or
//! `-` for standard input. Each file is one document of the request (the
//! control plane splits multi-document YAML and `List`s itself).

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Largest manifest file read (the control plane takes 4 MiB per request).
pub(crate) const MAX_FILE: u64 = 4 * 1024 * 1024;

/// One manifest file: where it came from and its text.
#[derive(Debug, Clone)]
pub(crate) struct ManifestFile {
    /// The path given (or found in a directory), or `-`.
    pub source: String,
    /// The file's bytes.
    pub bytes: Vec<u8>,
}

/// Every file `-f` names, in order.
pub(crate) fn read_all(args: &[String]) -> Result<Vec<ManifestFile>> {
    let mut out = Vec::new();
    let mut stdin_read = false;
    for arg in args {
        if arg == "-" {
            if stdin_read {
                bail!("-f - given twice: standard input can be read once");
            }
            stdin_read = true;
            let mut bytes = Vec::new();
            std::io::stdin()
                .take(MAX_FILE + 1)
                .read_to_end(&mut bytes)
                .context("reading manifests from standard input")?;
            check_size("standard input", bytes.len() as u64)?;
            out.push(ManifestFile {
                source: "-".into(),
                bytes,
            });
            continue;
        }
        let path = Path::new(arg);
        let meta =
            std::fs::metadata(path).with_context(|| format!("the path {arg:?} does not exist"))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            for entry in std::fs::read_dir(path).with_context(|| format!("listing {arg}"))? {
                let p = entry.with_context(|| format!("listing {arg}"))?.path();
                let manifest = p
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
                if manifest && p.is_file() {
                    found.push(p);
                }
            }
            found.sort();
            if found.is_empty() {
                bail!("no .yaml, .yml or .json files in directory {arg}");
            }
            for p in found {
                out.push(read_file(&p)?);
            }
        } else {
            out.push(read_file(path)?);
        }
    }
    if out.is_empty() {
        bail!("no manifests given: use -f FILE, -f DIR or -f -");
    }
    Ok(out)
}

fn read_file(path: &Path) -> Result<ManifestFile> {
    let shown = path.display().to_string();
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {shown}"))?
        .len();
    check_size(&shown, len)?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {shown}"))?;
    Ok(ManifestFile {
        source: shown,
        bytes,
    })
}

fn check_size(what: &str, len: u64) -> Result<()> {
    if len > MAX_FILE {
        bail!("{what} is larger than {MAX_FILE} bytes; split it into several files");
    }
    Ok(())
}

/// Replace the control plane's `documents[i]` references in `message`
/// with the files they came from.
pub(crate) fn name_documents(message: &str, files: &[ManifestFile]) -> String {
    let mut out = message.to_string();
    // Highest index first, so documents[1] does not rewrite documents[12].
    for (i, f) in files.iter().enumerate().rev() {
        out = out.replace(&format!("documents[{i}]"), &f.source);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_read_sorted_and_filtered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.yaml"), "b").unwrap();
        std::fs::write(dir.path().join("a.json"), "a").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let files = read_all(&[dir.path().to_str().unwrap().to_string()]).unwrap();
        let bytes: Vec<&[u8]> = files.iter().map(|f| f.bytes.as_slice()).collect();
        assert_eq!(bytes, [b"a".as_slice(), b"b".as_slice()]);
        let err = read_all(&["/nonexistent/x.yaml".into()]).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn document_indexes_become_file_names() {
        let files: Vec<ManifestFile> = (0..12)
            .map(|i| ManifestFile {
                source: format!("f{i}.yaml"),
                bytes: Vec::new(),
            })
            .collect();
        assert_eq!(
            name_documents("documents[1]: x; documents[11]: y", &files),
            "f1.yaml: x; f11.yaml: y"
        );
    }
}
