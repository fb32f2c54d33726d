//! `weft-agent`: parse flags, set up logging, run the agent until
//! SIGINT/SIGTERM (or `weft-agent leave`). Bad configuration exits 64 with
//! one line saying what; other failures exit 1.

#![forbid(unsafe_code)]

use anyhow::Context as _;
use weft_node_agent::agent::{self, ConfigError, Invocation, RunError};

const EXIT_CONFIG: i32 = 64;

fn main() {
    let invocation = match agent::parse(std::env::args_os()) {
        Ok(i) => i,
        Err(ConfigError::Usage(e)) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            eprintln!("weft-agent: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    let json = match &invocation {
        Invocation::Run(c) => c.log_json,
        Invocation::Leave(c) => c.log_json,
    };
    weft_node_agent::logging::init("info", json);
    let code = match real_main(invocation) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("weft-agent: {e:#}");
            if e.downcast_ref::<RunError>()
                .is_some_and(RunError::is_config)
            {
                EXIT_CONFIG
            } else {
                1
            }
        }
    };
    std::process::exit(code);
}

fn real_main(invocation: Invocation) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        match invocation {
            Invocation::Run(cfg) => Ok(agent::run(cfg, shutdown_signal()).await?),
            Invocation::Leave(cfg) => {
                let msg = agent::leave(&cfg).await?;
                println!("{msg}");
                Ok(())
            }
        }
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; stop with SIGINT");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down (the node stays in the cluster)");
}
