//! A layer: a directory tree as a tar whose bytes depend only on the tree's
//! names, contents, permission bits and symlink targets.
//!
//! Contract: entries are sorted by path (byte order), every directory comes
//! before what it holds, owners are root (0:0), every mtime is the given
//! one; regular files, directories and symlinks only (anything else is an
//! error naming it). Hard links are stored as separate files.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::OciError;

/// The uncompressed layer tar of the tree at `root` (which itself becomes
/// the image's `/`), every entry with mtime `mtime` (seconds since 1970).
pub fn tree_tar(root: &Path, mtime: u64) -> Result<Vec<u8>, OciError> {
    let meta = fs::metadata(root).map_err(|e| OciError::io(root, e))?;
    if !meta.is_dir() {
        return Err(OciError::NotADirectory(root.to_path_buf()));
    }
    let mut entries = Vec::new();
    collect(root, Path::new(""), &mut entries)?;
    let mut builder = tar::Builder::new(Vec::new());
    for rel in entries {
        append(&mut builder, root, &rel, mtime)?;
    }
    builder
        .into_inner()
        .map_err(|e| OciError::io(Path::new("<layer tar>"), e))
}

/// Every path under `dir` (relative to the root), depth first, sorted.
fn collect(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<(), OciError> {
    let dir = root.join(rel);
    let mut names = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| OciError::io(&dir, e))? {
        names.push(entry.map_err(|e| OciError::io(&dir, e))?.file_name());
    }
    names.sort();
    for name in names {
        let child = rel.join(&name);
        let meta = fs::symlink_metadata(root.join(&child))
            .map_err(|e| OciError::io(&root.join(&child), e))?;
        out.push(child.clone());
        if meta.is_dir() {
            collect(root, &child, out)?;
        }
    }
    Ok(())
}

fn append(
    builder: &mut tar::Builder<Vec<u8>>,
    root: &Path,
    rel: &Path,
    mtime: u64,
) -> Result<(), OciError> {
    let path = root.join(rel);
    let meta = fs::symlink_metadata(&path).map_err(|e| OciError::io(&path, e))?;
    let mut header = tar::Header::new_gnu();
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_mode(meta.permissions().mode() & 0o7777);
    let io = |e| OciError::io(&path, e);
    let kind = meta.file_type();
    if kind.is_dir() {
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        let name = format!("{}/", rel.display());
        builder
            .append_data(&mut header, name, std::io::empty())
            .map_err(io)
    } else if kind.is_symlink() {
        let target = fs::read_link(&path).map_err(io)?;
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder.append_link(&mut header, rel, target).map_err(io)
    } else if kind.is_file() {
        let data = fs::read(&path).map_err(io)?;
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        builder
            .append_data(&mut header, rel, data.as_slice())
            .map_err(io)
    } else {
        Err(OciError::UnsupportedFile(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/local/bin")).unwrap();
        fs::write(root.join("usr/local/bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(
            root.join("usr/local/bin/tool"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        fs::write(root.join("a.conf"), b"x=1\n").unwrap();
        fs::set_permissions(root.join("a.conf"), fs::Permissions::from_mode(0o644)).unwrap();
        symlink("/usr/local/bin/tool", root.join("link")).unwrap();
        dir
    }

    #[test]
    fn same_tree_same_bytes_and_sorted_root_owned_entries() {
        let dir = tree();
        let a = tree_tar(dir.path(), 0).unwrap();
        // Touch a file's mtime and rewrite it with the same bytes.
        fs::write(dir.path().join("a.conf"), b"x=1\n").unwrap();
        let b = tree_tar(dir.path(), 0).unwrap();
        assert_eq!(a, b);

        let mut archive = tar::Archive::new(a.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            assert_eq!(h.uid().unwrap(), 0);
            assert_eq!(h.gid().unwrap(), 0);
            assert_eq!(h.mtime().unwrap(), 0);
            seen.push((
                entry.path().unwrap().display().to_string(),
                h.mode().unwrap(),
                h.entry_type(),
            ));
        }
        let names: Vec<&str> = seen.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "a.conf",
                "link",
                "usr/",
                "usr/local/",
                "usr/local/bin/",
                "usr/local/bin/tool"
            ]
        );
        assert_eq!(seen[5].1, 0o755);
        assert_eq!(seen[0].1, 0o644);
        assert_eq!(seen[1].2, tar::EntryType::Symlink);
    }

    #[test]
    fn content_and_mtime_change_the_bytes() {
        let dir = tree();
        let a = tree_tar(dir.path(), 0).unwrap();
        assert_ne!(a, tree_tar(dir.path(), 1).unwrap());
        fs::write(dir.path().join("a.conf"), b"x=2\n").unwrap();
        assert_ne!(a, tree_tar(dir.path(), 0).unwrap());
    }

    #[test]
    fn refuses_a_missing_root_and_odd_files() {
        let dir = tree();
        let err = tree_tar(&dir.path().join("nope"), 0).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let file = dir.path().join("a.conf");
        assert!(matches!(
            tree_tar(&file, 0),
            Err(OciError::NotADirectory(_))
        ));
        nix::unistd::mkfifo(
            &dir.path().join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let err = tree_tar(dir.path(), 0).unwrap_err();
        assert!(err.to_string().contains("fifo"), "{err}");
    }
}
