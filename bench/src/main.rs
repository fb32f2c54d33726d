//! weft benchmarks.
//!
//! `weft-bench control-plane`: N simulated nodes join a real control plane
//! (a separate process) over gRPC + TLS and hold watches; measures joins/s,
//! convergence, watch fan-out latency and the control plane's CPU and
//! memory. See bench/README.md.
//!
//! `weft-bench flood`: sends valid WireGuard handshake initiations at a
//! fixed rate from many source addresses, for `bench/flood.sh`.
//!
//! `weft-bench connrate`: new TCP connections per second between two
//! namespaces, for `bench/policy.sh`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod connrate;
mod control_plane;
mod flood;
mod procfs;

#[derive(Debug, Parser)]
#[command(name = "weft-bench", version, about = "weft benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Control-plane scale: joins/s, watch convergence, fan-out latency,
    /// server CPU and peak RSS with N simulated nodes.
    ControlPlane(control_plane::Args),
    /// A handshake-initiation flood toward one agent (bench/flood.sh).
    Flood(flood::Args),
    /// New TCP connections per second: a server, or a measuring client
    /// (bench/policy.sh).
    Connrate(connrate::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Flood(args) => {
            return match flood::main(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("weft-bench flood: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Connrate(args) => {
            return match connrate::main(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("weft-bench connrate: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::ControlPlane(args) => args,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weft-bench: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // `block_on` runs the benchmark on this (the main) thread: the control
    // plane child is tied to it by PR_SET_PDEATHSIG.
    let code = runtime.block_on(control_plane::main(args));
    runtime.shutdown_timeout(Duration::from_secs(2));
    match code {
        Ok(code) => code,
        Err(e) => {
            eprintln!("weft-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}
