//! `weft-bench flood`: a WireGuard handshake-initiation flooder for
//! `bench/flood.sh`. It sends valid initiations (right MAC1 for the
//! target's public key, made with boringtun from throwaway static keys the
//! target does not know) at a fixed rate, round-robin from many local
//! source addresses and ports, to one target. Every one is worth a
//! Diffie-Hellman to a target that processes it; none carries a cookie.
//!
//! Only for namespaces the benchmark made: it sends to the address it is
//! given and nowhere else. Prints one JSON line: what it sent.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine as _;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};

/// Flags of `weft-bench flood`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where to send: the target agent's WireGuard `IP:PORT`.
    #[arg(long)]
    target: SocketAddr,
    /// The target's WireGuard public key (base64), for MAC1.
    #[arg(long)]
    key: String,
    /// Local source addresses to send from (each must be assigned here).
    #[arg(long, value_delimiter = ',', required = true)]
    sources: Vec<IpAddr>,
    /// Sockets (source ports) per source address.
    #[arg(long, default_value_t = 4)]
    ports: usize,
    /// Initiations per second in all (0: as fast as it can).
    #[arg(long, default_value_t = 300_000)]
    rate: u64,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 15.0)]
    seconds: f64,
    /// Distinct initiations to cycle through.
    #[arg(long, default_value_t = 256)]
    distinct: usize,
}

/// `count` initiations toward `target` from throwaway keys.
fn initiations(target: [u8; 32], count: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let secret = StaticSecret::from(rand::random::<[u8; 32]>());
        let mut tunn = Tunn::new(secret, PublicKey::from(target), None, None, i as u32, None)
            .map_err(|e| anyhow::anyhow!("making an initiation: {e}"))?;
        let mut buf = vec![0u8; 256];
        match tunn.format_handshake_initiation(&mut buf, false) {
            TunnResult::WriteToNetwork(msg) => out.push(msg.to_vec()),
            _ => bail!("boringtun made no initiation"),
        }
    }
    Ok(out)
}

pub(crate) fn main(args: Args) -> anyhow::Result<()> {
    let key: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(args.key.trim())
        .ok()
        .and_then(|k| k.try_into().ok())
        .context("--key: expected base64 of 32 bytes")?;
    let messages = initiations(key, args.distinct.max(1))?;
    let mut sockets = Vec::new();
    for ip in &args.sources {
        for _ in 0..args.ports.max(1) {
            let s = UdpSocket::bind(SocketAddr::new(*ip, 0))
                .with_context(|| format!("binding a socket on {ip}"))?;
            s.set_nonblocking(true)?;
            sockets.push(s);
        }
    }
    let duration = Duration::from_secs_f64(args.seconds.max(0.0));
    let start = Instant::now();
    let (mut sent, mut refused) = (0u64, 0u64);
    let mut i = 0usize;
    while start.elapsed() < duration {
        for _ in 0..256 {
            let socket = &sockets[i % sockets.len()];
            let message = &messages[i % messages.len()];
            match socket.send_to(message, args.target) {
                Ok(_) => sent += 1,
                Err(_) => refused += 1,
            }
            i = i.wrapping_add(1);
        }
        if args.rate > 0 {
            // Pace: never ahead of rate * elapsed.
            let due = Duration::from_secs_f64(sent as f64 / args.rate as f64);
            if let Some(ahead) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "sent": sent,
            "send_errors": refused,
            "seconds": elapsed,
            "rate": sent as f64 / elapsed.max(1e-9),
            "sources": args.sources.len(),
            "sockets": sockets.len(),
        })
    );
    Ok(())
}
