"""The four systems under test, each set up in namespaces of its own.

Every system starts from the same underlay: two node namespaces `n1`, `n2`
joined by one veth pair (`ul0`, MTU 1500, 172.31.250.1/.2, default
offloads). `setup_<system>` builds on it and returns an `Endpoints`: where
the iperf3/ping client runs, where the server runs and its address, and the
PIDs of the tunnel processes whose CPU time counts.
"""

import json
import os
import time
from dataclasses import dataclass, field

from sandbox import StepError

UNDERLAY = ("172.31.250.1", "172.31.250.2")
UNDERLAY_PREFIX = 24
UNDERLAY_MTU = 1500
OVERLAY_MTU = UNDERLAY_MTU - 80  # weft's rule, and wg-quick's default
WG_PORT = 51820
WG_ADDRS = ("10.200.0.1", "10.200.0.2")  # outside 10.244/16 and 10.96/12
CONTROL_PLANE_PORT = 7443


@dataclass
class Endpoints:
    client_ns: str
    server_ns: str
    server_addr: str
    tunnel_pids: dict = field(default_factory=dict)  # name -> pid
    notes: dict = field(default_factory=dict)
    # weft only: how each agent was started (for benchmarks that restart
    # one): dicts of name, ns, argv, env, socket, proc. Not reported.
    agents: list = field(default_factory=list)


@dataclass
class Tools:
    bin_dir: str  # weft's target/release
    boringtun: str
    boringtun_threads: int = 0  # 0: boringtun-cli's own default


def underlay(sb):
    n1 = sb.add_ns("n1")
    n2 = sb.add_ns("n2")
    # Created from inside n1 with its peer sent to n2: nothing ever appears
    # in the root namespace.
    sb.run(["ip", "-n", n1, "link", "add", "ul0", "mtu", str(UNDERLAY_MTU),
            "type", "veth", "peer", "name", "ul0", "mtu", str(UNDERLAY_MTU),
            "netns", n2])
    for ns, addr in ((n1, UNDERLAY[0]), (n2, UNDERLAY[1])):
        sb.run(["ip", "-n", ns, "addr", "add", f"{addr}/{UNDERLAY_PREFIX}", "dev", "ul0"])
        sb.run(["ip", "-n", ns, "link", "set", "ul0", "up"])
    return n1, n2


def wait_for(what, predicate, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except StepError as e:
            last = e
        time.sleep(interval)
    raise StepError(f"timed out after {timeout} s waiting for {what}" +
                    (f": {last}" if last else ""))


def _check_alive(proc):
    if not proc.alive():
        raise StepError(f"{proc.name} (pid {proc.pid}) exited with "
                        f"{proc.popen.returncode}; its log ends:\n{proc.log_tail()}")


# -- (a) plain veth --------------------------------------------------------

def setup_veth(sb, tools):
    n1, n2 = underlay(sb)
    return Endpoints(n1, n2, UNDERLAY[1], {})


# -- (b) weft ----------------------------------------------------------------

def setup_weft(sb, tools):
    n1, n2 = underlay(sb)
    cp_bin = os.path.join(tools.bin_dir, "weft-control-plane")
    agent_bin = os.path.join(tools.bin_dir, "weft-agent")
    weftctl = os.path.join(tools.bin_dir, "weftctl")
    env = {"WEFT_LOG": "info", "NO_COLOR": "1"}
    # The control plane runs in node 1's namespace: it is idle during the
    # measurements and its CPU is not counted.
    cp_addr = f"{UNDERLAY[0]}:{CONTROL_PLANE_PORT}"
    cp_dir = os.path.join(sb.workdir, "control-plane")
    admin_conf = os.path.join(cp_dir, "admin.conf")
    cp = sb.spawn("control-plane", [cp_bin, "--listen", cp_addr, "--advertise-address",
                                    cp_addr, "--state-dir", cp_dir], ns=n1, env=env)

    def cp_ready():
        _check_alive(cp)
        if not os.path.exists(admin_conf):
            return False
        sb.run([weftctl, "cluster", "info", "--config", admin_conf], ns=n1, timeout=5)
        return True

    wait_for("the control plane to answer", cp_ready, 30)
    token = json.loads(sb.run(
        [weftctl, "token", "create", "--config", admin_conf, "--ttl", "1h", "--usages", "2",
         "--description", "weft-bench dataplane", "-o", "json"], ns=n1, timeout=15).stdout)

    agents = []
    started = []
    for i, ns in enumerate((n1, n2), start=1):
        state = os.path.join(sb.workdir, f"agent-n{i}")
        socket = os.path.join(sb.workdir, f"agent-n{i}.sock")
        argv = [agent_bin, "--control-plane", cp_addr, "--name", f"n{i}",
                "--endpoint", f"{UNDERLAY[i - 1]}:{WG_PORT}", "--listen-port", str(WG_PORT),
                # What the agent would derive from ul0 anyway; explicit so
                # that every system certainly runs the same overlay MTU.
                "--mtu", str(OVERLAY_MTU),
                "--state-dir", state, "--api-socket", socket,
                "--ca-hash", token["ca_cert_hash"]]
        agent_env = dict(env, WEFT_TOKEN=token["token"])
        agents.append((sb.spawn(f"weft-agent-n{i}", argv, ns=ns, env=agent_env), socket))
        started.append({"name": f"weft-agent-n{i}", "ns": ns, "argv": argv,
                        "env": agent_env, "socket": socket, "proc": agents[-1][0]})

    def status(proc, socket):
        _check_alive(proc)
        return json.loads(sb.run([weftctl, "status", "--agent-socket", socket, "-o", "json"],
                                 timeout=5).stdout)

    for proc, socket in agents:
        wait_for(f"{proc.name} to join and start its data plane",
                 lambda: (lambda s: s["node"]["pod_cidr"] and s["dataplane"] is not None)(
                     status(proc, socket)), 60)

    pods = []
    for i, (proc, socket) in enumerate(agents, start=1):
        pod_ns = sb.add_ns(f"p{i}")
        out = sb.run([weftctl, "pod", "add", f"bench-p{i}", "--netns", f"/run/netns/{pod_ns}",
                      "--agent-socket", socket, "-o", "json"], timeout=30).stdout
        pod = json.loads(out)
        pods.append((pod_ns, pod.get("pod", pod)["address"]))

    for proc, socket in agents:
        wait_for(f"{proc.name} to have the other node as a peer",
                 lambda: len((status(proc, socket)["dataplane"] or {}).get("peers", [])) >= 1, 60)

    final = [status(p, s) for p, s in agents]
    return Endpoints(
        pods[0][0], pods[1][0], pods[1][1],
        {f"weft-agent-n{i}": p.pid for i, (p, _) in enumerate(agents, start=1)},
        notes={"pods": [a for _, a in pods],
               "pod_cidrs": [s["node"]["pod_cidr"] for s in final],
               "mtu": [s["node"]["mtu"] for s in final]},
        agents=started,
    )


# -- (c) wireguard-go and (d) boringtun, both configured with `wg` -----------

def _wg_keys(sb, name):
    priv = sb.run(["wg", "genkey"]).stdout.strip()
    pub = sb.run(["wg", "pubkey"], input=priv + "\n").stdout.strip()
    path = os.path.join(sb.workdir, f"{name}.key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(priv + "\n")
    return path, pub


def _setup_userspace_wg(sb, label, start):
    """Two userspace WireGuard processes, one per node, a tunnel between
    them configured with `wg` over their UAPI sockets."""
    n1, n2 = underlay(sb)
    pid = os.getpid()
    nodes = []
    for i, ns in enumerate((n1, n2)):
        # /var/run/wireguard/<ifname>.sock is shared by every namespace, so
        # the names must be unique on the machine: wbd<pid>a, wbd<pid>b.
        ifname = sb.wg_interface(f"wbd{pid}{'ab'[i]}")
        key, pub = _wg_keys(sb, f"{label}-n{i + 1}")
        proc = start(sb, ns, ifname, f"{label}-n{i + 1}")
        nodes.append((ns, ifname, key, pub, proc))
    for ns, ifname, _, _, proc in nodes:
        sock = f"/var/run/wireguard/{ifname}.sock"

        def ready():
            _check_alive(proc)
            return os.path.exists(sock)

        wait_for(f"{proc.name} to open {sock}", ready, 15)
    for i, (ns, ifname, key, _, _) in enumerate(nodes):
        other = 1 - i
        sb.run(["wg", "set", ifname, "private-key", key, "listen-port", str(WG_PORT),
                "peer", nodes[other][3], "allowed-ips", f"{WG_ADDRS[other]}/32",
                "endpoint", f"{UNDERLAY[other]}:{WG_PORT}"], ns=ns)
        sb.run(["ip", "-n", ns, "addr", "add", f"{WG_ADDRS[i]}/24", "dev", ifname])
        sb.run(["ip", "-n", ns, "link", "set", ifname, "mtu", str(OVERLAY_MTU), "up"])
    return Endpoints(n1, n2, WG_ADDRS[1],
                     {f"{label}-n{i + 1}": n[4].pid for i, n in enumerate(nodes)})


def setup_wireguard_go(sb, tools):
    def start(sb, ns, ifname, name):
        env = {
            "WG_PROCESS_FOREGROUND": "1",
            # wireguard-go refuses to run on a kernel >= 5.6 without this.
            "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1",
            "LOG_LEVEL": "error",
        }
        return sb.spawn(name, ["wireguard-go", "-f", ifname], ns=ns, env=env)

    return _setup_userspace_wg(sb, "wireguard-go", start)


def setup_boringtun(sb, tools):
    def start(sb, ns, ifname, name):
        argv = [tools.boringtun, "--foreground", "--disable-drop-privileges",
                "--log", os.path.join(sb.logdir, f"{name}.boringtun.log")]
        if tools.boringtun_threads:
            argv += ["--threads", str(tools.boringtun_threads)]
        return sb.spawn(name, argv + [ifname], ns=ns, env={"WG_SUDO": "1"})

    return _setup_userspace_wg(sb, "boringtun", start)


SYSTEMS = {
    "veth": setup_veth,
    "weft": setup_weft,
    "wireguard-go": setup_wireguard_go,
    "boringtun": setup_boringtun,
}
