//! Binding the API socket: stale-socket detection, mode 0600 from the
//! first moment, and removal of the socket file when serving ends.

use std::fs::{DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use tracing::{debug, info};

use super::ApiError;

/// A bound API socket, not yet served. Dropping it removes the socket file.
#[derive(Debug)]
pub struct ApiListener {
    listener: UnixListener,
    file: SocketFile,
}

/// The socket file, removed on drop if it is still ours (same inode).
#[derive(Debug)]
pub(super) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .map(|m| (m.dev(), m.ino()) == (self.dev, self.ino))
            .unwrap_or(false);
        if ours {
            match std::fs::remove_file(&self.path) {
                Ok(()) => debug!(socket = %self.path.display(), "removed the API socket"),
                Err(e) => {
                    debug!(socket = %self.path.display(), error = %e, "could not remove the API socket")
                }
            }
        }
    }
}

impl ApiListener {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    pub(super) fn into_parts(self) -> (UnixListener, SocketFile) {
        (self.listener, self.file)
    }
}

fn socket_err(path: &Path, source: io::Error) -> ApiError {
    ApiError::Socket {
        path: path.display().to_string(),
        cause: source,
    }
}

/// Binds the API socket at `path` (see the module contract). The listener
/// is non-blocking, ready for [`super::serve_on`].
pub fn bind(path: &Path) -> Result<ApiListener, ApiError> {
    let shown = || path.display().to_string();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| socket_err(path, e))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => return Err(ApiError::InUse { path: shown() }),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                info!(socket = %path.display(), "replacing a stale API socket");
                std::fs::remove_file(path).map_err(|e| socket_err(path, e))?;
            }
            Err(e) => return Err(socket_err(path, e)),
        },
        Ok(_) => return Err(ApiError::NotASocket { path: shown() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(socket_err(path, e)),
    }
    // Bind under a temporary name, restrict it, then rename it into place:
    // the socket is never reachable at a wider mode.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(|e| socket_err(path, e))?;
    let placed = std::fs::set_permissions(&tmp, Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, path))
        .and_then(|()| listener.set_nonblocking(true))
        .and_then(|()| std::fs::symlink_metadata(path));
    match placed {
        Ok(meta) => Ok(ApiListener {
            listener,
            file: SocketFile {
                path: path.to_owned(),
                dev: meta.dev(),
                ino: meta.ino(),
            },
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(socket_err(path, e))
        }
    }
}
