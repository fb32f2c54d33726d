"""What the benchmark owns on the machine, and how it gives it back.

A `Sandbox` makes network namespaces and starts child processes, remembers
every one of them, and removes them all in `close()`: children by PID
(SIGTERM, then SIGKILL), then every process still inside one of its
namespaces, then the namespaces. Every command it runs is bounded by a
timeout. Namespace names start with the sandbox's prefix `wbd-<pid>-`, so a
later run can recognise and remove what a killed run left behind
(`remove_stale`).
"""

import ctypes
import os
import re
import signal
import subprocess
import time

PREFIX_RE = re.compile(r"^wbd-(\d+)-")
WG_SOCKET_DIR = "/var/run/wireguard"
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class StepError(Exception):
    """A step of the benchmark failed; the message says which and why."""


def _child_setup():
    # A new session keeps a terminal's Ctrl-C away from the children, so
    # that the benchmark stops them itself, in order. PDEATHSIG takes them
    # down even if the benchmark is killed with SIGKILL.
    os.setsid()
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Proc:
    """A child process started by the sandbox."""

    def __init__(self, name, popen, log):
        self.name = name
        self.popen = popen
        self.log = log

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def log_tail(self, lines=20):
        return log_tail(self.log, lines)


def log_tail(path, lines=20):
    try:
        with open(path, "rb") as f:
            text = f.read()[-16384:].decode("utf-8", "replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text.splitlines()[-lines:])


class Sandbox:
    def __init__(self, prefix, workdir, verbose=False):
        self.prefix = prefix
        self.workdir = workdir
        self.logdir = os.path.join(workdir, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.verbose = verbose
        self.namespaces = []
        self.procs = []
        self.wg_interfaces = []

    # -- commands -------------------------------------------------------

    def run(self, argv, timeout=10, ns=None, env=None, check=True, input=None):
        """Runs `argv` (in namespace `ns`) to completion within `timeout` s."""
        if ns is not None:
            argv = ["ip", "netns", "exec", ns] + list(argv)
        if self.verbose:
            print("  $ " + " ".join(argv), flush=True)
        full_env = dict(os.environ, **(env or {}))
        try:
            done = subprocess.run(
                argv,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=full_env,
                preexec_fn=_child_setup,
            )
        except subprocess.TimeoutExpired as e:
            raise StepError(f"`{' '.join(argv)}` did not finish within {timeout} s") from e
        except OSError as e:
            raise StepError(f"`{' '.join(argv)}` could not start: {e}") from e
        if check and done.returncode != 0:
            raise StepError(
                f"`{' '.join(argv)}` exited with {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()[-2000:]}"
            )
        return done

    def spawn(self, name, argv, ns=None, env=None):
        """Starts a long-running child; its output goes to logs/<name>.log."""
        if ns is not None:
            # `ip netns exec` execs the command: the PID stays the same.
            argv = ["ip", "netns", "exec", ns] + list(argv)
        if self.verbose:
            print("  $ " + " ".join(argv) + " &", flush=True)
        log = os.path.join(self.logdir, f"{name}.log")
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, **(env or {})),
                preexec_fn=_child_setup,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def stop(self, proc, grace=3.0):
        """SIGTERM, then SIGKILL after `grace` s; by PID, never by name."""
        if proc.alive():
            _signal(proc.pid, signal.SIGTERM)
            try:
                proc.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal(proc.pid, signal.SIGKILL)
                try:
                    proc.popen.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
        if proc in self.procs:
            self.procs.remove(proc)

    # -- namespaces -------------------------------------------------------

    def add_ns(self, suffix):
        name = self.prefix + suffix
        self.run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        self.run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def del_ns(self, name):
        kill_namespace(name)
        if name in self.namespaces:
            self.namespaces.remove(name)

    def wg_interface(self, name):
        """Records a userspace WireGuard interface, whose UAPI socket in
        /var/run/wireguard is shared by all namespaces and must go too."""
        self.wg_interfaces.append(name)
        return name

    # -- clean-up -------------------------------------------------------

    def close(self):
        errors = []
        for proc in reversed(list(self.procs)):
            try:
                self.stop(proc)
            except Exception as e:  # keep cleaning
                errors.append(f"stopping {proc.name} (pid {proc.pid}): {e}")
        for ns in reversed(list(self.namespaces)):
            try:
                self.del_ns(ns)
            except Exception as e:
                errors.append(f"deleting namespace {ns}: {e}")
        for ifname in self.wg_interfaces:
            _unlink(os.path.join(WG_SOCKET_DIR, f"{ifname}.sock"))
        self.wg_interfaces = []
        return errors


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def namespace_pids(name):
    try:
        out = subprocess.run(
            ["ip", "netns", "pids", name], capture_output=True, text=True, timeout=5
        ).stdout
    except subprocess.TimeoutExpired:
        return []
    return [int(p) for p in out.split() if p.isdigit()]


def kill_namespace(name, grace=3.0):
    """Stops every process inside namespace `name` (by PID), then deletes it."""
    pids = namespace_pids(name)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = namespace_pids(name)
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    if pids:
        time.sleep(0.2)
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
    if os.path.exists(f"/run/netns/{name}"):
        raise StepError(f"namespace {name} is still there after `ip netns del`")


def remove_stale():
    """Removes the namespaces of earlier runs whose process is gone.

    Returns the names removed."""
    removed = []
    try:
        names = os.listdir("/run/netns")
    except FileNotFoundError:
        return removed
    for name in sorted(names):
        m = PREFIX_RE.match(name)
        if not m:
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or os.path.exists(f"/proc/{pid}"):
            continue
        kill_namespace(name)
        removed.append(name)
    if os.path.isdir(WG_SOCKET_DIR):
        for sock in os.listdir(WG_SOCKET_DIR):
            m = re.match(r"^wbd(\d+)[a-z]\.sock$", sock)
            if m and not os.path.exists(f"/proc/{m.group(1)}"):
                _unlink(os.path.join(WG_SOCKET_DIR, sock))
    return removed
