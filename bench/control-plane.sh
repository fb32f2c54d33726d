#!/usr/bin/env bash
# Build the control plane and the benchmark in release mode, then run the
# control-plane scale benchmark. Arguments go to `weft-bench control-plane`,
# e.g.:  bench/control-plane.sh --nodes 2000
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cargo build --release -p weft-control-plane -p weft-bench
target="${CARGO_TARGET_DIR:-$root/target}"
exec "$target/release/weft-bench" control-plane "$@"
