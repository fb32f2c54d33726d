"""The tables, the ratios and the targets, from the per-system results."""

SYSTEMS = ("veth", "weft", "wireguard-go", "boringtun")
PEERS = ("wireguard-go", "boringtun")
TUNNELS = ("weft", "wireguard-go", "boringtun")

# key, label, path into a system's results, higher is better, format
METRICS = [
    ("tcp1_gbps", "TCP 1 stream, Gbit/s", ("tcp1", "gbit_per_s"), True, "{:.2f}"),
    ("tcp1_retr", "TCP 1 stream, retransmits", ("tcp1", "retransmits"), False, "{:d}"),
    ("tcp4_gbps", "TCP 4 streams, Gbit/s", ("tcp4", "gbit_per_s"), True, "{:.2f}"),
    ("tcp4_retr", "TCP 4 streams, retransmits", ("tcp4", "retransmits"), False, "{:d}"),
    ("udp_kpps", "UDP 64 B, delivered kpps", ("udp64", "delivered_pps"), True, "{:.0f}"),
    ("udp_sent_kpps", "UDP 64 B, sent kpps", ("udp64", "sent_pps"), True, "{:.0f}"),
    ("udp_loss", "UDP 64 B, loss %", ("udp64", "loss_pct"), False, "{:.1f}"),
    ("ping_p50", "ping RTT p50, ms", ("ping", "p50_ms"), False, "{:.3f}"),
    ("ping_p99", "ping RTT p99, ms", ("ping", "p99_ms"), False, "{:.3f}"),
    ("tcp1_cpu", "TCP 1 stream, tunnel CPU-s", ("tcp1", "tunnel_cpu_s"), False, "{:.2f}"),
    ("tcp4_cpu", "TCP 4 streams, tunnel CPU-s", ("tcp4", "tunnel_cpu_s"), False, "{:.2f}"),
    ("tcp1_eff", "TCP 1 stream, Gbit per tunnel CPU-s", ("tcp1", "gbit_per_tunnel_cpu_s"),
     True, "{:.2f}"),
    ("tcp4_eff", "TCP 4 streams, Gbit per tunnel CPU-s", ("tcp4", "gbit_per_tunnel_cpu_s"),
     True, "{:.2f}"),
    ("tcp_eff", "TCP both, Gbit per tunnel CPU-s", ("tcp", "gbit_per_tunnel_cpu_s"),
     True, "{:.2f}"),
    ("other_load", "other load on the machine, cores", ("load", "other_cores_mean"), False,
     "{:.2f}"),
]
NO_RATIO = {"other_load"}
SCALE = {"udp_kpps": 1e-3, "udp_sent_kpps": 1e-3}


def _get(results, system, path):
    node = results.get(system) or {}
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def summarize(result):
    """Adds both TCP tests together (Gbit moved per tunnel CPU-second) and
    the mean other load over the tests."""
    others = [result[t]["other_cores"] for t in ("ping", "tcp1", "tcp4", "udp64")
              if t in result]
    if others:
        result["load"] = {"other_cores_mean": round(sum(others) / len(others), 2)}
    t1, t4 = result.get("tcp1"), result.get("tcp4")
    if not t1 or not t4 or t1.get("tunnel_cpu_s") is None:
        return
    gbit = t1["gbit"] + t4["gbit"]
    cpu = t1["tunnel_cpu_s"] + t4["tunnel_cpu_s"]
    result["tcp"] = {"gbit": round(gbit, 3), "tunnel_cpu_s": round(cpu, 3),
                     "gbit_per_tunnel_cpu_s": round(gbit / cpu, 2) if cpu else None}


def figures(results):
    """{metric: {system: value}}, plus the best peer's value per metric."""
    table = {}
    for key, _, path, higher, _ in METRICS:
        row = {s: _get(results, s, path) for s in SYSTEMS}
        peers = [row[p] for p in PEERS if row[p] is not None]
        row["best-peer"] = (max(peers) if higher else min(peers)) if peers else None
        table[key] = row
    return table


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def ratios(table):
    """{metric: {"<tunnel>/veth": r, "<tunnel>/best-peer": r}}."""
    out = {}
    for key, row in table.items():
        if key in NO_RATIO:
            continue
        out[key] = {}
        for t in TUNNELS:
            out[key][f"{t}/veth"] = _ratio(row[t], row["veth"])
            out[key][f"{t}/best-peer"] = _ratio(row[t], row["best-peer"])
    return out


def targets(table):
    """The issue's targets for weft, each with its verdict."""
    def check(name, value, bound, ok):
        verdict = "n/a" if value is None else ("PASS" if ok(value) else "FAIL")
        return {"target": name, "value": value, "bound": bound, "verdict": verdict}

    w = {k: row["weft"] for k, row in table.items()}
    v = {k: row["veth"] for k, row in table.items()}
    frac = lambda k: _ratio(w[k], v[k])  # noqa: E731
    return [
        check("TCP 1 stream >= 25% of veth", frac("tcp1_gbps"), 0.25, lambda x: x >= 0.25),
        check("TCP 4 streams >= 25% of veth", frac("tcp4_gbps"), 0.25, lambda x: x >= 0.25),
        check("UDP 64 B delivered >= 60% of veth", frac("udp_kpps"), 0.60, lambda x: x >= 0.60),
        check("ping p50 <= 0.10 ms", w["ping_p50"], 0.10, lambda x: x <= 0.10),
        check("ping p99 <= 0.20 ms", w["ping_p99"], 0.20, lambda x: x <= 0.20),
        check(">= 4 Gbit per tunnel CPU-second (TCP, both tests)", w["tcp_eff"], 4.0,
              lambda x: x >= 4.0),
    ]


def _fmt(fmt, value, scale=1.0):
    if value is None:
        return "n/a"
    if fmt == "{:d}":
        return str(int(value))
    return fmt.format(value * scale)


def _render(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(  # noqa: E731
        str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(r))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def render(table, ratio_table, verdicts):
    cols = list(SYSTEMS) + ["best peer"]
    rows = []
    for key, label, _, _, fmt in METRICS:
        row = table[key]
        scale = SCALE.get(key, 1.0)
        rows.append([label] + [_fmt(fmt, row[s], scale) for s in SYSTEMS]
                    + [_fmt(fmt, row["best-peer"], scale)])
    out = [_render(["metric"] + cols, rows), ""]

    rcols = [f"{t}/{b}" for t in TUNNELS for b in ("veth", "best-peer")]
    rrows = [[label] + [_fmt("{:.2f}", ratio_table[key][c]) for c in rcols]
             for key, label, _, _, _ in METRICS if key not in NO_RATIO]
    out += ["Ratios (a figure divided by veth's, or by the best peer's; "
            "best peer = the better of wireguard-go and boringtun per metric):",
            _render(["metric"] + rcols, rrows), ""]

    trows = [[t["target"], _fmt("{:.3f}", t["value"]), t["verdict"]] for t in verdicts]
    out += ["Targets for weft (issue \"Data-plane speed\"):",
            _render(["target", "weft", "verdict"], trows)]
    return "\n".join(out)


def markdown(table, verdicts, title):
    """One compact markdown table: each system's figures, weft's ratios."""
    keys = ["tcp1_gbps", "tcp1_retr", "tcp4_gbps", "tcp4_retr", "udp_kpps", "udp_loss",
            "ping_p50", "ping_p99", "tcp1_cpu", "tcp4_cpu", "tcp_eff", "other_load"]
    labels = {k: label for k, label, _, _, _ in METRICS}
    fmts = {k: fmt for k, _, _, _, fmt in METRICS}
    rows = [f"| {title} | veth | weft | wireguard-go | boringtun | weft ÷ veth | weft ÷ best peer |",
            "|---|---|---|---|---|---|---|"]
    ratio_table = ratios(table)
    for k in keys:
        row, scale = table[k], SCALE.get(k, 1.0)
        cells = [_fmt(fmts[k], row[s], scale) for s in SYSTEMS]
        r = ratio_table.get(k, {})
        cells += [_fmt("{:.2f}", r.get("weft/veth")), _fmt("{:.2f}", r.get("weft/best-peer"))]
        rows.append(f"| {labels[k]} | " + " | ".join(cells) + " |")
    rows.append("")
    rows.append("Targets: " + "; ".join(
        f"{t['target']}: {_fmt('{:.3f}', t['value'])} {t['verdict']}" for t in verdicts))
    return "\n".join(rows)
