"""What bench/policy and bench/services share: printing, the connection-rate
client (`weft-bench connrate` in a namespace), an agent's status, and
writing the result file."""

import json
import os
from datetime import datetime, timezone

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONN_PORT = 5300


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
