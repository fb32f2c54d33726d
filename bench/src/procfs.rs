//! Reading a process's resource use from `/proc`: CPU time (utime + stime
//! from `/proc/<pid>/stat`), memory (VmRSS, VmHWM from `/proc/<pid>/status`),
//! thread and file-descriptor counts, and CPU time per thread name.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Context, Result};

/// Clock ticks per second, the unit of utime/stime in `/proc/<pid>/stat`.
fn ticks_per_second() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// CPU seconds spent in user and kernel mode, read from a `stat` file.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct CpuTime {
    pub user_s: f64,
    pub system_s: f64,
}

impl CpuTime {
    pub(crate) fn total_s(&self) -> f64 {
        self.user_s + self.system_s
    }

    pub(crate) fn minus(&self, earlier: &CpuTime) -> CpuTime {
        CpuTime {
            user_s: self.user_s - earlier.user_s,
            system_s: self.system_s - earlier.system_s,
        }
    }
}

/// The command name and CPU time in a `/proc/.../stat` line. The name is in
/// parentheses and may itself hold spaces and parentheses, so the fields are
/// counted from the last `)`.
fn parse_stat(text: &str) -> Result<(String, CpuTime)> {
    let open = text
        .find('(')
        .ok_or_else(|| anyhow!("no '(' in stat line"))?;
    let close = text
        .rfind(')')
        .ok_or_else(|| anyhow!("no ')' in stat line"))?;
    let comm = text.get(open + 1..close).unwrap_or_default().to_string();
    // After ")": state(3) ppid(4) ... utime(14) stime(15).
    let rest: Vec<&str> = text
        .get(close + 1..)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let field = |n: usize| -> Result<f64> {
        let s = rest
            .get(n - 3)
            .ok_or_else(|| anyhow!("stat line has no field {n}"))?;
        s.parse::<f64>()
            .with_context(|| format!("stat field {n} {s:?} is not a number"))
    };
    let tps = ticks_per_second();
    Ok((
        comm,
        CpuTime {
            user_s: field(14)? / tps,
            system_s: field(15)? / tps,
        },
    ))
}

/// CPU time of process `pid` (all its threads, not its children).
pub(crate) fn cpu_time(pid: u32) -> Result<CpuTime> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat(&text)
        .map(|(_, t)| t)
        .with_context(|| format!("parsing {path}"))
}

/// A `kB` field of `/proc/<pid>/status` (e.g. "VmHWM", "VmRSS") in bytes,
/// or a plain count field (e.g. "Threads") as is.
pub(crate) fn status_field(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let prefix = format!("{field}:");
    let line = text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .ok_or_else(|| anyhow!("{path} has no {field} line"))?;
    let mut parts = line[prefix.len()..].split_whitespace();
    let value: u64 = parts
        .next()
        .ok_or_else(|| anyhow!("{path}: {field} has no value"))?
        .parse()
        .with_context(|| format!("{path}: {field} is not a number"))?;
    Ok(match parts.next() {
        Some("kB") => value * 1024,
        _ => value,
    })
}

/// How many file descriptors `pid` has open.
pub(crate) fn fd_count(pid: u32) -> Result<usize> {
    let path = format!("/proc/{pid}/fd");
    Ok(std::fs::read_dir(&path)
        .with_context(|| format!("listing {path}"))?
        .count())
}

/// CPU time per thread name (threads of the same name summed), with how many
/// threads carry it. Threads that already exited are not counted.
pub(crate) fn thread_cpu(pid: u32) -> Result<BTreeMap<String, (CpuTime, usize)>> {
    let dir = format!("/proc/{pid}/task");
    let mut out: BTreeMap<String, (CpuTime, usize)> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
        let path = entry
            .with_context(|| format!("listing {dir}"))?
            .path()
            .join("stat");
        // A thread may exit between listing and reading.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let (comm, t) = parse_stat(&text).with_context(|| format!("parsing {}", path.display()))?;
        let slot = out.entry(comm).or_default();
        slot.0.user_s += t.user_s;
        slot.0.system_s += t.system_s;
        slot.1 += 1;
    }
    Ok(out)
}

/// One sample of a process's resource use.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sample {
    pub cpu: CpuTime,
    pub rss_bytes: u64,
    pub hwm_bytes: u64,
    pub threads: u64,
    pub fds: usize,
}

/// Sample `pid` now.
pub(crate) fn sample(pid: u32) -> Result<Sample> {
    Ok(Sample {
        cpu: cpu_time(pid)?,
        rss_bytes: status_field(pid, "VmRSS")?,
        hwm_bytes: status_field(pid, "VmHWM")?,
        threads: status_field(pid, "Threads")?,
        fds: fd_count(pid)?,
    })
}

/// CPU seconds the whole machine has been busy (all CPUs summed: user,
/// nice, system, irq, softirq, steal), from `/proc/stat`.
pub(crate) fn machine_busy_s() -> Result<f64> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| anyhow!("/proc/stat has no cpu line"))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    Ok(busy / ticks_per_second())
}

/// Whether `/proc` is there to read.
pub(crate) fn available() -> bool {
    Path::new("/proc/self/stat").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm() {
        let line = "1234 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0 100 0 0";
        let (comm, t) = parse_stat(line).unwrap();
        assert_eq!(comm, "a (b) c");
        let tps = ticks_per_second();
        assert!((t.user_s - 250.0 / tps).abs() < 1e-9);
        assert!((t.system_s - 50.0 / tps).abs() < 1e-9);
    }

    #[test]
    fn own_process() {
        let me = std::process::id();
        let s = sample(me).unwrap();
        assert!(s.rss_bytes > 0 && s.hwm_bytes >= s.rss_bytes);
        assert!(s.threads >= 1 && s.fds >= 1);
        assert!(!thread_cpu(me).unwrap().is_empty());
        assert!(machine_busy_s().unwrap() > 0.0);
    }
}
