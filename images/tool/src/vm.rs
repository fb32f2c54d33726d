//! The client side of a microVM node's command channel.
//!
//! The node image's `/init` serves its second serial port (QEMU connects it
//! to a unix socket, `nK.ctl` in the cluster's state dir): it reads one
//! request per line, `ID BASE64(script)`, runs the script with `sh` (stdin
//! from /dev/null, stdout and stderr together), and answers
//!
//! ```text
//! @@out ID
//! <the output, base64, in lines>
//! @@exit ID STATUS
//! ```
//!
//! Contract: [`exec`] returns within its timeout whatever the VM does;
//! lines that belong to no request of this call (an earlier caller's late
//! answer) are skipped; a malformed answer is an error, never a panic. One
//! command at a time per VM: QEMU accepts one connection on the socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// What a command printed and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandOutput {
    /// Its exit status.
    pub status: i32,
    /// stdout and stderr, interleaved as written.
    pub output: Vec<u8>,
}

impl CommandOutput {
    /// The output as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }
}

/// Why a command could not be run in the VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The socket could not be reached (the VM is not running?).
    #[error("cannot connect to the VM's command channel {path}: {cause}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// Reading or writing the channel failed.
    #[error("command channel {path}: {cause}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// No answer within the timeout.
    #[error("no answer on {path} within {timeout:?} (is the VM up and its /init serving ttyS1?)")]
    Timeout {
        /// The socket.
        path: PathBuf,
        /// The bound.
        timeout: Duration,
    },
    /// The answer did not follow the protocol.
    #[error("command channel {path}: malformed answer: {line}")]
    Malformed {
        /// The socket.
        path: PathBuf,
        /// The offending line.
        line: String,
    },
}

/// Runs the shell script `script` in the VM whose command channel is the
/// unix socket `socket`, waiting at most `timeout` for it to finish.
pub fn exec(socket: &Path, script: &str, timeout: Duration) -> Result<CommandOutput, VmError> {
    let deadline = Instant::now() + timeout;
    let stream = UnixStream::connect(socket).map_err(|cause| VmError::Connect {
        path: socket.to_path_buf(),
        cause,
    })?;
    let io = |cause| VmError::Io {
        path: socket.to_path_buf(),
        cause,
    };
    let id = request_id();
    let mut writer = stream.try_clone().map_err(io)?;
    writer
        .write_all(format!("{id} {}\n", STANDARD.encode(script)).as_bytes())
        .map_err(io)?;
    let mut reader = BufReader::new(stream);
    let mut answer = Answer::new(&id);
    let mut line = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(VmError::Timeout {
                path: socket.to_path_buf(),
                timeout,
            });
        }
        reader.get_ref().set_read_timeout(Some(left)).map_err(io)?;
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => {
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the VM closed the channel",
                )))
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(io(e)),
        }
        let text = String::from_utf8_lossy(&line);
        match answer.feed(text.trim_end_matches(['\r', '\n'])) {
            Ok(Some(done)) => return Ok(done),
            Ok(None) => {}
            Err(bad) => {
                return Err(VmError::Malformed {
                    path: socket.to_path_buf(),
                    line: bad,
                })
            }
        }
    }
}

/// A request id unique to this process and call: letters, digits and '-'.
fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The answer to request `id`, line by line (sans-IO).
#[derive(Debug)]
struct Answer {
    out_marker: String,
    exit_marker: String,
    started: bool,
    base64: String,
}

impl Answer {
    fn new(id: &str) -> Self {
        Answer {
            out_marker: format!("@@out {id}"),
            exit_marker: format!("@@exit {id} "),
            started: false,
            base64: String::new(),
        }
    }

    /// Takes one line; the whole output once the exit line came. Lines
    /// before this request's start are someone else's and skipped.
    fn feed(&mut self, line: &str) -> Result<Option<CommandOutput>, String> {
        if !self.started {
            self.started = line == self.out_marker;
            return Ok(None);
        }
        if let Some(status) = line.strip_prefix(&self.exit_marker) {
            let status: i32 = status.trim().parse().map_err(|_| line.to_string())?;
            let output = STANDARD
                .decode(self.base64.as_bytes())
                .map_err(|_| format!("output is not base64: {}", self.base64))?;
            return Ok(Some(CommandOutput { status, output }));
        }
        if line.starts_with("@@") {
            return Err(line.to_string());
        }
        self.base64.push_str(line.trim());
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_after_someone_elses() {
        let mut a = Answer::new("7-1-5");
        for line in ["@@out 6-0-1", "aGk=", "@@exit 6-0-1 0", "@@out 7-1-5"] {
            assert_eq!(a.feed(line), Ok(None));
        }
        assert_eq!(a.feed("aGVsbG8g"), Ok(None));
        assert_eq!(a.feed("d29ybGQK"), Ok(None));
        assert_eq!(
            a.feed("@@exit 7-1-5 3"),
            Ok(Some(CommandOutput {
                status: 3,
                output: b"hello world\n".to_vec()
            }))
        );
    }

    #[test]
    fn malformed_answers_are_errors() {
        let mut a = Answer::new("1");
        a.feed("@@out 1").unwrap();
        assert!(a.feed("@@exit 1 x").is_err());
        let mut a = Answer::new("1");
        a.feed("@@out 1").unwrap();
        assert!(a.feed("@@out 2").is_err());
        let mut a = Answer::new("1");
        a.feed("@@out 1").unwrap();
        a.feed("!!!").unwrap();
        assert!(a.feed("@@exit 1 0").is_err());
    }

    #[test]
    fn a_fake_vm_over_a_socket() {
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n1.ctl");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(stream.try_clone().unwrap())
                .read_line(&mut line)
                .unwrap();
            let (id, script) = line.trim().split_once(' ').unwrap();
            let script = STANDARD.decode(script).unwrap();
            assert_eq!(script, b"echo hi");
            let mut w = stream;
            write!(w, "noise\r\n@@out {id}\r\naGkK\r\n@@exit {id} 0\r\n").unwrap();
        });
        let out = exec(&path, "echo hi", Duration::from_secs(5)).unwrap();
        assert_eq!(out.text(), "hi\n");
        assert_eq!(out.status, 0);
        server.join().unwrap();

        // Nobody answers: a timeout, not a hang.
        let listener = UnixListener::bind(dir.path().join("mute.ctl")).unwrap();
        let err = exec(
            &dir.path().join("mute.ctl"),
            "true",
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(matches!(err, VmError::Timeout { .. }), "{err}");
        drop(listener);
        let err = exec(&dir.path().join("none.ctl"), "true", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, VmError::Connect { .. }), "{err}");
    }
}
