#!/usr/bin/env bash
# weft's data-plane benchmark, side by side with plain veth, wireguard-go and
# boringtun, on network namespaces of its own. Run as root:
#
#   sudo bench/dataplane.sh            # 10 s per iperf3 test, ~3 minutes
#   sudo bench/dataplane.sh --quick    # 3 s per test, a smoke test
#   sudo bench/dataplane.sh --help     # every option
#
# This script makes sure the tools are there, builds weft in release, then
# hands over to bench/dataplane/main.py (which does the measuring). Options
# of its own (the rest go to main.py):
#   --no-install   do not apt-get / cargo install anything; fail if missing
#   --no-build     use the weft binaries already in target/release
# See bench/README.md, "Data plane".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
tools="$target/bench-tools"
boringtun="$tools/bin/boringtun-cli"

install=1 build=1 pass=()
for a in "$@"; do
  case "$a" in
    --no-install) install=0 ;;
    --no-build) build=0 ;;
    -h|--help) exec python3 "$root/bench/dataplane/main.py" --help ;;
    *) pass+=("$a") ;;
  esac
done

if [[ $EUID -ne 0 ]]; then
  echo "bench/dataplane.sh: needs root (network namespaces, TUN devices); try sudo" >&2
  exit 2
fi

# command -> Debian package
declare -A pkg=(
  [iperf3]=iperf3 [wireguard-go]=wireguard-go [wg]=wireguard-tools
  [ip]=iproute2 [ss]=iproute2 [ping]=iputils-ping [ps]=procps
)
missing=()
for cmd in "${!pkg[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg[$cmd]}")
done
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if ((!install)); then
    echo "bench/dataplane.sh: missing packages: ${missing[*]} (and --no-install)" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -qq
  timeout 900 apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [[ ! -x "$boringtun" ]]; then
  if ((!install)); then
    echo "bench/dataplane.sh: $boringtun is missing (and --no-install)" >&2
    exit 1
  fi
  echo "installing boringtun-cli into $tools (cargo install --locked)"
  timeout 1800 cargo install boringtun-cli --locked --root "$tools"
fi

if ((build)); then
  echo "building weft (release)"
  (cd "$root" && timeout 3600 cargo build --release \
    -p weft-control-plane -p weft-node-agent -p weftctl)
fi

exec python3 "$root/bench/dataplane/main.py" \
  --bin-dir "$target/release" --boringtun "$boringtun" "${pass[@]}"
