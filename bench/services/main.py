"""Services' cost on the pod-to-pod path, in one run (issue 14's benchmark):
two weft nodes on a veth underlay (bench/dataplane.sh's weft system), a
client pod on n1 and a server pod on n2 behind a ClusterIP Service:
1. pod -> pod IP: iperf3 TCP 1 stream, new TCP connections/s
   (`weft-bench connrate`);
2. pod -> ClusterIP: the same through the Service (conntrack + DNAT in the
   agent's switch);
3. the kernel's own nftables DNAT (kube-proxy's nftables path, no tunnel):
   new connections/s from a client namespace to a virtual IP DNATed to a
   server namespace over a veth pair;
4. the agents' memory: n1's RSS before and after its conntrack table holds
   CONNTRACK_FILL connections.
Run it through bench/services.sh; see bench/README.md, "Services cost".
"""

import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "dataplane"))

import measure  # noqa: E402
import tunnels  # noqa: E402
from pods import CONN_PORT, arguments, connrate, save, say, status, tcp_and_connrate  # noqa: E402
from sandbox import Sandbox, StepError, remove_stale  # noqa: E402

VIP_NFT = "10.99.0.1"
TARGET_TCP = 0.95


def parse_args(argv):
    p = arguments(__doc__.split("\n\n")[0])
    p.add_argument("--fill", type=int, default=100_000,
                   help="conntrack entries to hold for the memory figure")
    return p.parse_args(argv)



def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def service_manifest():
    return ("apiVersion: v1\nkind: Service\nmetadata: {name: bench, namespace: default}\n"
            "spec:\n  selector: {app: bench-server}\n  ports:\n"
            f"  - {{name: iperf, port: {measure.IPERF_PORT}, targetPort: {measure.IPERF_PORT}}}\n"
            f"  - {{name: conn, port: {CONN_PORT}, targetPort: {CONN_PORT}}}\n")


def kernel_dnat(sb, bench, args):
    """connrate through nftables DNAT between two namespaces (no tunnel)."""
    c = sb.add_ns("kc")
    s = sb.add_ns("ks")
    sb.run(["ip", "-n", c, "link", "add", "k0", "type", "veth", "peer", "name", "k0",
            "netns", s])
    for ns, a in ((c, "172.31.252.1"), (s, "172.31.252.2")):
        sb.run(["ip", "-n", ns, "addr", "add", f"{a}/24", "dev", "k0"])
        sb.run(["ip", "-n", ns, "link", "set", "k0", "up"])
        sb.run(["ip", "-n", ns, "link", "set", "lo", "up"])
    sb.run(["ip", "-n", c, "route", "add", f"{VIP_NFT}/32", "via", "172.31.252.2"])
    rules = (
        "table ip nat {\n"
        "  chain output {\n"
        "    type nat hook output priority -100; policy accept;\n"
        f"    ip daddr {VIP_NFT} tcp dport {CONN_PORT} dnat to 172.31.252.2:{CONN_PORT}\n"
        "  }\n"
        "}\n")
    sb.run(["ip", "netns", "exec", c, "nft", "-f", "-"], input=rules)
    sb.spawn("kernel-connrate-server", [bench, "connrate", "--listen",
                                        f"172.31.252.2:{CONN_PORT}"], ns=s)
    measure.wait_listening(sb, s, CONN_PORT)
    conn = connrate(sb, bench, c, VIP_NFT, args.conn_seconds, args.concurrency)
    say(f"[kernel nftables DNAT] connrate: {conn['per_second']:.0f}/s, {conn['failed']} failed, "
        f"p50 {conn['latency_us_p50']} us, p99 {conn['latency_us_p99']} us")
    return {"connrate": conn}


def main(argv):
    args = parse_args(argv)
    remove_stale()
    weftctl = os.path.join(args.bin_dir, "weftctl")
    bench = os.path.join(args.bin_dir, "weft-bench")
    workdir = tempfile.mkdtemp(prefix="weft-bench-services-")
    sb = Sandbox(f"wbs-{os.getpid()}-", workdir, verbose=args.verbose)
    result = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "load_avg_before": os.getloadavg()}
    try:
        ep = tunnels.setup_weft(sb, tunnels.Tools(bin_dir=args.bin_dir, boringtun=""))
        admin = os.path.join(sb.workdir, "control-plane", "admin.conf")
        n1 = ep.agents[0]
        iperf = sb.spawn("iperf3-server", ["iperf3", "-s", "-p", str(measure.IPERF_PORT)],
                         ns=ep.server_ns)
        sb.spawn("connrate-server", [bench, "connrate", "--listen", f"0.0.0.0:{CONN_PORT}"],
                 ns=ep.server_ns)
        measure.wait_listening(sb, ep.server_ns, measure.IPERF_PORT)
        measure.wait_listening(sb, ep.server_ns, CONN_PORT)
        measure.wait_reachable(sb, ep.client_ns, ep.server_addr, 30)

        sb.run([weftctl, "label", "pods", "bench-p2", "app=bench-server", "--config", admin],
               ns=n1["ns"], timeout=30)
        path = os.path.join(workdir, "service.yaml")
        with open(path, "w") as f:
            f.write(service_manifest())
        sb.run([weftctl, "apply", "-f", path, "--config", admin], ns=n1["ns"], timeout=30)
        svc = json.loads(sb.run([weftctl, "get", "service", "bench", "-o", "json",
                                 "--config", admin], ns=n1["ns"], timeout=30).stdout)
        vip = svc["spec"]["clusterIP"]
        tunnels.wait_for("the Service's endpoint on n1",
                         lambda: ((status(sb, weftctl, n1["socket"])["dataplane"] or {})
                                  .get("services") or {}).get("endpoints", 0) >= 2, 60)
        measure.wait_listening(sb, ep.server_ns, CONN_PORT)
        result["pod_ip"] = tcp_and_connrate(sb, ep, bench, args, ep.server_addr, "pod IP",
                                            iperf.pid)
        result["cluster_ip"] = tcp_and_connrate(sb, ep, bench, args, vip, f"ClusterIP {vip}",
                                            iperf.pid)
        st = status(sb, weftctl, n1["socket"])["dataplane"]["services"]
        result["n1_services"] = st
        if st["translations"] == 0:
            raise StepError(f"nothing was translated: {st}")

        pid = n1["proc"].pid
        before = rss_kib(pid)
        entries = st["conntrack_entries"]
        say(f"[memory] n1 RSS {before} KiB with {entries} conntrack entries; filling to "
            f"{args.fill}")
        deadline = time.monotonic() + 300
        while entries < args.fill and time.monotonic() < deadline:
            connrate(sb, bench, ep.client_ns, ep.server_addr, 5, 16)
            entries = status(sb, weftctl, n1["socket"])["dataplane"]["services"][
                "conntrack_entries"]
        after = rss_kib(pid)
        result["memory"] = {"rss_kib_before": before, "entries_before": st["conntrack_entries"],
                            "rss_kib_after": after, "entries_after": entries,
                            "conntrack_max": st["conntrack_max"]}
        say(f"[memory] n1 RSS {after} KiB with {entries} conntrack entries "
            f"(+{(after - before) / 1024:.1f} MiB)")
        result["kernel_nftables"] = kernel_dnat(sb, bench, args)
    except StepError as e:
        result["error"] = str(e)
        say(f"FAILED: {e}")
        for p in sb.procs:
            say(f"--- {p.name} ---\n{p.log_tail(20)}")
    finally:
        sb.close()

    if "kernel_nftables" in result:
        tcp_ratio = (result["cluster_ip"]["tcp1"]["gbit_per_s"]
                     / result["pod_ip"]["tcp1"]["gbit_per_s"])
        conn_vs_kernel = (result["cluster_ip"]["connrate"]["per_second"]
                          / result["kernel_nftables"]["connrate"]["per_second"])
        result["ratios"] = {"tcp1_clusterip_over_podip": round(tcp_ratio, 3),
                            "connrate_clusterip_over_kernel_nft": round(conn_vs_kernel, 3)}
        say("")
        say("| path | TCP 1 stream, Gbit/s | new connections/s | connect p50 / p99 (us) |")
        say("|---|---|---|---|")
        for key, label in (("pod_ip", "weft pod -> pod IP"),
                           ("cluster_ip", "weft pod -> ClusterIP"),
                           ("kernel_nftables", "kernel nftables DNAT, no tunnel")):
            r = result[key]
            tcp = r["tcp1"]["gbit_per_s"] if "tcp1" in r else "-"
            c = r["connrate"]
            say(f"| {label} | {tcp} | {c['per_second']:.0f} | "
                f"{c['latency_us_p50']} / {c['latency_us_p99']} |")
        m = result["memory"]
        say("")
        say(f"TCP 1 stream through the ClusterIP / to the pod IP: {tcp_ratio:.3f} "
            f"(target >= {TARGET_TCP}: {'met' if tcp_ratio >= TARGET_TCP else 'NOT met'})")
        say(f"new connections/s through weft's ClusterIP / the kernel's nftables DNAT: "
            f"{conn_vs_kernel:.3f} (weft's also crosses WireGuard between two agents)")
        say(f"agent RSS: {m['rss_kib_before'] / 1024:.1f} MiB with {m['entries_before']} "
            f"entries, {m['rss_kib_after'] / 1024:.1f} MiB with {m['entries_after']} "
            f"(+{(m['rss_kib_after'] - m['rss_kib_before']) / 1024:.1f} MiB; target < 64)")
    save(result, "services", args.json)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
