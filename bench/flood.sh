#!/usr/bin/env bash
# weft under a WireGuard handshake-initiation flood (issue 10, item 4), on
# network namespaces of its own. Run as root:
#
#   sudo bench/flood.sh                    # this tree
#   sudo bench/flood.sh --base 358121a     # a build of that commit first, then this tree
#   sudo bench/flood.sh --base 358121a --base-tree /work/wt/x   # where its worktree goes
#   sudo bench/flood.sh --rate 100000 --seconds 5   # options go to bench/flood/main.py
#
# It builds weft and the flooder (`weft-bench flood`) in release; with
# --base REV it also builds REV in a temporary git worktree (removed again)
# into the same target dir, keeps its binaries in target/flood-base, and
# measures both builds in one sitting, REV first. See bench/README.md,
# "Handshake flood".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
base="" tree="" pass=()
while (($#)); do
  case "$1" in
    --base) base="$2"; shift 2 ;;
    --base-tree) tree="$2"; shift 2 ;;
    -h|--help) exec python3 "$root/bench/flood/main.py" --help ;;
    *) pass+=("$1"); shift ;;
  esac
done

if [[ $EUID -ne 0 ]]; then
  echo "bench/flood.sh: needs root (network namespaces, TUN devices); try sudo" >&2
  exit 2
fi
for cmd in iperf3 ip ping ss tc; do
  command -v "$cmd" >/dev/null || { echo "bench/flood.sh: $cmd is missing (apt-get install iperf3 iproute2 iputils-ping)" >&2; exit 1; }
done

bins=(-p weft-control-plane -p weft-node-agent -p weftctl)
builds=()
if [[ -n "$base" ]]; then
  [[ -n "$tree" ]] || tree="$(mktemp -d -u /tmp/weft-flood-base.XXXXXX)"
  trap 'git -C "$root" worktree remove --force "$tree" 2>/dev/null || true; rm -rf "$tree"' EXIT
  git -C "$root" worktree add --detach "$tree" "$base" >/dev/null
  echo "building $base (release) in $tree"
  (cd "$tree" && CARGO_TARGET_DIR="$target" timeout 3600 cargo build --release "${bins[@]}")
  mkdir -p "$target/flood-base"
  for b in weft-agent weft-control-plane weftctl; do
    cp "$target/release/$b" "$target/flood-base/$b"
  done
  git -C "$root" worktree remove --force "$tree"
  trap - EXIT
  builds+=(--build "base-$base=$target/flood-base")
fi
echo "building this tree (release)"
(cd "$root" && timeout 3600 cargo build --release "${bins[@]}" -p weft-bench)
builds+=(--build "this-tree=$target/release")

exec python3 "$root/bench/flood/main.py" --flooder "$target/release/weft-bench" \
  "${builds[@]}" "${pass[@]}"
