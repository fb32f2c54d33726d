//! Network namespaces, by path: `/run/netns/NAME` (iproute2's named
//! namespaces) or `/proc/PID/ns/net` (a process's, e.g. a CNI runtime's).
//!
//! Contract:
//! - [`NetNs`] holds an open fd of the namespace, so the namespace stays
//!   alive while any clone of it does, even if its name is deleted.
//! - [`NetNs::create_named`] and [`NetNs::delete_named`] do what
//!   `ip netns add` / `ip netns delete` do, including iproute2's shared
//!   mount setup of `/run/netns`, so `ip -n NAME` sees our namespaces and we
//!   see its. They mount and unmount in the host's mount namespace
//!   ([`crate::kernel::host_mounts`]), so a namespace an agent started by
//!   `ip netns exec` creates is visible on the host and outlives the agent.
//! - [`NetNs::open`] of a path this process's own mount namespace does not
//!   show as a namespace tries the host's view of that path too (when its
//!   `/run/netns` only receives the host's mounts).
//! - [`run_in`] and [`run_in_async`] run a closure on a fresh OS thread that
//!   entered the namespace. Nothing here ever switches the namespace of the
//!   calling thread, so tokio workers and the main thread stay in the host
//!   namespace. Sockets and TUN fds created by the closure belong to the
//!   namespace and can be used from any thread afterwards.

use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::statfs::{fstatfs, NSFS_MAGIC};
use thiserror::Error;
use tracing::debug;

/// Where named network namespaces live (iproute2's `NETNS_RUN_DIR`).
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Why opening, creating, deleting or entering a namespace failed.
#[derive(Debug, Error)]
pub enum NetNsError {
    /// Nothing exists at the path.
    #[error("network namespace {} does not exist", path.display())]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// The path exists but is not a network namespace.
    #[error("{} is not a network namespace ({found})", path.display())]
    NotANetNs {
        /// The path as given.
        path: PathBuf,
        /// What it is instead.
        found: String,
    },
    /// A named namespace of that name already exists.
    #[error("network namespace {name} already exists ({})", path.display())]
    AlreadyExists {
        /// The namespace name.
        name: String,
        /// Its path.
        path: PathBuf,
    },
    /// The name cannot name a file in [`NETNS_RUN_DIR`].
    #[error("invalid network namespace name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The host's mount namespace could not be entered to mount or unmount.
    #[error("{op} {}: {cause}", path.display())]
    HostMounts {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// Why entering failed, and what to do.
        cause: crate::kernel::host_mounts::HostMountsError,
    },
    /// The caller lacks the capability (usually `CAP_SYS_ADMIN`).
    #[error("permission denied {op} {} (needs root or CAP_SYS_ADMIN): {cause}", path.display())]
    PermissionDenied {
        /// What was being done, e.g. "entering network namespace".
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
    /// Any other OS failure.
    #[error("{op} {}: {cause}", path.display())]
    Os {
        /// What was being done, e.g. "bind-mounting a new namespace on".
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
}

impl NetNsError {
    fn os(op: &'static str, path: &Path, source: io::Error) -> Self {
        let path = path.to_owned();
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => Self::PermissionDenied {
                op,
                path,
                cause: source,
            },
            _ => Self::Os {
                op,
                path,
                cause: source,
            },
        }
    }

    fn errno(op: &'static str, path: &Path, errno: Errno) -> Self {
        Self::os(op, path, io::Error::from(errno))
    }
}

/// An open network namespace. Cheap to clone; equal when they are the same
/// namespace.
#[derive(Clone)]
pub struct NetNs {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    file: File,
    dev: u64,
    ino: u64,
}

impl NetNs {
    /// Opens the network namespace at `path`, e.g. `/run/netns/pod1` or
    /// `/proc/1234/ns/net`. Never blocks and never opens anything that is
    /// not a namespace: the path is first resolved to an `O_PATH` handle
    /// (which opens nothing: a FIFO, socket or device is not touched), its
    /// file type and file system are checked on that handle, and only then
    /// is that very inode opened for reading, non-blocking, through
    /// `/proc/self/fd`. The last component may be a link (`/proc/PID/ns/net`
    /// is one), which is why `O_NOFOLLOW` is not used: following it through
    /// an `O_PATH` handle is harmless.
    ///
    /// If this process has a mount namespace of its own and the path is
    /// missing or a plain file there, the host's view of the path is tried
    /// too (a namespace mounted on the host after this process's mount
    /// namespace stopped receiving its mounts).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, NetNsError> {
        let path = path.as_ref();
        match Self::open_here(path) {
            Err(e @ (NetNsError::NotFound { .. } | NetNsError::NotANetNs { .. }))
                if crate::kernel::host_mounts::receives_only() =>
            {
                match crate::kernel::host_mounts::run(|| Self::open_here(path)) {
                    Ok(Ok(ns)) => Ok(ns),
                    _ => Err(e),
                }
            }
            other => other,
        }
    }

    /// [`NetNs::open`] in this thread's own mount namespace only.
    fn open_here(path: &Path) -> Result<Self, NetNsError> {
        let handle = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => NetNsError::NotFound { path: path.into() },
                _ => NetNsError::os("opening network namespace", path, e),
            })?;
        let meta = handle
            .metadata()
            .map_err(|e| NetNsError::os("inspecting", path, e))?;
        check_file_type(&meta, path)?;
        let fs = fstatfs(&handle).map_err(|errno| NetNsError::errno("inspecting", path, errno))?;
        if fs.filesystem_type() != NSFS_MAGIC {
            return Err(NetNsError::NotANetNs {
                path: path.into(),
                found: "a plain file, not a mounted namespace".into(),
            });
        }
        // The same inode, now opened for `setns`; O_NONBLOCK in case the
        // checks above were ever fooled.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
            .map_err(|e| NetNsError::os("opening network namespace", path, e))?;
        drop(handle);
        check_netns(&file, path)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.into(),
                file,
                dev: meta.dev(),
                ino: meta.ino(),
            }),
        })
    }

    /// Opens the named namespace `/run/netns/NAME`.
    pub fn open_named(name: &str) -> Result<Self, NetNsError> {
        Self::open(Self::named_path(name)?)
    }

    /// The network namespace of the calling thread (the host namespace, for
    /// the agent's own threads).
    pub fn current() -> Result<Self, NetNsError> {
        Self::open("/proc/thread-self/ns/net")
    }

    /// The path of the named namespace `NAME`: `/run/netns/NAME`.
    pub fn named_path(name: &str) -> Result<PathBuf, NetNsError> {
        validate_name(name)?;
        Ok(Path::new(NETNS_RUN_DIR).join(name))
    }

    /// Creates the named namespace `NAME`, like `ip netns add NAME`: a new
    /// network namespace bind-mounted on `/run/netns/NAME`, in the host's
    /// mount namespace. Its loopback is down, as with iproute2.
    pub fn create_named(name: &str) -> Result<Self, NetNsError> {
        let path = Self::named_path(name)?;
        crate::kernel::host_mounts::run(|| Self::create_named_here(name, &path)).map_err(
            |cause| NetNsError::HostMounts {
                op: "creating network namespace",
                path: path.clone(),
                cause,
            },
        )?
    }

    /// [`NetNs::create_named`] in this thread's mount namespace.
    fn create_named_here(name: &str, path: &Path) -> Result<Self, NetNsError> {
        let path = path.to_path_buf();
        prepare_run_dir(Path::new(NETNS_RUN_DIR))?;
        // The mount point; O_EXCL makes a concurrent create of the same name
        // fail here rather than stack two mounts.
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o000)
            .open(&path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => NetNsError::AlreadyExists {
                    name: name.into(),
                    path: path.clone(),
                },
                _ => NetNsError::os("creating the mount point", &path, e),
            })?;
        let created = bind_new_netns(&path).and_then(|()| Self::open_here(&path));
        if created.is_err() {
            let _ = umount2(&path, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(&path);
        } else {
            debug!(netns = name, "created network namespace");
        }
        created
    }

    /// Deletes the named namespace `NAME`, like `ip netns delete NAME`:
    /// unmounts and removes `/run/netns/NAME`, in the host's mount
    /// namespace. The namespace itself goes away once no process, fd or
    /// [`NetNs`] refers to it.
    pub fn delete_named(name: &str) -> Result<(), NetNsError> {
        let path = Self::named_path(name)?;
        crate::kernel::host_mounts::run(|| Self::delete_named_here(name, &path)).map_err(
            |cause| NetNsError::HostMounts {
                op: "deleting network namespace",
                path: path.clone(),
                cause,
            },
        )?
    }

    /// [`NetNs::delete_named`] in this thread's mount namespace.
    fn delete_named_here(name: &str, path: &Path) -> Result<(), NetNsError> {
        let path = path.to_path_buf();
        if std::fs::symlink_metadata(&path).is_err() {
            return Err(NetNsError::NotFound { path });
        }
        match umount2(&path, MntFlags::MNT_DETACH) {
            // EINVAL: not a mount point (a stale entry); remove it anyway.
            Ok(()) | Err(Errno::EINVAL) => {}
            Err(errno) => return Err(NetNsError::errno("unmounting", &path, errno)),
        }
        std::fs::remove_file(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => NetNsError::NotFound { path: path.clone() },
            _ => NetNsError::os("removing", &path, e),
        })?;
        debug!(netns = name, "deleted network namespace");
        Ok(())
    }

    /// The path it was opened by.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The namespace's inode number, as in `net:[INODE]`.
    pub fn inode(&self) -> u64 {
        self.inner.ino
    }
}

impl PartialEq for NetNs {
    fn eq(&self, other: &Self) -> bool {
        (self.inner.dev, self.inner.ino) == (other.inner.dev, other.inner.ino)
    }
}

impl Eq for NetNs {}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.file.as_fd()
    }
}

impl fmt::Debug for NetNs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetNs")
            .field("path", &self.inner.path)
            .field("inode", &self.inner.ino)
            .finish()
    }
}

impl fmt::Display for NetNs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner.path.display())
    }
}

/// Runs `f` on a fresh OS thread inside `ns` and returns its result. Blocks
/// the caller until `f` returns; from async code prefer [`run_in_async`].
/// A panic in `f` resumes on the caller.
pub fn run_in<F, T>(ns: &NetNs, f: F) -> Result<T, NetNsError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    thread::scope(|scope| {
        let handle = thread::Builder::new()
            .name("weft-netns".into())
            .spawn_scoped(scope, || enter(ns).map(|()| f()))
            .map_err(|e| NetNsError::os("spawning a thread for", ns.path(), e))?;
        match handle.join() {
            Ok(result) => result,
            Err(panic) => panic::resume_unwind(panic),
        }
    })
}

/// [`run_in`] for async callers: the thread runs `f` while the caller's task
/// waits without blocking its executor. A panic in `f` resumes on the caller.
pub async fn run_in_async<F, T>(ns: &NetNs, f: F) -> Result<T, NetNsError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = futures::channel::oneshot::channel();
    let thread_ns = ns.clone();
    thread::Builder::new()
        .name("weft-netns".into())
        .spawn(move || {
            let result = enter(&thread_ns).map(|()| panic::catch_unwind(AssertUnwindSafe(f)));
            let _ = tx.send(result);
        })
        .map_err(|e| NetNsError::os("spawning a thread for", ns.path(), e))?;
    match rx.await {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(panic))) => panic::resume_unwind(panic),
        Ok(Err(e)) => Err(e),
        Err(_canceled) => Err(NetNsError::os(
            "running a thread in",
            ns.path(),
            io::Error::other("the thread exited without a result"),
        )),
    }
}

/// Refuses anything a namespace file cannot be (nsfs inodes are regular
/// files), naming what it is instead.
fn check_file_type(meta: &std::fs::Metadata, path: &Path) -> Result<(), NetNsError> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let found = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a unix socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    };
    Err(NetNsError::NotANetNs {
        path: path.into(),
        found: found.into(),
    })
}

/// Checks that `file` (opened from `path`, and on nsfs) is a network
/// namespace, not one of another kind, where that can be told: a namespace opened through
/// `/proc` reads `net:[INODE]` in `/proc/self/fd`; a bind-mounted one reads
/// as its path, and its kind shows only when `setns` refuses it.
fn check_netns(file: &File, path: &Path) -> Result<(), NetNsError> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|e| NetNsError::os("inspecting", path, e))?;
    let link = link.to_string_lossy();
    match link.split_once(":[") {
        Some((kind, _)) if kind != "net" && !link.starts_with('/') => Err(NetNsError::NotANetNs {
            path: path.into(),
            found: format!("a {kind} namespace"),
        }),
        _ => Ok(()),
    }
}

/// Moves the calling thread into `ns`. Only for threads this crate spawned
/// for the purpose, which end after their work in the namespace.
pub(crate) fn enter(ns: &NetNs) -> Result<(), NetNsError> {
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|errno| match errno {
        Errno::EINVAL => NetNsError::NotANetNs {
            path: ns.path().into(),
            found: "another kind of namespace: setns(CLONE_NEWNET) refused it".into(),
        },
        _ => NetNsError::errno("entering network namespace", ns.path(), errno),
    })
}

/// iproute2's rules for `ip netns add NAME`: a single path component.
fn validate_name(name: &str) -> Result<(), NetNsError> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name == "." || name == ".." {
        Some("must not be \".\" or \"..\"")
    } else if name.contains('/') {
        Some("must not contain '/'")
    } else if name.contains('\0') {
        Some("must not contain NUL")
    } else if name.len() > 255 {
        Some("longer than 255 bytes")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(NetNsError::InvalidName {
            name: name.into(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Serialises our own setups of the run directory; a concurrent `ip netns
/// add` can still race, as two `ip` processes can.
static RUN_DIR_SETUP: Mutex<()> = Mutex::new(());

/// Creates `dir` and makes it a shared mount point, as iproute2 does, so an
/// unmount in one mount namespace propagates to the others and frees the
/// network namespace sooner.
fn prepare_run_dir(dir: &Path) -> Result<(), NetNsError> {
    let _guard = RUN_DIR_SETUP.lock().unwrap_or_else(PoisonError::into_inner);
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| NetNsError::os("creating", dir, e))?;
    let mut made_mount = false;
    loop {
        let shared = mount(
            None::<&str>,
            dir,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        );
        match shared {
            Ok(()) => return Ok(()),
            // EINVAL: not a mount point yet; bind it onto itself, once.
            Err(Errno::EINVAL) if !made_mount => {
                mount(
                    Some(dir),
                    dir,
                    Some("none"),
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(|errno| NetNsError::errno("bind-mounting onto itself", dir, errno))?;
                made_mount = true;
            }
            Err(errno) => return Err(NetNsError::errno("making a shared mount of", dir, errno)),
        }
    }
}

/// On a helper thread: unshares a new network namespace and bind-mounts it
/// on `path`. The thread ends right after, so no thread stays in it.
fn bind_new_netns(path: &Path) -> Result<(), NetNsError> {
    thread::scope(|scope| {
        let handle = thread::Builder::new()
            .name("weft-netns-add".into())
            .spawn_scoped(scope, || {
                unshare(CloneFlags::CLONE_NEWNET).map_err(|errno| {
                    NetNsError::errno("creating a network namespace for", path, errno)
                })?;
                let tid = nix::unistd::gettid();
                let own = format!("/proc/self/task/{tid}/ns/net");
                mount(
                    Some(own.as_str()),
                    path,
                    Some("none"),
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|errno| NetNsError::errno("bind-mounting a new namespace on", path, errno))
            })
            .map_err(|e| NetNsError::os("spawning a thread for", path, e))?;
        match handle.join() {
            Ok(result) => result,
            Err(panic) => panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_path_components() {
        for bad in ["", ".", "..", "a/b", "/abs", "a\0b"] {
            let err = NetNs::named_path(bad).unwrap_err();
            assert!(
                matches!(err, NetNsError::InvalidName { .. }),
                "{bad:?}: {err}"
            );
        }
        assert_eq!(
            NetNs::named_path("pod-1").unwrap(),
            Path::new("/run/netns/pod-1")
        );
    }

    #[test]
    fn missing_path_is_reported_by_path() {
        let err = NetNs::open("/var/run/netns/weft-no-such-namespace").unwrap_err();
        assert_eq!(
            err.to_string(),
            "network namespace /var/run/netns/weft-no-such-namespace does not exist"
        );
    }

    #[test]
    fn plain_file_is_not_a_namespace() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = NetNs::open(file.path()).unwrap_err();
        assert!(matches!(err, NetNsError::NotANetNs { .. }), "{err}");
    }

    /// What could block `open(2)` or have side effects (a FIFO without a
    /// writer, a socket, a device, a directory) is refused at once, by its
    /// type, without being opened.
    #[test]
    fn fifos_sockets_devices_and_directories_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let sock = dir.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let cases = [
            (fifo.as_path(), "a FIFO (named pipe)"),
            (sock.as_path(), "a unix socket"),
            (Path::new("/dev/null"), "a character device"),
            (dir.path(), "a directory"),
        ];
        for (path, found) in cases {
            // On a thread, so that a regression fails the test instead of
            // hanging it.
            let (tx, rx) = std::sync::mpsc::channel();
            let p = path.to_owned();
            std::thread::spawn(move || {
                let _ = tx.send(NetNs::open(&p).map(|_| ()).map_err(|e| e.to_string()));
            });
            let result = rx
                .recv_timeout(std::time::Duration::from_secs(5))
                .unwrap_or_else(|_| panic!("opening {} blocked", path.display()));
            assert_eq!(
                result,
                Err(format!(
                    "{} is not a network namespace ({found})",
                    path.display()
                ))
            );
        }
    }

    #[test]
    fn current_namespace_opens_and_equals_itself() {
        let a = NetNs::current().unwrap();
        let b = NetNs::open("/proc/self/ns/net").unwrap();
        assert_eq!(a, b);
        assert!(a.inode() > 0);
        let err = NetNs::open("/proc/self/ns/uts").unwrap_err();
        assert!(err.to_string().contains("a uts namespace"), "{err}");
    }
}
