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
source "$(dirname "${BASH_SOURCE[0]}")/pods.sh"
run_pods_bench policy "iperf3 ip ss" "iperf3 iproute2" "$@"
