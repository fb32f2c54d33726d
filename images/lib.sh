# Shell functions the image recipes share (sourced by images/*/build).
# Each recipe sets `prog` (its name in messages) before sourcing this.

die() {
  echo "$prog: $*" >&2
  exit 1
}

# The busybox-static binary, checked: static, with the applets a recipe
# needs.
require_busybox() {
  busybox=/bin/busybox
  [ -x "$busybox" ] || die "$busybox is missing: apt-get install busybox-static"
  "$busybox" --list 2>/dev/null | grep -x modprobe >/dev/null ||
    die "$busybox is not busybox-static (no modprobe applet): apt-get install busybox-static"
  if command -v file >/dev/null && file -L "$busybox" | grep 'dynamically linked' >/dev/null; then
    die "$busybox is dynamically linked: apt-get install busybox-static"
  fi
}

# Puts busybox in DIR/bin with a symlink for every applet.
stage_busybox() {
  local root=$1 applet
  mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin"
  cp "$busybox" "$root/bin/busybox"
  for applet in $("$busybox" --list-full); do
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
  done
}

# Copies the C libraries (and the loader) that the binaries BIN... link
# into DIR, at the same paths.
stage_libs() {
  local root=$1 lib
  shift
  command -v ldd >/dev/null || die "'ldd' is missing: apt-get install libc-bin"
  for b in "$@"; do
    ldd "$b" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }'
  done | sort -u | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}

# Copies BIN to DIR/PATH, stripped of debug info when strip exists.
stage_bin() {
  local src=$1 dest=$2
  mkdir -p "$(dirname "$dest")"
  cp "$src" "$dest"
  chmod 0755 "$dest"
  if command -v strip >/dev/null; then strip "$dest"; fi
}

# Runs cargo build for the packages given (after the profile flags) and
# sets bin_dir to the profile directory, unless bin_dir is set already.
# Usage: cargo_bins PROFILE PACKAGE...
cargo_bins() {
  local profile=$1 flags=()
  shift
  [ -z "$bin_dir" ] || return 0
  command -v cargo >/dev/null || die "cargo is missing; install Rust, or pass --bin-dir with prebuilt binaries"
  [ "$profile" = release ] && flags+=(--release)
  local packages=()
  for p in "$@"; do packages+=(-p "$p"); done
  echo "$prog: cargo build ${flags[*]} --bins ${packages[*]}" >&2
  cargo build "${flags[@]}" --manifest-path "$repo/Cargo.toml" --bins "${packages[@]}" >&2 ||
    die "cargo build failed (see above)"
  bin_dir="${CARGO_TARGET_DIR:-$repo/target}/$profile"
}

# Checks that each BIN... is an executable in bin_dir.
require_bins() {
  bin_dir=$(cd "$bin_dir" 2>/dev/null && pwd) || die "--bin-dir $bin_dir is not a directory"
  for b in "$@"; do
    [ -x "$bin_dir/$b" ] || die "$bin_dir/$b not found; build it with cargo build (see --help)"
  done
}

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

# Prints the comment block at the top of the running script (its help).
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
