//! Test-owned servers and clients inside lab namespaces: each runs on a
//! thread that entered the namespace (`setns` changes only the calling
//! thread's network namespace), so no program outside this test binary is
//! needed. Every wait is bounded; servers stop with their guard.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};

/// Runs `f` on a new thread in the network namespace at `netns`.
pub(crate) fn in_ns<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = netns.to_path_buf();
    thread::spawn(move || {
        let ns = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        setns(ns, CloneFlags::CLONE_NEWNET).expect("setns into the namespace");
        f()
    })
}

/// Runs `f` in the namespace at `netns` and waits for it.
pub(crate) fn run_in<T: Send + 'static>(netns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    in_ns(netns, f).join().expect("the namespace thread")
}

/// One datagram or connection a server saw: the peer's address, and when.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    pub(crate) peer: SocketAddr,
    pub(crate) at: Instant,
}

/// A TCP or UDP server in a namespace: answers each TCP connection with
/// `name` and the client's address, echoes each datagram prefixed with
/// `name`, and records what it saw. Stops when dropped.
pub(crate) struct Server {
    pub(crate) seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub(crate) fn tcp(netns: &Path, port: u16, name: &str) -> Self {
        Self::start(netns, port, name, true)
    }

    pub(crate) fn udp(netns: &Path, port: u16, name: &str) -> Self {
        Self::start(netns, port, name, false)
    }

    fn start(netns: &Path, port: u16, name: &str, tcp: bool) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st, name) = (seen.clone(), stop.clone(), name.to_string());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let netns: PathBuf = netns.to_path_buf();
        let thread = in_ns(&netns, move || {
            let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
            if tcp {
                let l = TcpListener::bind(addr).expect("bind the TCP server");
                l.set_nonblocking(true).unwrap();
                ready_tx.send(()).unwrap();
                while !st.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((mut c, peer)) => {
                            s.lock().unwrap().push(Seen {
                                peer,
                                at: Instant::now(),
                            });
                            let _ = c.set_nonblocking(false);
                            let _ = c.write_all(format!("{name} {peer}\n").as_bytes());
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(2))
                        }
                        Err(e) => panic!("accept: {e}"),
                    }
                }
            } else {
                let u = UdpSocket::bind(addr).expect("bind the UDP server");
                u.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                ready_tx.send(()).unwrap();
                let mut buf = [0u8; 1500];
                while !st.load(Ordering::Relaxed) {
                    if let Ok((n, peer)) = u.recv_from(&mut buf) {
                        s.lock().unwrap().push(Seen {
                            peer,
                            at: Instant::now(),
                        });
                        let mut out = name.clone().into_bytes();
                        out.push(b' ');
                        out.extend_from_slice(&buf[..n]);
                        let _ = u.send_to(&out, peer);
                    }
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the server binds");
        Self {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What one TCP connect got.
#[derive(Debug)]
pub(crate) enum Got {
    /// The server's line: its name and the client address it saw.
    Line(String),
    /// Refused (a RST).
    Refused,
    /// Anything else (timeout, unreachable, ...), said in failure
    /// messages (through `Debug`).
    Other(#[allow(dead_code)] String),
}

/// Connects to `dst` (from the thread's namespace) and reads one line.
pub(crate) fn fetch(dst: SocketAddr, timeout: Duration) -> Got {
    match TcpStream::connect_timeout(&dst, timeout) {
        Ok(mut c) => {
            c.set_read_timeout(Some(timeout)).unwrap();
            let mut s = String::new();
            match c.read_to_string(&mut s) {
                Ok(_) if !s.is_empty() => Got::Line(s.trim_end().to_string()),
                Ok(_) => Got::Other("empty answer".into()),
                Err(e) => Got::Other(format!("read: {e}")),
            }
        }
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Got::Refused,
        Err(e) => Got::Other(e.to_string()),
    }
}

/// `n` connections to `dst` from the namespace at `netns`.
pub(crate) fn fetch_n(netns: &Path, dst: SocketAddr, n: usize) -> Vec<Got> {
    run_in(netns, move || {
        (0..n).map(|_| fetch(dst, Duration::from_secs(5))).collect()
    })
}

/// Connects to `dst` from `netns` until a line comes back, for up to
/// `within`; the last result otherwise.
pub(crate) fn until_served(netns: &Path, dst: SocketAddr, within: Duration) -> Got {
    run_in(netns, move || {
        let deadline = Instant::now() + within;
        loop {
            let got = fetch(dst, Duration::from_secs(2));
            if matches!(got, Got::Line(_)) || Instant::now() >= deadline {
                return got;
            }
            thread::sleep(Duration::from_millis(100));
        }
    })
}

/// `n` UDP sockets in a namespace, each connected to `dst` (so each is one
/// flow) and sending a datagram every `every` until dropped.
pub(crate) struct UdpSenders {
    /// The sockets' local ports.
    pub(crate) ports: Vec<u16>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpSenders {
    pub(crate) fn start(netns: &Path, dst: SocketAddr, n: usize, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let (ports_tx, ports_rx) = std::sync::mpsc::channel();
        let thread = in_ns(netns, move || {
            let sockets: Vec<UdpSocket> = (0..n)
                .map(|_| {
                    let u = UdpSocket::bind("0.0.0.0:0").expect("bind a UDP client");
                    u.connect(dst).expect("connect the UDP client");
                    u.set_nonblocking(true).unwrap();
                    u
                })
                .collect();
            let ports = sockets
                .iter()
                .map(|u| u.local_addr().unwrap().port())
                .collect::<Vec<_>>();
            ports_tx.send(ports).unwrap();
            let mut buf = [0u8; 1500];
            while !st.load(Ordering::Relaxed) {
                for u in &sockets {
                    // Errors (an ICMP error of an earlier send) are not
                    // this test's concern; the servers count arrivals.
                    let _ = u.send(b"ping");
                    while u.recv(&mut buf).is_ok() {}
                }
                thread::sleep(every);
            }
        });
        let ports = ports_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the UDP clients start");
        Self {
            ports,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for UdpSenders {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
