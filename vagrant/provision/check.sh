#!/usr/bin/env bash
# The lab's connectivity check (installed as /usr/local/sbin/weft-lab-check
# on every lab VM; run it as root from any of them): `weftctl check
# cluster`, the same check as the local lab's (`weftctl lab up`): every
# node's inventory from its agent, then each node's checks on that node
# (over SSH on the private network), one ✓/✗ matrix. Exits 1 if any check
# fails. Extra arguments go to `weftctl check cluster` (e.g. -o json).
set -euo pipefail
if [ -z "${WEFT_LAB_NODES:-}" ]; then
  # shellcheck source=/dev/null
  . /etc/weft/lab.env
fi
args=()
for pair in $WEFT_LAB_NODES; do
  args+=(--node "$pair")
done
exec /usr/local/bin/weftctl check cluster "${args[@]}" --exec "ssh {host}" \
  --weftctl /usr/local/bin/weftctl --wait "${WEFT_CHECK_WAIT:-120s}" \
  --timeout "${WEFT_CHECK_TIMEOUT:-3s}" "$@"
