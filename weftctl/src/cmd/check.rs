//! `weftctl check`: the connectivity check of a cluster on real hosts, the
//! same check `weftctl lab up` ends with ([`weft_lab::check`]):
//!
//! - `inventory`: this node's part (name, overlay address, pods), from its
//!   agent, as JSON;
//! - `run`: the checks whose source is on this node (or all of them, where
//!   every source's namespace is on this machine), given the inventories of
//!   every node;
//! - `cluster`: both, on every node through a command prefix (`ssh
//!   root@{host}`), then the whole matrix. The Vagrant lab runs this.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use weft_agent_api::{AgentClient, StatusResult};
use weft_lab::check::{self, Connectivity, Inventory, InventoryNode, InventoryPod, Probe};

use super::pod::AgentSocket;
use crate::duration;
use crate::output::{print_out, Format};
use crate::render::check as render;

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub socket: AgentSocket,
    #[command(subcommand)]
    pub command: CheckCommand,
}

/// Echo requests per check and the bound of each.
#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// Echo requests per check; a check passes if any reply comes back.
    #[arg(short = 'c', long, default_value_t = check::COUNT)]
    pub count: u32,
    /// The bound of one check ("3s", "1m", or seconds).
    #[arg(long, value_parser = duration::parse, default_value = "3s")]
    pub timeout: Duration,
    /// First wait until this node's agent has every other node of the
    /// inventory as a peer, at most this long (0: do not wait).
    #[arg(long, value_parser = duration::parse, default_value = "30s")]
    pub wait: Duration,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CheckCommand {
    /// This node's part of the inventory, from its agent (JSON).
    ///
    /// The node's name and overlay address, and its pods (name, address,
    /// network namespace): what `weftctl check run` needs from every node.
    Inventory,
    /// Ping from this node and its pods to every pod and node (root).
    ///
    /// Given the inventories of all nodes (from `weftctl check inventory`),
    /// runs the checks whose source is this node or one of its pods: each
    /// pod pings every other pod and every node's overlay address, the node
    /// pings every pod and every other node. Prints the rows of the matrix
    /// (or, with -o json, the results for `weftctl check cluster`); exits 1
    /// if any check fails.
    Run {
        /// An inventory (JSON); `-` reads standard input. Repeat for one
        /// file per node.
        #[arg(long = "inventory", required = true)]
        inventories: Vec<PathBuf>,
        /// The node whose checks to run (default: this node, as its agent
        /// says).
        #[arg(long, conflicts_with = "all")]
        node: Option<String>,
        /// Run every check of the inventory from here (every namespace is
        /// on this machine) without asking an agent.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        probe: ProbeArgs,
        /// Output: `table` (text for people) or `json` (for scripts).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Check a whole cluster from one machine: every node's inventory, every
    /// node's checks on that node, one matrix.
    ///
    /// Runs `weftctl check inventory`, then `weftctl check run` on each node
    /// through the command prefix EXEC (e.g. "ssh root@{host}"; {name} and
    /// {host} are replaced, then it is split on spaces), with the merged
    /// inventory on standard input. Exits 1 if any check fails or a node's
    /// checks could not run.
    Cluster {
        /// A node as NAME or NAME=HOST (HOST defaults to NAME), in the order
        /// of the matrix. Repeat.
        #[arg(long = "node", required = true)]
        nodes: Vec<String>,
        /// The command prefix that runs a command on a node.
        #[arg(long)]
        exec: String,
        /// The weftctl command on the nodes.
        #[arg(long, default_value = "weftctl")]
        weftctl: String,
        #[command(flatten)]
        probe: ProbeArgs,
        /// Output: `table` (text for people) or `json` (for scripts).
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

/// `weftctl check ...`; returns the exit code.
pub(crate) fn run(args: CheckArgs) -> i32 {
    let result = match args.command {
        CheckCommand::Inventory => inventory(&args.socket).map(|()| 0),
        CheckCommand::Run {
            inventories,
            node,
            all,
            probe,
            output,
        } => run_checks(&args.socket, &inventories, node, all, &probe, output),
        CheckCommand::Cluster {
            nodes,
            exec,
            weftctl,
            probe,
            output,
        } => cluster(&nodes, &exec, &weftctl, &probe, output),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("weftctl: {e:#}");
            1
        }
    }
}

fn agent_status(socket: &AgentSocket) -> Result<StatusResult> {
    let mut client = AgentClient::connect(&socket.path)?;
    client.set_timeout(Duration::from_secs(5))?;
    Ok(client.status()?)
}

/// This node's inventory, from its agent.
fn local_inventory(socket: &AgentSocket) -> Result<Inventory> {
    let mut client = AgentClient::connect(&socket.path)?;
    client.set_timeout(Duration::from_secs(5))?;
    let status = client.status()?;
    let node = &status.node;
    if node.name.is_empty() || node.node_address.is_empty() {
        bail!("this node has not joined the cluster yet (its agent knows no node name or address)");
    }
    let address = node.node_address.parse().with_context(|| {
        format!(
            "the agent's node address {:?} is not an IP address",
            node.node_address
        )
    })?;
    let pods = client
        .pod_list()?
        .into_iter()
        .map(|p| InventoryPod {
            name: p.id,
            node: node.name.clone(),
            address: p.address,
            netns: PathBuf::from(p.netns),
        })
        .collect();
    Ok(Inventory {
        nodes: vec![InventoryNode {
            name: node.name.clone(),
            address,
            netns: None,
        }],
        pods,
    })
}

fn inventory(socket: &AgentSocket) -> Result<()> {
    let inventory = local_inventory(socket)?;
    print_out(&format!("{}\n", serde_json::to_string_pretty(&inventory)?));
    Ok(())
}

fn read_inventories(paths: &[PathBuf]) -> Result<Inventory> {
    let mut parts = Vec::new();
    for path in paths {
        let text = if path.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the inventory from standard input")?;
            s
        } else {
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the inventory {}", path.display()))?
        };
        let part: Inventory = serde_json::from_str(&text)
            .with_context(|| format!("parsing the inventory {}", path.display()))?;
        parts.push(part);
    }
    Ok(Inventory::merge(parts)?)
}

/// Waits until the agent has every node of `inventory` but `node` as a peer.
fn wait_for_peers(
    socket: &AgentSocket,
    inventory: &Inventory,
    node: &str,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match agent_status(socket) {
            Ok(status) => {
                let peers: Vec<String> = status
                    .dataplane
                    .map(|d| d.peers.into_iter().map(|p| p.name).collect())
                    .unwrap_or_default();
                let missing: Vec<&str> = inventory
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .filter(|n| *n != node && !peers.iter().any(|p| p == n))
                    .collect();
                if missing.is_empty() {
                    return Ok(());
                }
                format!("{node} has no peer {} yet", missing.join(", "))
            }
            Err(e) => format!("its agent does not answer: {e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("waiting {}s for the mesh: {last}", timeout.as_secs());
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn probe(args: &ProbeArgs) -> Probe {
    Probe {
        count: args.count,
        timeout: args.timeout,
    }
}

fn require_root(what: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("`weftctl check {what}` needs root (raw ICMP sockets, entering pods' network namespaces); run it with sudo");
    }
    Ok(())
}

fn run_checks(
    socket: &AgentSocket,
    paths: &[PathBuf],
    node: Option<String>,
    all: bool,
    args: &ProbeArgs,
    output: Format,
) -> Result<i32> {
    require_root("run")?;
    let inventory = read_inventories(paths)?;
    let plan = if all {
        check::plan(&inventory)?
    } else {
        let node = match node {
            Some(n) => n,
            None => {
                agent_status(socket)
                    .context("asking this node's agent who it is (or pass --node NAME, or --all)")?
                    .node
                    .name
            }
        };
        let plan = check::plan_for_node(&inventory, &node)?;
        if !args.wait.is_zero() {
            wait_for_peers(socket, &inventory, &node, args.wait)?;
        }
        plan
    };
    let connectivity = check::run(&inventory, plan, probe(args))?;
    print_result(&connectivity, output)?;
    Ok(if connectivity.all_ok() { 0 } else { 1 })
}

fn print_result(connectivity: &Connectivity, output: Format) -> Result<()> {
    match output {
        Format::Json => print_out(&format!(
            "{}\n",
            serde_json::to_string_pretty(connectivity)?
        )),
        Format::Table => print_out(&render::report(connectivity)),
    }
    Ok(())
}

/// A node of `weftctl check cluster`: its name and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    name: String,
    host: String,
}

fn parse_target(s: &str) -> Result<Target> {
    let (name, host) = s.split_once('=').unwrap_or((s, s));
    if name.is_empty() || host.is_empty() || name.contains(char::is_whitespace) {
        bail!("--node {s:?}: expected NAME or NAME=HOST");
    }
    Ok(Target {
        name: name.to_string(),
        host: host.to_string(),
    })
}

/// The command line that runs `args` on `target`: the prefix with {name}
/// and {host} replaced, split on whitespace, then `args`.
fn remote_command(exec: &str, target: &Target, args: &[&str]) -> Result<Vec<String>> {
    let mut argv: Vec<String> = exec
        .split_whitespace()
        .map(|w| {
            w.replace("{name}", &target.name)
                .replace("{host}", &target.host)
        })
        .collect();
    if argv.is_empty() {
        bail!("--exec is empty: give the command prefix that runs a command on a node, e.g. \"ssh root@{{host}}\"");
    }
    argv.extend(args.iter().map(|a| a.to_string()));
    Ok(argv)
}

/// What a command printed, and how it ended.
struct Ran {
    ok: bool,
    status: String,
    stdout: String,
    stderr: String,
}

/// Runs `argv` with `input` on its standard input, within `timeout`
/// (killed after it).
fn run_bounded(argv: &[String], input: &str, timeout: Duration) -> Result<Ran> {
    let line = argv.join(" ");
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let mut stdin = child.stdin.take();
    let input = input.to_string();
    let writer = thread::spawn(move || {
        if let Some(s) = stdin.as_mut() {
            let _ = s.write_all(input.as_bytes());
        }
        drop(stdin);
    });
    let drain = |r: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{line}` did not finish within {}s; killed it",
                timeout.as_secs()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    Ok(Ran {
        ok: status.success(),
        status: status.to_string(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// The last lines of `text`, on one line.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Runs `f` for every target at once; results in the targets' order.
fn on_every<T: Send>(
    targets: &[Target],
    f: impl Fn(&Target) -> Result<T> + Sync,
) -> Vec<Result<T>> {
    thread::scope(|scope| {
        let handles: Vec<_> = targets.iter().map(|t| scope.spawn(|| f(t))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a worker thread panicked")))
            })
            .collect()
    })
}

fn cluster(
    nodes: &[String],
    exec: &str,
    weftctl: &str,
    args: &ProbeArgs,
    output: Format,
) -> Result<i32> {
    let start = Instant::now();
    let targets: Vec<Target> = nodes
        .iter()
        .map(|s| parse_target(s))
        .collect::<Result<_>>()?;

    // 1. Every node's inventory.
    let parts = on_every(&targets, |t| {
        let argv = remote_command(exec, t, &[weftctl, "check", "inventory"])?;
        let ran = run_bounded(&argv, "", Duration::from_secs(60))?;
        if !ran.ok {
            bail!(
                "`{}` failed ({}): {}",
                argv.join(" "),
                ran.status,
                tail(&ran.stderr)
            );
        }
        let part: Inventory = serde_json::from_str(&ran.stdout)
            .with_context(|| format!("parsing what `{}` printed", argv.join(" ")))?;
        if part.nodes.len() != 1 || part.nodes[0].name != t.name {
            let names: Vec<&str> = part.nodes.iter().map(|n| n.name.as_str()).collect();
            bail!("{} is node {}, not {}", t.host, names.join(", "), t.name);
        }
        Ok(part)
    });
    let mut inventories = Vec::new();
    for (t, part) in targets.iter().zip(parts) {
        inventories.push(part.with_context(|| format!("{}: gathering its inventory", t.name))?);
    }
    let inventory = Inventory::merge(inventories)?;
    let input = serde_json::to_string(&inventory)?;

    // 2. Every node's checks, on that node.
    let count = args.count.to_string();
    let timeout = format!("{}s", args.timeout.as_secs().max(1));
    let wait = format!("{}s", args.wait.as_secs());
    let per_node = check::plan(&inventory)?.len().div_ceil(64).max(1) as u32;
    let bound = args.wait + args.timeout * per_node + Duration::from_secs(60);
    let results = on_every(&targets, |t| {
        let argv = remote_command(
            exec,
            t,
            &[
                weftctl,
                "check",
                "run",
                "--inventory",
                "-",
                "--node",
                &t.name,
                "--count",
                &count,
                "--timeout",
                &timeout,
                "--wait",
                &wait,
                "-o",
                "json",
            ],
        )?;
        let ran = run_bounded(&argv, &input, bound)?;
        serde_json::from_str::<Connectivity>(&ran.stdout).map_err(|_| {
            anyhow!(
                "`{}` failed ({}): {}",
                argv.join(" "),
                ran.status,
                tail(&ran.stderr)
            )
        })
    });
    let mut done = Vec::new();
    let mut not_run = Vec::new();
    for (t, result) in targets.iter().zip(results) {
        match result {
            Ok(part) => done.push(part),
            Err(e) => not_run.push(format!("{}: {e:#}", t.name)),
        }
    }
    let connectivity = Connectivity::assemble(inventory, &done, not_run, start.elapsed())?;
    print_result(&connectivity, output)?;
    Ok(if connectivity.all_ok() { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_command_lines() {
        let t = parse_target("n1=198.51.100.11").unwrap();
        assert_eq!(t.name, "n1");
        assert_eq!(t.host, "198.51.100.11");
        assert_eq!(parse_target("n2").unwrap().host, "n2");
        assert!(parse_target("=x").is_err());
        assert!(parse_target("n1=").is_err());
        let argv = remote_command(
            "ssh -o BatchMode=yes root@{host}  ip netns exec weft-{name}",
            &t,
            &["weftctl", "check", "inventory"],
        )
        .unwrap();
        assert_eq!(
            argv,
            [
                "ssh",
                "-o",
                "BatchMode=yes",
                "root@198.51.100.11",
                "ip",
                "netns",
                "exec",
                "weft-n1",
                "weftctl",
                "check",
                "inventory"
            ]
        );
        assert!(remote_command("  ", &t, &["x"]).is_err());
    }

    #[test]
    fn bounded_commands() {
        let argv: Vec<String> = ["sh", "-c", "cat; echo oops >&2; exit 3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let ran = run_bounded(&argv, "hello", Duration::from_secs(10)).unwrap();
        assert!(!ran.ok);
        assert_eq!(ran.stdout, "hello");
        assert_eq!(tail(&ran.stderr), "oops");
        assert!(ran.status.contains('3'), "{}", ran.status);
        let argv: Vec<String> = ["sleep", "5"].iter().map(|s| s.to_string()).collect();
        let err = run_bounded(&argv, "", Duration::from_millis(200))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("did not finish"), "{err}");
    }
}
