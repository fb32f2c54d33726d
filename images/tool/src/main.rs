//! `weft-image`: the helper images/'s recipes call (see docs/images.md).
//!
//! - `weft-image oci --rootfs DIR --name REF --out FILE [...]` writes an OCI
//!   image layout tar of the tree DIR (reproducibly: same inputs, same
//!   bytes).
//! - `weft-image vm-exec SOCKET -- COMMAND...` runs a command in a microVM
//!   node over its command channel, prints its output and exits with its
//!   status (125 when the channel itself fails).

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use weft_images::oci::{write_layout, ImageSpec};
use weft_images::vm;

/// weft's image helper: OCI layouts and the microVM command channel.
#[derive(Debug, Parser)]
#[command(name = "weft-image", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write an OCI image layout tar (for `ctr images import`) whose one
    /// layer is the directory tree --rootfs.
    Oci {
        /// The tree that becomes the image's `/`.
        #[arg(long, value_name = "DIR")]
        rootfs: PathBuf,
        /// The image's reference, with a tag (docker.io/weft/weft-agent:0.1.0).
        #[arg(long, value_name = "REF")]
        name: String,
        /// Where the layout tar goes.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// One word of the entrypoint (repeat for more).
        #[arg(long, value_name = "WORD", allow_hyphen_values = true)]
        entrypoint: Vec<String>,
        /// One word of the default arguments (repeat for more).
        #[arg(long, value_name = "WORD", allow_hyphen_values = true)]
        cmd: Vec<String>,
        /// An environment variable, KEY=VALUE (repeat for more).
        #[arg(long, value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// A label, KEY=VALUE (repeat for more).
        #[arg(long, value_name = "KEY=VALUE")]
        label: Vec<String>,
        /// Every file's mtime, seconds since 1970.
        #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
        mtime: u64,
    },
    /// Run a command in a microVM node (images/node/run exec calls this).
    VmExec {
        /// The node's command socket (nK.ctl in the cluster's state dir).
        socket: PathBuf,
        /// The longest the command may take, in seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// The command and its arguments (joined with spaces and run by sh).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Oci {
            rootfs,
            name,
            out,
            entrypoint,
            cmd,
            env,
            label,
            mtime,
        } => {
            let labels = label
                .iter()
                .map(|l| {
                    l.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect::<Option<Vec<_>>>();
            let Some(labels) = labels else {
                eprintln!("weft-image: --label must be KEY=VALUE");
                return ExitCode::from(64);
            };
            let spec = ImageSpec {
                name,
                entrypoint,
                cmd,
                env,
                labels,
                working_dir: String::new(),
            };
            match oci(&rootfs, &spec, mtime, &out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("weft-image: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::VmExec {
            socket,
            timeout,
            command,
        } => match vm::exec(&socket, &command.join(" "), Duration::from_secs(timeout)) {
            Ok(out) => {
                let mut stdout = std::io::stdout();
                let _ = stdout.write_all(&out.output);
                let _ = stdout.flush();
                ExitCode::from(u8::try_from(out.status).unwrap_or(1))
            }
            Err(e) => {
                eprintln!("weft-image: {e}");
                ExitCode::from(125)
            }
        },
    }
}

fn oci(rootfs: &std::path::Path, spec: &ImageSpec, mtime: u64, out: &PathBuf) -> Result<()> {
    let tmp = out.with_extension("tar.tmp");
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let summary = write_layout(rootfs, spec, mtime, &mut file);
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
    };
    file.sync_all()
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("renaming to {}", out.display()))?;
    println!(
        "{}: {} ({} bytes; layer {} bytes, {} unpacked)",
        out.display(),
        summary.manifest_digest,
        summary.archive_size,
        summary.layer_size,
        summary.layer_uncompressed_size
    );
    Ok(())
}
