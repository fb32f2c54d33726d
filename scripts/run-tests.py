#!/usr/bin/env python3
"""Runs every test binary of the workspace, several at a time.

`cargo test` runs one test binary after another; most of weft's binaries
wait on processes, namespaces, VMs or timers rather than the CPU, so running
a few at once cuts the wall time of `scripts/test-all` roughly by the number
of jobs. This script:

1. builds every test binary once (`cargo test --workspace --no-run
   --message-format=json`), which also lists them;
2. runs each binary as cargo would (working directory = its package's
   directory, `CARGO_MANIFEST_DIR` and `CARGO_PKG_NAME` set, the arguments
   after `--` passed on), `--jobs` at a time, the slowest known ones first;
3. runs the doc tests (`cargo test --workspace --doc`) as one more job;
4. prints each job's output as it finishes, then a summary, and exits 1 if
   any job failed or did not finish within `--timeout` seconds.

Usage: scripts/run-tests.py [--jobs N] [--timeout S] [-- TEST ARGS...]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

# Binaries that take minutes (measured on a 2-core machine): started first
# so the long ones overlap the many short ones.
SLOW_FIRST = [
    "images",
    "lab_netpol",
    "churn",
    "lab",
    "first_run",
    "ha",
    "ha_chaos",
    "store_etcd",
    "dataplane_mesh",
    "agent_guards",
]


def build(cargo_args):
    """Builds the test binaries; returns [(name, path, package dir, package)]."""
    cmd = ["cargo", "test", "--workspace", "--locked", "--no-run", "--message-format=json-render-diagnostics"]
    cmd += cargo_args
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"run-tests: building the tests failed ({' '.join(cmd)})")
    binaries = []
    for line in proc.stdout.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        if not msg.get("profile", {}).get("test"):
            continue
        target = msg["target"]
        pkg_dir = os.path.dirname(msg["manifest_path"])
        # "path+file:///…/node-agent#weft-node-agent@0.1.0", or
        # "path+file:///…/weftctl#0.1.0" when the name is the directory's.
        fragment = msg["package_id"].rsplit("#", 1)[-1]
        pkg_name = fragment.split("@")[0] if "@" in fragment else os.path.basename(pkg_dir)
        name = target["name"]
        binaries.append((name, msg["executable"], pkg_dir, pkg_name, target["kind"]))
    return binaries


def order(binaries):
    def key(b):
        name = b[0]
        return (SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST), name)

    return sorted(binaries, key=key)


def run_job(label, cmd, cwd, env, timeout):
    start = time.monotonic()
    with tempfile.TemporaryFile(mode="w+") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            rc = f"timeout after {timeout}s"
        out.seek(0)
        text = out.read()
    return label, rc, time.monotonic() - start, text


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("WEFT_TEST_JOBS", "3")))
    parser.add_argument("--timeout", type=int, default=int(os.environ.get("WEFT_TEST_TIMEOUT", "1500")))
    parser.add_argument("rest", nargs="*")
    args = parser.parse_args()
    test_args = args.rest

    binaries = order(build([]))
    print(f"run-tests: {len(binaries)} test binaries and the doc tests, {args.jobs} at a time", flush=True)
    lock = threading.Lock()
    results = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = []
        for name, exe, pkg_dir, pkg_name, kind in binaries:
            env = dict(os.environ, CARGO_MANIFEST_DIR=pkg_dir, CARGO_PKG_NAME=pkg_name)
            label = f"{pkg_name} {'/'.join(kind)} {name}"
            futures.append(pool.submit(run_job, label, [exe] + test_args, pkg_dir, env, args.timeout))
        futures.append(
            pool.submit(
                run_job,
                "doc tests",
                ["cargo", "test", "--workspace", "--locked", "--doc"],
                os.getcwd(),
                dict(os.environ),
                args.timeout,
            )
        )
        for fut in as_completed(futures):
            label, rc, secs, text = fut.result()
            with lock:
                ok = rc == 0
                results.append((label, rc, secs))
                print(f"\n==== {'ok' if ok else 'FAILED'}: {label} ({secs:.0f}s)", flush=True)
                if not ok:
                    print(text, flush=True)
                else:
                    summary = [l for l in text.splitlines() if l.startswith("test result:")]
                    print("\n".join(summary), flush=True)
    failed = [r for r in results if r[1] != 0]
    print("\nrun-tests: slowest:")
    for label, rc, secs in sorted(results, key=lambda r: -r[2])[:8]:
        print(f"  {secs:6.0f}s  {label}")
    if failed:
        print(f"\nrun-tests: {len(failed)} of {len(results)} jobs FAILED:")
        for label, rc, secs in failed:
            print(f"  {label}: {rc}")
        sys.exit(1)
    print(f"\nrun-tests: all {len(results)} jobs passed")


if __name__ == "__main__":
    main()
