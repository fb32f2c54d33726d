"""The measurements: iperf3 TCP and UDP, ping RTT, and CPU time.

Each function runs one bounded test between a client namespace and a server
address (an `iperf3 -s` already listens there) and returns a plain dict that
goes into the JSON as it is.
"""

import json
import os
import re
import resource
import time

from sandbox import StepError

IPERF_PORT = 5201
CLK_TCK = os.sysconf("SC_CLK_TCK")
# UDP tests set 4 MiB socket buffers on both ends (iperf3 -w): with the
# default ~200 KiB the receiving iperf3 itself drops a third of the 64-byte
# datagrams even on bare veth, which would measure iperf3, not the path.
UDP_SOCKET_BUFFER = "4M"


def cpu_seconds(pid):
    """utime + stime of process `pid`, all its threads, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError as e:
        raise StepError(f"reading /proc/{pid}/stat: {e} (did the process die?)") from e
    fields = stat[stat.rindex(")") + 2 :].split()
    # Fields 14 and 15 of proc(5); `fields` starts at field 3 (state).
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds():
    """CPU seconds the whole machine was not idle (all cores), /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK


def children_cpu_seconds():
    """CPU seconds of the benchmark's reaped children (iperf3 client, ping)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


_PF_KTHREAD = 0x00200000


def others_cpu_seconds():
    """{pid: CPU seconds} of every user-space process on the machine that is
    neither the benchmark nor one of its children (everything it starts is
    a direct child: `ip netns exec` execs)."""
    me = os.getpid()
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        pid, ppid, flags = int(entry), int(fields[1]), int(fields[6])
        if pid == me or ppid == me or flags & _PF_KTHREAD:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


class CpuMeter:
    """CPU seconds over one test: of the tunnel processes; of the tools (the
    iperf3 server by PID, the iperf3 client or ping as the benchmark's
    reaped child); of the whole machine; and of every other user-space
    process ("other": a compile, a test run, which distort the figures).
    "other" misses processes that end during the test; kernel threads
    (softirq work included) are not in it."""

    def __init__(self, tunnel_pids, iperf_server_pid):
        self.pids = dict(tunnel_pids)
        self.server_pid = iperf_server_pid

    def __enter__(self):
        self.others0 = others_cpu_seconds()
        self.t0 = time.monotonic()
        self.machine0 = machine_busy_seconds()
        self.children0 = children_cpu_seconds()
        self.server0 = cpu_seconds(self.server_pid)
        self.cpu0 = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            return False
        self.wall = time.monotonic() - self.t0
        self.machine = machine_busy_seconds() - self.machine0
        self.tools = (children_cpu_seconds() - self.children0
                      + cpu_seconds(self.server_pid) - self.server0)
        self.per_process = {
            name: round(cpu_seconds(pid) - self.cpu0[name], 3)
            for name, pid in self.pids.items()
        }
        self.others = sum(cpu - self.others0.get(pid, 0.0)
                          for pid, cpu in others_cpu_seconds().items())
        return False

    def result(self):
        tunnel = sum(self.per_process.values()) if self.pids else None
        return {
            "tunnel_cpu_s": None if tunnel is None else round(tunnel, 3),
            "tunnel_cpu_by_process": self.per_process,
            "tools_cpu_s": round(self.tools, 3),
            "wall_s": round(self.wall, 3),
            "machine_busy_cores": round(self.machine / self.wall, 2),
            "other_cores": round(max(self.others, 0.0) / self.wall, 2),
        }


def _iperf(sb, client_ns, server, args, seconds):
    argv = ["iperf3", "-c", server, "-p", str(IPERF_PORT), "-J",
            "--connect-timeout", "5000", "-t", str(seconds)] + args
    done = sb.run(argv, ns=client_ns, timeout=seconds + 30, check=False)
    try:
        report = json.loads(done.stdout)
    except ValueError as e:
        raise StepError(
            f"iperf3 {' '.join(args)}: no JSON (exit {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-1000:]}"
        ) from e
    if report.get("error") or done.returncode != 0:
        raise StepError(f"iperf3 {' '.join(args)}: {report.get('error', done.returncode)}")
    return report


def tcp(sb, client_ns, server, streams, seconds, pids, server_pid):
    """iperf3 TCP, `streams` parallel streams, client -> server."""
    with CpuMeter(pids, server_pid) as cpu:
        report = _iperf(sb, client_ns, server, ["-P", str(streams)], seconds)
    end = report["end"]
    received = end["sum_received"]
    gbit = received["bytes"] * 8 / 1e9
    out = {
        "streams": streams,
        "seconds": round(received["seconds"], 3),
        "gbit_per_s": round(received["bits_per_second"] / 1e9, 3),
        "retransmits": end["sum_sent"].get("retransmits"),
        "gbit": round(gbit, 3),
    }
    out.update(cpu.result())
    tunnel = out["tunnel_cpu_s"]
    out["gbit_per_tunnel_cpu_s"] = round(gbit / tunnel, 2) if tunnel else None
    return out


def udp64(sb, client_ns, server, seconds, pids, server_pid):
    """iperf3 UDP, 64-byte payloads, as fast as the sender goes."""
    args = ["-u", "-b", "0", "-l", "64", "-w", UDP_SOCKET_BUFFER]
    with CpuMeter(pids, server_pid) as cpu:
        report = _iperf(sb, client_ns, server, args, seconds)
    end = report["end"]
    # The receiver's view: iperf3 3.12 puts it in sum_received (older
    # versions only in sum, which the client fills from the server's report).
    rx = end.get("sum_received") or end["sum"]
    tx = end.get("sum_sent") or end["sum"]
    sent = rx["packets"]  # counted by sequence number at the receiver
    delivered = sent - rx["lost_packets"]
    out = {
        "payload_bytes": 64,
        "seconds": round(rx["seconds"], 3),
        "delivered_pps": round(delivered / rx["seconds"]),
        "sent_pps": round(tx["packets"] / tx["seconds"]),
        "loss_pct": round(rx["lost_percent"], 2),
        "jitter_ms": round(rx.get("jitter_ms", 0.0), 4),
    }
    out.update(cpu.result())
    return out


_TIME_RE = re.compile(r"icmp_seq=(\d+) .*time=([\d.]+) ms")


def percentile(values, p):
    """Linear interpolation between closest ranks (numpy's default)."""
    xs = sorted(values)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def ping(sb, client_ns, server, count, pids, server_pid):
    """`count` pings 10 ms apart over an idle path; per-packet RTTs."""
    argv = ["ping", "-n", "-i", "0.01", "-W", "1", "-c", str(count), server]
    with CpuMeter(pids, server_pid) as cpu:
        done = sb.run(argv, ns=client_ns, timeout=count * 0.01 + 30, check=False)
    rtts = [float(m.group(2)) for m in _TIME_RE.finditer(done.stdout)]
    if not rtts:
        raise StepError(f"ping {server}: no replies: {done.stdout.strip()[-500:]}")
    out = {
        "sent": count,
        "received": len(rtts),
        "p50_ms": round(percentile(rtts, 50), 4),
        "p99_ms": round(percentile(rtts, 99), 4),
        "min_ms": min(rtts),
        "max_ms": max(rtts),
        "mean_ms": round(sum(rtts) / len(rtts), 4),
    }
    out.update(cpu.result())
    return out


def wait_reachable(sb, client_ns, server, timeout):
    """Pings until one reply (handshakes done, routes in place)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        done = sb.run(["ping", "-n", "-c", "1", "-W", "1", server], ns=client_ns,
                      timeout=5, check=False)
        if done.returncode == 0:
            return
        last = (done.stdout + done.stderr).strip()[-300:]
        time.sleep(0.2)
    raise StepError(f"{server} not reachable from {client_ns} within {timeout} s: {last}")


def wait_listening(sb, ns, port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = sb.run(["ss", "-Hltn", f"sport = :{port}"], ns=ns, timeout=5).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise StepError(f"nothing listens on TCP port {port} in {ns} after {timeout} s")


def drop_counters(sb, namespaces):
    """Every drop and error counter that can tell where packets are lost:
    per interface (rx/tx dropped and errors), per qdisc (drops) and the UDP
    stack's (receive/send buffer errors), in each of `namespaces`.

    Returns {"<ns>/<where>/<counter>": value}, `<ns>` without the prefix."""
    out = {}
    for ns in namespaces:
        short = ns[len(sb.prefix):]
        links = json.loads(sb.run(["ip", "-s", "-j", "link", "show"], ns=ns, timeout=5).stdout)
        for link in links:
            if link.get("ifname") == "lo":
                continue
            stats = link.get("stats64", {})
            for direction in ("rx", "tx"):
                for counter in ("dropped", "errors"):
                    out[f"{short}/{link['ifname']}/{direction}_{counter}"] = \
                        stats.get(direction, {}).get(counter, 0)
        qdiscs = json.loads(sb.run(["tc", "-s", "-j", "qdisc", "show"], ns=ns,
                                   timeout=5).stdout or "[]")
        for q in qdiscs:
            if q.get("dev") != "lo":
                out[f"{short}/{q.get('dev')}/qdisc_{q.get('kind')}_drops"] = q.get("drops", 0)
        snmp = sb.run(["cat", "/proc/net/snmp"], ns=ns, timeout=5).stdout.splitlines()
        udp = [line.split()[1:] for line in snmp if line.startswith("Udp:")]
        if len(udp) == 2:
            udp_counters = dict(zip(udp[0], udp[1]))
            for counter in ("InErrors", "RcvbufErrors", "SndbufErrors"):
                out[f"{short}/udp/{counter}"] = int(udp_counters.get(counter, 0))
    return out


class DropMeter:
    """The counters of `drop_counters` that grew during a test."""

    def __init__(self, sb, namespaces):
        self.sb = sb
        self.namespaces = namespaces

    def __enter__(self):
        self.before = drop_counters(self.sb, self.namespaces)
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            after = drop_counters(self.sb, self.namespaces)
            self.grown = {k: v - self.before.get(k, 0) for k, v in after.items()
                          if v - self.before.get(k, 0) > 0}
        return False
