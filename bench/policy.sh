#!/usr/bin/env bash
# NetworkPolicy's cost on weft's pod-to-pod path (issue 16's benchmark), on
# network namespaces of its own. Run as root:
#
#   sudo bench/policy.sh                    # 1000 policies, 10 s iperf3, 5 s connrate
#   sudo bench/policy.sh --policies 200     # options go to bench/policy/main.py
#   sudo bench/policy.sh --no-build         # use target/release as it is
#
# Builds weft and weft-bench in release, then measures: no policy, N
# policies allowing the flow by the last rule, no policy again. See
# bench/README.md, "NetworkPolicy cost".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build=1 pass=()
for a in "$@"; do
  case "$a" in
    --no-build) build=0 ;;
    -h|--help) exec python3 "$root/bench/policy/main.py" --help ;;
    *) pass+=("$a") ;;
  esac
done
if [[ $EUID -ne 0 ]]; then
  echo "bench/policy.sh: needs root (network namespaces, TUN devices); try sudo" >&2
  exit 2
fi
for cmd in iperf3 ip ss; do
  command -v "$cmd" >/dev/null || { echo "bench/policy.sh: $cmd is missing (apt-get install iperf3 iproute2)" >&2; exit 1; }
done
if [[ $build = 1 ]]; then
  (cd "$root" && cargo build --release --locked -p weft-control-plane -p weft-node-agent -p weftctl -p weft-bench)
fi
exec python3 "$root/bench/policy/main.py" --bin-dir "${CARGO_TARGET_DIR:-$root/target}/release" "${pass[@]}"
