"""weft data-plane benchmark, side by side with plain veth, wireguard-go and
boringtun. Run it through bench/dataplane.sh, which installs the tools and
builds weft first; see bench/README.md, "Data plane".

Each system gets a fresh pair of node namespaces on a veth underlay, is
measured (ping over the idle path, iperf3 TCP 1 and 4 streams, iperf3 UDP
64-byte at full rate), and is torn down before the next one starts.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback
from datetime import datetime, timezone

import measure
import report
import sandbox
import tunnels
from sandbox import Sandbox, StepError

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SHORT = {"veth": "veth", "weft": "weft", "wireguard-go": "wggo", "boringtun": "btun"}


class Interrupted(Exception):
    """A signal (Ctrl-C, SIGTERM, SIGHUP) or the run's own --timeout."""


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench/dataplane.sh", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="bench/dataplane.sh itself also takes --no-install (fail if a tool is "
        "missing instead of installing it) and --no-build (use the weft binaries "
        "already built).")
    p.add_argument("--quick", action="store_true",
                   help="3-second iperf3 tests instead of 10 (a smoke test)")
    p.add_argument("--duration", type=int, help="seconds per iperf3 test (default 10, quick 3)")
    p.add_argument("--pings", type=int, default=200, help="pings for the RTT (default 200)")
    p.add_argument("--only", default=",".join(report.SYSTEMS),
                   help="comma-separated subset of: " + ", ".join(report.SYSTEMS))
    p.add_argument("--json", help="where to write the JSON "
                   "(default bench/results/dataplane-<UTC>.json)")
    p.add_argument("--bin-dir", default=os.path.join(REPO, "target", "release"),
                   help="where weft-control-plane, weft-agent and weftctl are")
    p.add_argument("--boringtun", default=os.path.join(REPO, "target", "bench-tools", "bin",
                                                       "boringtun-cli"),
                   help="the boringtun-cli binary")
    p.add_argument("--boringtun-threads", type=int, default=0,
                   help="boringtun-cli --threads (default: its own default, 4)")
    p.add_argument("--timeout", type=int, default=1200,
                   help="stop the whole run after this many seconds (default 1200)")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs, state)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every command")
    p.add_argument("--render", metavar="JSON",
                   help="measure nothing: print the tables of an earlier run's JSON, "
                   "and a markdown summary")
    args = p.parse_args(argv)
    args.duration = args.duration or (3 if args.quick else 10)
    args.systems = [s.strip() for s in args.only.split(",") if s.strip()]
    for s in args.systems:
        if s not in report.SYSTEMS:
            p.error(f"--only: unknown system {s!r}")
    return args


def _first_line(argv):
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return ((done.stdout or done.stderr).strip().splitlines() or [""])[0]
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable: {e}"


def _loadavg():
    return [round(x, 2) for x in os.getloadavg()]


def environment(args):
    with open(os.path.join(REPO, "Cargo.toml"), "rb") as f:
        release = tomllib.load(f).get("profile", {}).get("release", {})
    git = lambda *a: _first_line(["git", "-C", REPO] + list(a))  # noqa: E731
    crates = ["node-agent", "client", "control-plane", "weftctl", "proto", "Cargo.toml",
              "Cargo.lock"]
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--"] + crates,
                           capture_output=True, text=True, timeout=10).stdout.split("\n")
    agent = os.path.join(args.bin_dir, "weft-agent")
    return {
        "host": {"cores": os.cpu_count(), "kernel": platform.release(),
                 "load_avg_start": _loadavg()},
        "weft": {
            "commit": git("rev-parse", "HEAD"),
            # The newest commit that touched weft's own crates, and what in
            # them was uncommitted when the run started (the binary holds
            # it if the script built it just before).
            "last_weft_commit": git("log", "-1", "--format=%h %cI %s", "--", *crates),
            "uncommitted_files": [l[3:] for l in dirty if l.strip()],
            "agent_binary_mtime_utc": (datetime.fromtimestamp(
                os.path.getmtime(agent), timezone.utc).isoformat()
                if os.path.exists(agent) else None),
            "profile": "release",
            "profile_release": {
                "opt-level": release.get("opt-level", 3),
                "lto": release.get("lto", False),
                "codegen-units": release.get("codegen-units", 16),
                "debug": release.get("debug", False),
                "panic": release.get("panic", "unwind"),
            },
        },
        "tools": {
            "iperf3": _first_line(["iperf3", "--version"]),
            "wireguard-go": _first_line(["wireguard-go", "--version"]),
            "wg": _first_line(["wg", "--version"]),
            "boringtun-cli": _first_line([args.boringtun, "--version"]),
            "boringtun_threads": args.boringtun_threads or "default (4)",
            "ping": _first_line(["ping", "-V"]),
        },
        "settings": {"iperf3_seconds": args.duration, "pings": args.pings,
                     "ping_interval_s": 0.01, "underlay_mtu": tunnels.UNDERLAY_MTU,
                     "overlay_mtu": tunnels.OVERLAY_MTU,
                     "udp_socket_buffer": measure.UDP_SOCKET_BUFFER},
    }


def run_system(system, args, tools, workdir):
    """Sets up `system`, measures it, tears it down. Never raises StepError:
    a failure is recorded in the result, with the logs' tails."""
    sb = Sandbox(f"wbd-{os.getpid()}-{SHORT[system]}-", os.path.join(workdir, system),
                 verbose=args.verbose)
    result = {"load_avg_before": _loadavg()}
    step = "setting up"
    try:
        say(f"[{system}] {step}")
        ep = tunnels.SYSTEMS[system](sb, tools)
        result["notes"] = ep.notes
        result["tunnel_processes"] = list(ep.tunnel_pids)
        server = sb.spawn("iperf3-server", ["iperf3", "-s", "-B", ep.server_addr,
                                   "-p", str(measure.IPERF_PORT)], ns=ep.server_ns)
        measure.wait_listening(sb, ep.server_ns, measure.IPERF_PORT)
        measure.wait_reachable(sb, ep.client_ns, ep.server_addr, 30)
        time.sleep(1.0)  # idle before the ping test
        tests = [
            ("ping", lambda: measure.ping(sb, ep.client_ns, ep.server_addr, args.pings,
                                           ep.tunnel_pids, server.pid)),
            ("tcp1", lambda: measure.tcp(sb, ep.client_ns, ep.server_addr, 1, args.duration,
                                         ep.tunnel_pids, server.pid)),
            ("tcp4", lambda: measure.tcp(sb, ep.client_ns, ep.server_addr, 4, args.duration,
                                         ep.tunnel_pids, server.pid)),
            ("udp64", lambda: measure.udp64(sb, ep.client_ns, ep.server_addr, args.duration,
                                            ep.tunnel_pids, server.pid)),
        ]
        for name, test in tests:
            step = name
            say(f"[{system}] {name}")
            with measure.DropMeter(sb, list(sb.namespaces)) as drops:
                result[name] = test()
            result[name]["drops"] = drops.grown
            say(f"[{system}] {name}: {summary(name, result[name])}")
            if drops.grown:
                top = sorted(drops.grown.items(), key=lambda kv: -kv[1])[:4]
                say(f"[{system}] {name}: drops " + ", ".join(f"{k} +{v}" for k, v in top))
            time.sleep(1.0)
    except StepError as e:
        result["error"] = f"{step}: {e}"
        result["log_tails"] = {p.name: p.log_tail(30) for p in sb.procs}
        say(f"[{system}] FAILED at {step}: {e}")
        for name, tail in result["log_tails"].items():
            say(f"--- {name} log (last lines) ---\n{tail}")
    except (KeyError, ValueError, TypeError, OSError) as e:
        # A tool's output this benchmark did not expect: still a result.
        result["error"] = f"{step}: {type(e).__name__}: {e}"
        say(f"[{system}] FAILED at {step}:\n{traceback.format_exc()}")
    finally:
        report.summarize(result)
        # A second Ctrl-C must not cut the clean-up short: hold signals
        # until it is done (they are delivered right after).
        held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM}
        signal.pthread_sigmask(signal.SIG_BLOCK, held)
        try:
            errors = sb.close()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
        if errors:
            result["cleanup_errors"] = errors
            say(f"[{system}] clean-up problems: {errors}")
    return result


def summary(name, r):
    if name == "ping":
        return f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms ({r['received']}/{r['sent']})"
    cpu = "n/a" if r["tunnel_cpu_s"] is None else f"{r['tunnel_cpu_s']} s"
    if name.startswith("tcp"):
        return (f"{r['gbit_per_s']} Gbit/s, {r['retransmits']} retransmits, "
                f"tunnel CPU {cpu}, other load {r['other_cores']} cores")
    return (f"{r['delivered_pps']} pps delivered of {r['sent_pps']} sent, loss {r['loss_pct']} %, "
            f"tunnel CPU {cpu}, other load {r['other_cores']} cores")


def say(msg):
    print(msg, flush=True)


def _interrupt(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def render_saved(path):
    with open(path) as f:
        doc = json.load(f)
    table = report.figures(doc["results"])
    verdicts = report.targets(table)
    say(report.render(table, report.ratios(table), verdicts))
    say("")
    say(report.markdown(table, verdicts, doc["started_utc"][:16] + "Z"))
    return 0


def main(argv):
    args = parse_args(argv)
    if args.render:
        return render_saved(args.render)
    if os.geteuid() != 0:
        say("bench/dataplane.sh: needs root (network namespaces, TUN devices)")
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, _interrupt)
    signal.alarm(args.timeout)
    started = datetime.now(timezone.utc)
    stale = sandbox.remove_stale()
    if stale:
        say(f"removed namespaces left by earlier killed runs: {', '.join(stale)}")
    workdir = tempfile.mkdtemp(prefix=f"wbd-{os.getpid()}-")
    tools = tunnels.Tools(args.bin_dir, args.boringtun, args.boringtun_threads)
    env = environment(args)
    say(f"weft data-plane benchmark: {', '.join(args.systems)}; {args.duration} s per iperf3 "
        f"test; load average {env['host']['load_avg_start']}; work dir {workdir}")
    results, broken = {}, []
    try:
        for system in args.systems:
            results[system] = run_system(system, args, tools, workdir)
            if "error" in results[system]:
                broken.append(f"{system}: {results[system]['error']}")
    except Interrupted as e:
        broken.append(f"interrupted by {e} (partial results)")
        say(f"interrupted by {e}; cleaning up")
    finally:
        signal.alarm(0)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
    # A run_system interrupted mid-way has closed its own sandbox in its
    # `finally`; this catches anything a killed run might have left.
    leftover = [n for n in os.listdir("/run/netns") if n.startswith(f"wbd-{os.getpid()}-")] \
        if os.path.isdir("/run/netns") else []
    for name in leftover:
        sandbox.kill_namespace(name)

    table = report.figures(results)
    ratio_table = report.ratios(table)
    verdicts = report.targets(table)
    env["host"]["load_avg_end"] = _loadavg()
    doc = {"benchmark": "weft dataplane", "started_utc": started.isoformat(),
           "finished_utc": datetime.now(timezone.utc).isoformat(), **env,
           "results": results, "figures": table, "ratios": ratio_table,
           "targets": verdicts, "broken": broken}
    path = args.json or os.path.join(
        REPO, "bench", "results", f"dataplane-{started.strftime('%Y%m%dT%H%M%SZ')}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")

    say("")
    say(f"weft {env['weft']['commit'][:10]} (release: lto={env['weft']['profile_release']['lto']}, "
        f"codegen-units={env['weft']['profile_release']['codegen-units']}); "
        f"{env['host']['cores']} cores; load average {env['host']['load_avg_start']} at start, "
        f"{env['host']['load_avg_end']} at end; "
        f"{args.duration} s per iperf3 test")
    say(report.render(table, ratio_table, verdicts))
    say(f"\nJSON: {path}")
    if broken:
        say("BROKEN: " + "; ".join(broken))
    if args.keep:
        say(f"work dir kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
