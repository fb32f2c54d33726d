#!/usr/bin/env python3
"""weft under a WireGuard handshake-initiation flood (issue 10, item 4).

For each build given (`--build LABEL=BIN_DIR`, in order, in one sitting):
the two-node pod topology of bench/dataplane.sh (underlay n1 -- n2, a
control plane, an agent and a pod per node), plus a flooder namespace `f`
wired to n2 by a veth of its own, holding `--sources` addresses. Then:

1. quiet: iperf3 TCP pod1 -> pod2 (`--seconds`), ping pod1 -> pod2
   (`--pings`, 10 ms apart), and an agent restart: agent n1 is stopped
   (SIGTERM) and started again, and the time from its start to the first
   ping answered pod1 -> pod2 is the reconnect time;
2. control: the same flood aimed at a UDP port of n2 where nothing
   listens (the kernel drops it): the same measurements. On a small
   machine the flooder and the kernel's receive path take CPU from
   iperf3 and the agents whatever weft does; this is that share;
3. flood: `weft-bench flood` sends valid-MAC1 initiations toward agent n2
   (`--rate` per second, from every source address and `--ports` ports
   each); after 2 s, the same iperf3, ping and restart.

Per phase it reports what n2's agent did with the handshakes (from its
drop counters: processed = Diffie-Hellman work on initiations it could not
use, cookie replies, rate-limited, backlog), the kernel's UDP receive
buffer drops in n2, and n2's agent CPU. Results go to bench/results/ as
JSON and a Markdown table on stdout. Everything it makes is removed at the
end (also on Ctrl-C), by PID and by namespace name.
"""

import argparse
import json
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "dataplane"))

import measure  # noqa: E402
import tunnels  # noqa: E402
from sandbox import Sandbox, StepError, remove_stale  # noqa: E402

FLOOD_NET = "172.31.251"
N2_FLOOD_ADDR = f"{FLOOD_NET}.1"
WG_PORT = tunnels.WG_PORT
# Nothing listens there: the control phase's target.
CLOSED_PORT = 9

# The drop reasons that tell what became of handshake messages, by build:
# those missing from a build count as 0.
PROCESSED = ("wg_unknown_peer", "wg_undecryptable_init")
COOKIES = ("wg_under_load",)
LIMITED = ("wg_rate_limited",)
BACKLOG = ("wg_handshake_backlog",)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", action="append", required=True, metavar="LABEL=BIN_DIR",
                   help="a build to measure: its label and the dir with weft-agent, "
                        "weft-control-plane, weftctl (repeat; measured in order)")
    p.add_argument("--flooder", required=True, help="the weft-bench binary")
    p.add_argument("--seconds", type=int, default=10, help="iperf3 seconds per test")
    p.add_argument("--pings", type=int, default=300, help="pings per test (10 ms apart)")
    p.add_argument("--rate", type=int, default=300_000, help="initiations per second")
    p.add_argument("--sources", type=int, default=64, help="flood source addresses")
    p.add_argument("--ports", type=int, default=4, help="flood ports per source address")
    p.add_argument("--json", help="where to write the results (default bench/results/)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def say(msg):
    print(msg, flush=True)


def status(sb, weftctl, socket):
    return json.loads(sb.run([weftctl, "status", "--agent-socket", socket, "-o", "json"],
                             timeout=10).stdout)


def drops(sb, weftctl, socket):
    dp = status(sb, weftctl, socket).get("dataplane") or {}
    return {d["reason"]: d["count"] for d in dp.get("drops", [])}


def udp_rcvbuf_errors(sb, ns):
    snmp = sb.run(["cat", "/proc/net/snmp"], ns=ns, timeout=5).stdout.splitlines()
    udp = [line.split()[1:] for line in snmp if line.startswith("Udp:")]
    return int(dict(zip(udp[0], udp[1])).get("RcvbufErrors", 0)) if len(udp) == 2 else 0


def flood_namespace(sb, n2, sources):
    """`f`, joined to n2 by veth fl0 (f) -- fl1 (n2), with `sources` addresses."""
    f = sb.add_ns("f")
    sb.run(["ip", "-n", f, "link", "add", "fl0", "type", "veth", "peer", "name", "fl1",
            "netns", n2])
    sb.run(["ip", "-n", n2, "addr", "add", f"{N2_FLOOD_ADDR}/24", "dev", "fl1"])
    sb.run(["ip", "-n", n2, "link", "set", "fl1", "up"])
    addrs = [f"{FLOOD_NET}.{10 + i}" for i in range(sources)]
    for a in addrs:
        sb.run(["ip", "-n", f, "addr", "add", f"{a}/24", "dev", "fl0"])
    sb.run(["ip", "-n", f, "link", "set", "fl0", "up"])
    return f, addrs


def reconnect(sb, agent, client_ns, server, timeout=30.0):
    """Stops an agent, starts it again; seconds from its start to the first
    ping answered client -> server (pinging every 100 ms)."""
    sb.stop(agent["proc"], grace=10)
    t0 = time.monotonic()
    agent["proc"] = sb.spawn(agent["name"] + "-restarted", agent["argv"], ns=agent["ns"],
                             env=agent["env"])
    while time.monotonic() - t0 < timeout:
        done = sb.run(["ping", "-n", "-c", "1", "-W", "0.1", server], ns=client_ns,
                      timeout=5, check=False)
        if done.returncode == 0:
            return round(time.monotonic() - t0, 2)
        time.sleep(0.1)
    return None


def phase(sb, args, ep, weftctl, n2, iperf_pid, label):
    n2_agent = ep.agents[1]
    socket = n2_agent["socket"]
    pids = {"weft-agent-n2": n2_agent["proc"].pid}
    d0 = drops(sb, weftctl, socket)
    rcv0 = udp_rcvbuf_errors(sb, n2)
    cpu0 = measure.cpu_seconds(n2_agent["proc"].pid)
    t0 = time.monotonic()
    say(f"    {label}: iperf3 TCP {args.seconds} s")
    tcp = measure.tcp(sb, ep.client_ns, ep.server_addr, 1, args.seconds, pids, iperf_pid)
    say(f"    {label}: {args.pings} pings")
    ping = measure.ping(sb, ep.client_ns, ep.server_addr, args.pings, pids, iperf_pid)
    wall = time.monotonic() - t0
    cpu = measure.cpu_seconds(n2_agent["proc"].pid) - cpu0
    d1 = drops(sb, weftctl, socket)
    rcv1 = udp_rcvbuf_errors(sb, n2)

    def delta(names):
        return sum(d1.get(n, 0) - d0.get(n, 0) for n in names)

    say(f"    {label}: restarting agent n1")
    again = reconnect(sb, ep.agents[0], ep.client_ns, ep.server_addr)
    return {
        "tcp_gbit_per_s": tcp["gbit_per_s"],
        "tcp_retransmits": tcp["retransmits"],
        "ping_sent": ping["sent"],
        "ping_received": ping["received"],
        "ping_p50_ms": ping["p50_ms"],
        "ping_p99_ms": ping["p99_ms"],
        "handshakes_processed": delta(PROCESSED),
        "cookie_replies": delta(COOKIES),
        "rate_limited": delta(LIMITED),
        "backlog_drops": delta(BACKLOG),
        "kernel_rcvbuf_drops": rcv1 - rcv0,
        "n2_agent_cores": round(cpu / wall, 2),
        "seconds": round(wall, 1),
        "restart_reconnect_s": again,
    }


def run_build(label, bin_dir, args, workdir):
    say(f"== {label} ({bin_dir})")
    sb = Sandbox(f"wbd-{os.getpid()}-", os.path.join(workdir, label), args.verbose)
    try:
        tools = tunnels.Tools(bin_dir=bin_dir, boringtun="")
        ep = tunnels.setup_weft(sb, tools)
        weftctl = os.path.join(bin_dir, "weftctl")
        n2 = ep.agents[1]["ns"]
        f, sources = flood_namespace(sb, n2, args.sources)
        iperf = sb.spawn("iperf3-server", ["iperf3", "-s", "-B", ep.server_addr,
                                           "-p", str(measure.IPERF_PORT)], ns=ep.server_ns)
        measure.wait_listening(sb, ep.server_ns, measure.IPERF_PORT)
        measure.wait_reachable(sb, ep.client_ns, ep.server_addr, 30)
        key = status(sb, weftctl, ep.agents[0]["socket"])["dataplane"]["peers"][0]["public_key"]
        quiet = phase(sb, args, ep, weftctl, n2, iperf.pid, "quiet")
        measure.wait_reachable(sb, ep.client_ns, ep.server_addr, 30)
        # Long enough for both tests and the restart.
        seconds = args.seconds + args.pings * 0.012 + 60
        results = {"quiet": quiet}
        for name, port in (("control", CLOSED_PORT), ("flood", WG_PORT)):
            measure.wait_reachable(sb, ep.client_ns, ep.server_addr, 30)
            flooder = sb.spawn(f"flooder-{name}", [
                args.flooder, "flood", "--target", f"{N2_FLOOD_ADDR}:{port}",
                "--key", key, "--sources", ",".join(sources), "--ports", str(args.ports),
                "--rate", str(args.rate), "--seconds", str(seconds)], ns=f)
            time.sleep(2)
            if not flooder.alive():
                raise StepError(f"the flooder exited: {flooder.log_tail()}")
            results[name] = phase(sb, args, ep, weftctl, n2, iperf.pid, name)
            sb.stop(flooder)
            results[name]["flood_log"] = flooder.log_tail(2)
        return results
    finally:
        errors = sb.close()
        for e in errors:
            say(f"  clean-up: {e}")


ROWS = [
    ("TCP pod1 -> pod2 (Gbit/s)", "tcp_gbit_per_s"),
    ("ping p50 (ms)", "ping_p50_ms"),
    ("ping p99 (ms)", "ping_p99_ms"),
    ("pings answered", None),
    ("handshakes processed (DH on flood initiations)", "handshakes_processed"),
    ("cookie replies sent", "cookie_replies"),
    ("handshakes rate-limited before crypto", "rate_limited"),
    ("kernel UDP receive-buffer drops (n2)", "kernel_rcvbuf_drops"),
    ("agent n2 CPU (cores)", "n2_agent_cores"),
    ("restarted peer reconnects after (s)", "restart_reconnect_s"),
]


def table(label, r):
    phases = [p for p in ("quiet", "control", "flood") if p in r]
    head = " | ".join(phases)
    lines = [f"### {label}", "", f"| | {head} | flood / quiet | flood / control |",
             "|---|" + "---|" * (len(phases) + 2)]
    for title, key in ROWS:
        if key is None:
            cells = [f"{r[p]['ping_received']}/{r[p]['ping_sent']}" for p in phases]
            lines.append(f"| {title} | {' | '.join(cells)} | | |")
            continue
        cells = [str(r[p][key]) for p in phases]
        ratios = ["", ""]
        if key == "tcp_gbit_per_s":
            f = r["flood"][key]
            for i, base in enumerate(("quiet", "control")):
                if r.get(base, {}).get(key):
                    ratios[i] = f"{100 * f / r[base][key]:.0f} %"
        lines.append(f"| {title} | {' | '.join(cells)} | {ratios[0]} | {ratios[1]} |")
    return "\n".join(lines)


def main(argv):
    args = parse_args(argv)
    if os.geteuid() != 0:
        say("bench/flood: needs root (network namespaces, TUN devices)")
        return 2
    remove_stale()
    signal.signal(signal.SIGINT, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    workdir = os.path.join("/tmp", f"weft-bench-flood-{os.getpid()}")
    os.makedirs(workdir, exist_ok=True)
    results = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "rate": args.rate, "sources": args.sources, "ports": args.ports,
               "seconds": args.seconds, "pings": args.pings, "builds": {}}
    for spec in args.build:
        label, _, bin_dir = spec.partition("=")
        results["builds"][label] = run_build(label, bin_dir, args, workdir)
    path = args.json or os.path.join(
        HERE, "..", "results", f"flood-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    say(f"\nresults: {path}\n")
    for label, r in results["builds"].items():
        say(table(label, r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
