//! `weft-control-plane`: parse flags, set up logging, run the server until
//! SIGINT/SIGTERM. Bad configuration exits 64 with one line saying what.

use clap::Parser;
use weft_control_plane::config::Config;
use weft_control_plane::server::{self, ServerError};

const EXIT_CONFIG: i32 = 64;

/// Cap glibc malloc's arenas at the number of cores. By default glibc makes
/// up to 8 per core, one per thread that allocates; thousands of watch
/// streams served from many threads then fragment memory across them.
/// Measured with `bench/control-plane.sh` (2,000 watchers): peak RSS 295 MiB
/// with the default, 263 MiB capped (mimalloc was worse: 452 MiB).
#[allow(unsafe_code)]
fn cap_malloc_arenas() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arenas = libc::c_int::try_from(cores.max(2)).unwrap_or(2);
    // SAFETY: mallopt only changes allocator tuning; it is called first
    // thing in main, before any other thread exists, as glibc requires for
    // M_ARENA_MAX to take full effect. Its return value (0 on failure) only
    // means the default stays.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

fn main() {
    cap_malloc_arenas();
    let config = match Config::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // One line, exit 64, like every other configuration error.
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("invalid arguments");
            eprintln!(
                "weft-control-plane: {}",
                first.trim_start_matches("error: ")
            );
            std::process::exit(EXIT_CONFIG);
        }
    };
    init_logging(config.log_json);
    let settings = match config.validate() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("weft-control-plane: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weft-control-plane: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(settings.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("weft-control-plane: --listen {}: {e}", settings.listen);
                return EXIT_CONFIG;
            }
        };
        match server::run(settings, listener, shutdown_signal()).await {
            Ok(()) => 0,
            Err(ServerError::Config(e)) => {
                eprintln!("weft-control-plane: {e}");
                EXIT_CONFIG
            }
            Err(e) => {
                eprintln!("weft-control-plane: {e}");
                1
            }
        }
    });
    std::process::exit(code);
}

fn init_logging(json: bool) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal (a log file or journal gets plain text),
    // and never with NO_COLOR set.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
