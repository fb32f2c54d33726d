"""What bench/policy and bench/services share: printing, the connection-rate
client (`weft-bench connrate` in a namespace), an agent's status, and
writing the result file."""

import argparse
import json
import os
import time
from datetime import datetime, timezone

import measure

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONN_PORT = 5300


def arguments(description):
    """The flags both benchmarks take; each adds its own."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--bin-dir", default=os.path.join(REPO, "target", "release"))
    p.add_argument("--seconds", type=int, default=10, help="iperf3 seconds")
    p.add_argument("--conn-seconds", type=int, default=5, help="connrate seconds")
    p.add_argument("--concurrency", type=int, default=8, help="connrate client threads")
    p.add_argument("--json", help="where to write the results (default bench/results/)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def say(msg):
    print(msg, flush=True)


def connrate(sb, bench, ns, addr, seconds, concurrency, port=CONN_PORT):
    """New TCP connections per second from namespace `ns` to addr:port."""
    out = sb.run(["ip", "netns", "exec", ns, bench, "connrate", "--connect", f"{addr}:{port}",
                  "--seconds", str(seconds), "--concurrency", str(concurrency)],
                 timeout=seconds + 60)
    return json.loads(out.stdout)


def status(sb, weftctl, socket):
    return json.loads(sb.run([weftctl, "status", "--agent-socket", socket, "-o", "json"],
                             timeout=10).stdout)


def save(result, name, path=None):
    """Writes `result` to `path` or bench/results/<name>-<UTC>.json."""
    out = path or os.path.join(
        REPO, "bench", "results",
        f"{name}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    say(f"results: {out}")


def tcp_and_connrate(sb, ep, bench, args, addr, label, iperf_pid):
    """iperf3 TCP 1 stream, then new connections/s, from the client pod to
    `addr`; then a second's rest."""
    say(f"[{label}] tcp 1 stream, {args.seconds} s")
    tcp = measure.tcp(sb, ep.client_ns, addr, 1, args.seconds, ep.tunnel_pids, iperf_pid)
    say(f"[{label}] tcp: {tcp['gbit_per_s']} Gbit/s")
    conn = connrate(sb, bench, ep.client_ns, addr, args.conn_seconds, args.concurrency)
    say(f"[{label}] connrate: {conn['per_second']:.0f}/s, {conn['failed']} failed, "
        f"p50 {conn['latency_us_p50']} us, p99 {conn['latency_us_p99']} us")
    time.sleep(1.0)
    return {"tcp1": tcp, "connrate": conn}
