"""NetworkPolicy's cost on the pod-to-pod path, in one run: two weft nodes
on a veth underlay (as bench/dataplane.sh's weft system), a client pod on
n1 and a server pod on n2, measured with no policy, then with N policies
(default 1000) that all select the server pod and allow the flow only by
the very last rule, then with no policy again (the noise floor): iperf3
TCP 1 stream and new TCP connections per second (`weft-bench connrate`).
Run it through bench/policy.sh; see bench/README.md, "NetworkPolicy cost".
"""

import os
import sys
import tempfile
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "dataplane"))

import measure  # noqa: E402
import tunnels  # noqa: E402
from pods import CONN_PORT, arguments, save, say, status, tcp_and_connrate  # noqa: E402
from sandbox import Sandbox, StepError, remove_stale  # noqa: E402

TARGET_TCP = 0.95
TARGET_CONN = 0.80


def parse_args(argv):
    p = arguments(__doc__.split("\n\n")[0])
    p.add_argument("--policies", type=int, default=1000, help="policies in the policy phase")
    return p.parse_args(argv)



def manifest(n, client_ip):
    """N policies in `default` selecting every pod, each with a rule no
    connection of the benchmark matches; the last one's last rule allows the
    client on the iperf3 and connrate ports."""
    docs = []
    for i in range(n):
        doc = (f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
               f"metadata: {{name: bench-{i:05d}, namespace: default}}\n"
               f"spec:\n  podSelector: {{}}\n  policyTypes: [Ingress]\n  ingress:\n"
               f"  - from: [{{ipBlock: {{cidr: 192.0.2.{i % 256}/32}}}}]\n"
               f"    ports: [{{port: {1000 + i % 4000}, protocol: TCP}}]\n")
        if i == n - 1:
            doc += (f"  - from: [{{ipBlock: {{cidr: {client_ip}/32}}}}]\n"
                    f"    ports: [{{port: {measure.IPERF_PORT}, protocol: TCP}}, "
                    f"{{port: {CONN_PORT}, protocol: TCP}}]\n")
        docs.append(doc)
    return "---\n".join(docs)


def policy_status(sb, weftctl, socket):
    s = status(sb, weftctl, socket)
    return (s.get("dataplane") or {}).get("policy") or {}


def main(argv):
    args = parse_args(argv)
    remove_stale()
    weftctl = os.path.join(args.bin_dir, "weftctl")
    bench = os.path.join(args.bin_dir, "weft-bench")
    workdir = tempfile.mkdtemp(prefix="weft-bench-policy-")
    sb = Sandbox(f"wbp-{os.getpid()}-", workdir, verbose=args.verbose)
    result = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "policies": args.policies, "load_avg_before": os.getloadavg()}
    try:
        ep = tunnels.setup_weft(sb, tunnels.Tools(bin_dir=args.bin_dir, boringtun=""))
        admin = os.path.join(sb.workdir, "control-plane", "admin.conf")
        n1, n2 = ep.agents[0], ep.agents[1]
        client_ip = ep.notes["pods"][0]
        iperf = sb.spawn("iperf3-server", ["iperf3", "-s", "-B", ep.server_addr,
                                           "-p", str(measure.IPERF_PORT)], ns=ep.server_ns)
        sb.spawn("connrate-server", [bench, "connrate", "--listen",
                                     f"{ep.server_addr}:{CONN_PORT}"], ns=ep.server_ns)
        measure.wait_listening(sb, ep.server_ns, measure.IPERF_PORT)
        measure.wait_listening(sb, ep.server_ns, CONN_PORT)
        measure.wait_reachable(sb, ep.client_ns, ep.server_addr, 30)
        result["none"] = tcp_and_connrate(sb, ep, bench, args, ep.server_addr,
                                          "no policy", iperf.pid)

        path = os.path.join(workdir, "policies.yaml")
        with open(path, "w") as f:
            f.write(manifest(args.policies, client_ip))
        started = time.monotonic()
        sb.run([weftctl, "apply", "-f", path, "--config", admin], ns=n1["ns"], timeout=600)
        tunnels.wait_for(f"{args.policies} policies in force on n2",
                         lambda: policy_status(sb, weftctl, n2["socket"]).get("policies")
                         == args.policies, 300)
        result["apply_to_enforced_s"] = round(time.monotonic() - started, 2)
        say(f"{args.policies} policies applied and in force on n2 after "
            f"{result['apply_to_enforced_s']} s")
        result["policy"] = tcp_and_connrate(sb, ep, bench, args, ep.server_addr,
                                          f"{args.policies} policies", iperf.pid)
        st = policy_status(sb, weftctl, n2["socket"])
        last = st["by_policy"][-1]
        result["policy_status_n2"] = {k: st[k] for k in ("policies", "rules", "judged",
                                                         "denied", "not_isolated")}
        result["policy_status_n2"]["last_policy"] = last
        if last["allowed"] == 0 or st["denied"] != 0:
            raise StepError(f"the flow was not allowed by the last policy: {st}")

        sb.run([weftctl, "delete", "-f", path, "--config", admin], ns=n1["ns"], timeout=600)
        tunnels.wait_for("no policy in force on n2",
                         lambda: not policy_status(sb, weftctl, n2["socket"]).get("policies"),
                         300)
        result["none_again"] = tcp_and_connrate(sb, ep, bench, args, ep.server_addr,
                                          "no policy again", iperf.pid)
    except StepError as e:
        result["error"] = str(e)
        say(f"FAILED: {e}")
        for p in sb.procs:
            say(f"--- {p.name} ---\n{p.log_tail(20)}")
    finally:
        sb.close()

    if "none_again" in result:
        def mean(key, field):
            return (result["none"][key][field] + result["none_again"][key][field]) / 2
        tcp_ratio = result["policy"]["tcp1"]["gbit_per_s"] / mean("tcp1", "gbit_per_s")
        conn_ratio = result["policy"]["connrate"]["per_second"] / mean("connrate", "per_second")
        result["ratios"] = {"tcp1": round(tcp_ratio, 3), "connrate": round(conn_ratio, 3)}
        say("")
        say("| phase | TCP 1 stream, Gbit/s | new connections/s | connect p50 / p99 (us) |")
        say("|---|---|---|---|")
        for key, label in (("none", "no policy"), ("policy", f"{args.policies} policies"),
                           ("none_again", "no policy again")):
            r = result[key]
            say(f"| {label} | {r['tcp1']['gbit_per_s']} | {r['connrate']['per_second']:.0f} | "
                f"{r['connrate']['latency_us_p50']} / {r['connrate']['latency_us_p99']} |")
        say("")
        say(f"TCP 1 stream with policies / without: {tcp_ratio:.3f} (target >= {TARGET_TCP}: "
            f"{'met' if tcp_ratio >= TARGET_TCP else 'NOT met'})")
        say(f"new connections/s with policies / without: {conn_ratio:.3f} (target >= "
            f"{TARGET_CONN}: {'met' if conn_ratio >= TARGET_CONN else 'NOT met'})")
    save(result, "policy", args.json)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
