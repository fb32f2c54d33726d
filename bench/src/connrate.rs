//! `weft-bench connrate`: new TCP connections per second through a path
//! (for `bench/policy.sh`: the cost of judging each new connection).
//!
//! `--listen ADDR` serves: it accepts each connection and closes it at
//! once (the server closes first, so the client's side ends without
//! TIME_WAIT and a long run does not run out of ephemeral ports).
//! `--connect ADDR` measures: `--concurrency` threads each connect, wait
//! for the server's close (a full round trip: SYN, SYN-ACK, ACK, FIN) and
//! start again, for `--seconds`; it prints one JSON object: connections
//! completed, failed, per second, and the connect-to-close latency p50 and
//! p99. Run each side in its namespace (`ip netns exec`).

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// `weft-bench connrate` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Serve on this address until killed.
    #[arg(long, conflicts_with = "connect")]
    listen: Option<SocketAddr>,
    /// Measure against the server at this address.
    #[arg(long)]
    connect: Option<SocketAddr>,
    /// Client threads, each one connection at a time.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// How long to measure.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

pub(crate) fn main(args: Args) -> Result<()> {
    match (args.listen, args.connect) {
        (Some(addr), None) => serve(addr),
        (None, Some(addr)) => measure(addr, args.concurrency, Duration::from_secs(args.seconds)),
        _ => bail!("give --listen ADDR or --connect ADDR"),
    }
}

fn serve(addr: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
    for conn in listener.incoming() {
        // Dropping the stream closes it: the server's FIN goes first.
        drop(conn);
    }
    Ok(())
}

/// One thread's tally.
#[derive(Default)]
struct Tally {
    done: u64,
    failed: u64,
    latencies_us: Vec<u32>,
}

fn measure(addr: SocketAddr, concurrency: usize, seconds: Duration) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut t = Tally::default();
                let mut buf = [0u8; 16];
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    let ok = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                        .and_then(|mut c| {
                            c.set_read_timeout(Some(Duration::from_secs(2)))?;
                            // Until the server's close.
                            while c.read(&mut buf)? > 0 {}
                            Ok(())
                        })
                        .is_ok();
                    if ok {
                        t.done += 1;
                        let us = at.elapsed().as_micros();
                        t.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                    } else {
                        t.failed += 1;
                    }
                }
                t
            })
        })
        .collect();
    thread::sleep(seconds);
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for w in workers {
        let t = w
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        total.done += t.done;
        total.failed += t.failed;
        total.latencies_us.extend(t.latencies_us);
    }
    let elapsed = started.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    let pct = |p: f64| -> u32 {
        let n = total.latencies_us.len();
        if n == 0 {
            return 0;
        }
        let i = ((n - 1) as f64 * p).round() as usize;
        total.latencies_us.get(i).copied().unwrap_or(0)
    };
    let out = serde_json::json!({
        "connections": total.done,
        "failed": total.failed,
        "seconds": (elapsed * 1000.0).round() / 1000.0,
        "per_second": (total.done as f64 / elapsed).round(),
        "concurrency": concurrency,
        "latency_us_p50": pct(0.5),
        "latency_us_p99": pct(0.99),
    });
    println!("{out}");
    Ok(())
}
