#!/usr/bin/env bash
# Checks vagrant/Vagrantfile with `vagrant validate` (the libvirt provider),
# for CI (scripts/test-all) and by hand. Installs Vagrant and vagrant-libvirt
# from Debian first when they are missing (as root: apt-get update, then
# `apt-get install --no-install-recommends vagrant vagrant-libvirt`;
# validating needs neither QEMU nor libvirtd, so none is installed).
# Brings no VM up and needs no box, no binaries, no network beyond the
# Debian mirror for the install.
#
#   sudo vagrant/validate.sh
#
# Bounded in time: the install by WEFT_VALIDATE_INSTALL_TIMEOUT (default
# 900 s), each `vagrant validate` by 120 s. Exits non-zero with one line
# saying what failed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
start=$(date +%s)
log() { printf 'vagrant/validate: %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# No call home to HashiCorp's version check: only the Debian mirror is reachable.
export VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_BOX_UPDATE_CHECK_DISABLE=1
export VAGRANT_DEFAULT_PROVIDER=libvirt

have_plugin() { vagrant plugin list 2>/dev/null | grep -q '^vagrant-libvirt '; }

if ! command -v vagrant >/dev/null || ! have_plugin; then
  [ "$(id -u)" -eq 0 ] || die "vagrant and vagrant-libvirt are not installed and installing them needs root: sudo $0"
  command -v apt-get >/dev/null || die "vagrant and vagrant-libvirt are not installed and there is no apt-get here to install them"
  log "installing vagrant and vagrant-libvirt (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  bound="${WEFT_VALIDATE_INSTALL_TIMEOUT:-900}"
  apt_opts=(-o DPkg::Lock::Timeout=300 -y -qq --no-install-recommends)
  timeout "$bound" apt-get update -qq >/tmp/weft-vagrant-validate-apt.log 2>&1 ||
    { tail -5 /tmp/weft-vagrant-validate-apt.log >&2; die "apt-get update failed or took over ${bound}s"; }
  timeout "$bound" apt-get install "${apt_opts[@]}" vagrant vagrant-libvirt >>/tmp/weft-vagrant-validate-apt.log 2>&1 ||
    { tail -5 /tmp/weft-vagrant-validate-apt.log >&2; die "apt-get install vagrant vagrant-libvirt failed or took over ${bound}s"; }
  have_plugin || die "vagrant-libvirt is installed but \`vagrant plugin list\` does not show it"
  log "installed $(vagrant --version) with vagrant-libvirt in $(($(date +%s) - start))s"
fi

cd "$here"
validate() {
  local what="$1"
  shift
  local out
  if ! out="$(env "$@" timeout 120 vagrant validate 2>&1)"; then
    printf '%s\n' "$out" >&2
    die "vagrant validate ($what): the Vagrantfile is invalid (above)"
  fi
}
validate "defaults"
validate "WEFT_NODES=4 WEFT_LIBVIRT_DRIVER=qemu" WEFT_NODES=4 WEFT_LIBVIRT_DRIVER=qemu
# Bad settings are refused with a message naming them.
if out="$(WEFT_NODES=zero timeout 120 vagrant validate 2>&1)" || ! grep -q 'WEFT_NODES="zero"' <<<"$out"; then
  printf '%s\n' "$out" >&2
  die "WEFT_NODES=zero was not refused with a message naming it"
fi
log "ok: the Vagrantfile is valid ($(vagrant --version), libvirt provider) in $(($(date +%s) - start))s"
