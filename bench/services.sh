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
source "$(dirname "${BASH_SOURCE[0]}")/pods.sh"
run_pods_bench services "iperf3 ip ss nft" "iperf3 iproute2 nftables" "$@"
