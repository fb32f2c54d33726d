#!/usr/bin/env bash
# Services' cost on weft's pod-to-pod path (issue 14's benchmark), on
# network namespaces of its own. Run as root:
#
#   sudo bench/services.sh                    # 10 s iperf3, 5 s connrate, 100 000 entries
#   sudo bench/services.sh --fill 20000       # options go to bench/services/main.py
#   sudo bench/services.sh --no-build         # use target/release as it is
#
# Builds weft and weft-bench in release, then measures pod -> pod IP, pod ->
# ClusterIP, the kernel's nftables DNAT, and the agent's memory with a full
# conntrack table. See bench/README.md, "Services cost".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build=1 pass=()
for a in "$@"; do
  case "$a" in
    --no-build) build=0 ;;
    -h|--help) exec python3 "$root/bench/services/main.py" --help ;;
    *) pass+=("$a") ;;
  esac
done
if [[ $EUID -ne 0 ]]; then
  echo "bench/services.sh: needs root (network namespaces, TUN devices); try sudo" >&2
  exit 2
fi
for cmd in iperf3 ip ss nft; do
  command -v "$cmd" >/dev/null || { echo "bench/services.sh: $cmd is missing (apt-get install iperf3 iproute2 nftables)" >&2; exit 1; }
done
if [[ $build = 1 ]]; then
  (cd "$root" && cargo build --release --locked -p weft-control-plane -p weft-node-agent -p weftctl -p weft-bench)
fi
exec python3 "$root/bench/services/main.py" --bin-dir "${CARGO_TARGET_DIR:-$root/target}/release" "${pass[@]}"
