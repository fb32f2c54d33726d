# Shared by bench/policy.sh and bench/services.sh (sourced, not run): the
# root check, the tools, the release build (unless --no-build), then
# bench/<name>/main.py with the remaining arguments.
#
#   run_pods_bench NAME "TOOL..." "APT PACKAGES" ARGS...
run_pods_bench() {
  local name="$1" tools="$2" packages="$3"
  shift 3
  local root build=1 pass=() a cmd
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  for a in "$@"; do
    case "$a" in
      --no-build) build=0 ;;
      -h|--help) exec python3 "$root/bench/$name/main.py" --help ;;
      *) pass+=("$a") ;;
    esac
  done
  if [[ $EUID -ne 0 ]]; then
    echo "bench/$name.sh: needs root (network namespaces, TUN devices); try sudo" >&2
    exit 2
  fi
  for cmd in $tools; do
    command -v "$cmd" >/dev/null || { echo "bench/$name.sh: $cmd is missing (apt-get install $packages)" >&2; exit 1; }
  done
  if [[ $build = 1 ]]; then
    (cd "$root" && cargo build --release --locked -p weft-control-plane -p weft-node-agent -p weftctl -p weft-bench)
  fi
  exec python3 "$root/bench/$name/main.py" --bin-dir "${CARGO_TARGET_DIR:-$root/target}/release" "${pass[@]}"
}
