#!/usr/bin/env bash
# The Vagrant lab end to end, for real (opt-in; CI does not run it):
#
#   sudo WEFT_VAGRANT_E2E=1 vagrant/e2e.sh
#
# 1. installs what it needs when missing (Debian: qemu-system-x86 — from
#    bookworm-backports when this machine's qemu-utils comes from there —,
#    libvirt-daemon-system, dnsmasq-base, vagrant, vagrant-libvirt,
#    debootstrap) and starts libvirtd if it is not running (by hand where
#    there is no systemd, stopping it again at the end);
# 2. cargo build --release of weftctl, weft-control-plane, weft-agent;
# 3. builds and adds the box (vagrant/build-box.sh) unless WEFT_BOX is there;
# 4. picks the libvirt driver: kvm if a kernel boots under KVM here within
#    20 s, else qemu (software emulation) — unless WEFT_LIBVIRT_DRIVER is set;
# 5. `vagrant up` (control plane, WEFT_NODES nodes, pods; the last node runs
#    the connectivity check, so up fails if any check fails), then the check
#    again from the control-plane VM (weft-lab-check), `weftctl nodes`;
# 6. `vagrant destroy -f`, also when a step fails (WEFT_E2E_KEEP=1 keeps the
#    VMs to look at). Prints each phase's time.
#
# Without WEFT_VAGRANT_E2E=1 it does nothing and exits 2: it never passes
# without running. Takes 15-30 minutes under software emulation on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
log() { printf '\nvagrant/e2e: %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

if [ "${WEFT_VAGRANT_E2E:-}" != 1 ]; then
  echo "vagrant/e2e.sh: not run: it boots VMs and takes 15-30 minutes; set WEFT_VAGRANT_E2E=1 to run it" >&2
  exit 2
fi
[ "$(id -u)" -eq 0 ] || die "run as root (packages, libvirt, debootstrap): sudo WEFT_VAGRANT_E2E=1 $0"

export VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_BOX_UPDATE_CHECK_DISABLE=1
export VAGRANT_DEFAULT_PROVIDER=libvirt LIBVIRT_DEFAULT_URI=qemu:///system
box="${WEFT_BOX:-weft/debian12}"
t0=$(date +%s)
phase_start=$t0
timings=()
phase() {
  local now
  now=$(date +%s)
  timings+=("$(printf '%-34s %5ss' "$1" $((now - phase_start)))")
  phase_start=$now
}

# 1. Packages.
export DEBIAN_FRONTEND=noninteractive
apt_install() { apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "$@" >/dev/null; }
updated=0
apt_update() { [ "$updated" = 1 ] || { apt-get update -qq; updated=1; }; }
if ! command -v qemu-system-x86_64 >/dev/null; then
  apt_update
  if dpkg-query -W -f '${Version}' qemu-utils 2>/dev/null | grep -q bpo12; then
    # qemu-system-x86 must match this machine's qemu-utils from backports.
    if ! apt-cache policy | grep -q bookworm-backports; then
      printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        >/etc/apt/sources.list.d/bookworm-backports.sources
      apt-get update -qq
    fi
    log "installing qemu-system-x86 from bookworm-backports"
    apt_install -t bookworm-backports qemu-system-x86
  else
    log "installing qemu-system-x86"
    apt_install qemu-system-x86
  fi
fi
need=()
command -v libvirtd >/dev/null || need+=(libvirt-daemon-system)
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
command -v iptables >/dev/null || need+=(iptables)
command -v vagrant >/dev/null || need+=(vagrant)
vagrant plugin list 2>/dev/null | grep -q '^vagrant-libvirt ' || need+=(vagrant-libvirt)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v strip >/dev/null || need+=(binutils)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt_update
  apt_install "${need[@]}"
fi
started_daemons=()   # daemons started here (their pid files are /run/NAME.pid)
if ! virsh version >/dev/null 2>&1; then
  if [ -d /run/systemd/system ]; then
    systemctl start libvirtd.service
  else
    log "no systemd: starting virtlogd and libvirtd by hand"
    pgrep -x virtlogd >/dev/null || { virtlogd -d && started_daemons+=(virtlogd); }
    libvirtd -d && started_daemons+=(libvirtd)
  fi
  for _ in $(seq 50); do virsh version >/dev/null 2>&1 && break; sleep 0.2; done
  virsh version >/dev/null 2>&1 || die "libvirtd does not answer on qemu:///system"
fi
phase "packages, libvirtd"

# 2. The binaries the VMs run.
log "cargo build --release"
(cd "$root" && cargo build --release --locked -p weftctl -p weft-control-plane -p weft-node-agent)
phase "cargo build --release"

# 3. The box.
if ! vagrant box list 2>/dev/null | grep -q "^$box .*libvirt"; then
  [ "$box" = weft/debian12 ] || die "box $box (libvirt) is not added, and only weft/debian12 can be built here"
  log "building the box $box (vagrant/build-box.sh)"
  "$here/build-box.sh"
fi
phase "box"

# 4. KVM, or software emulation.
if [ -z "${WEFT_LIBVIRT_DRIVER:-}" ]; then
  WEFT_LIBVIRT_DRIVER=qemu
  kernel="$here/.box/vmlinuz"
  if [ -r /dev/kvm ] && [ -f "$kernel" ]; then
    # A kernel's first lines within 20 s under KVM, or KVM is not usable
    # here (e.g. nested virtualisation that hangs).
    if timeout 20 qemu-system-x86_64 -accel kvm -m 256 -display none -no-reboot \
      -serial stdio -kernel "$kernel" -append "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1" 2>/dev/null |
      grep -q -m1 "Linux version"; then
      WEFT_LIBVIRT_DRIVER=kvm
    fi
  fi
  export WEFT_LIBVIRT_DRIVER
fi
log "libvirt driver: $WEFT_LIBVIRT_DRIVER"
phase "KVM probe"

# 5. Up, check, down.
cd "$here"
cleanup() {
  local rc=$?
  if [ "${WEFT_E2E_KEEP:-}" = 1 ]; then
    log "WEFT_E2E_KEEP=1: the VMs stay up (cd vagrant && vagrant destroy -f removes them)"
  else
    log "vagrant destroy -f"
    vagrant destroy -f >/dev/null 2>&1 || log "vagrant destroy -f failed: check virsh list --all"
  fi
  for d in "${started_daemons[@]}"; do
    # Only the daemons this script started, by the pid they recorded.
    [ -f "/run/$d.pid" ] && kill "$(cat "/run/$d.pid")" 2>/dev/null || true
  done
  printf '\nvagrant/e2e: timings (WEFT_NODES=%s, driver %s)\n' "${WEFT_NODES:-2}" "${WEFT_LIBVIRT_DRIVER:-?}" >&2
  printf '  %s\n' "${timings[@]}" >&2
  printf '  %-34s %5ss\n' "total" $(($(date +%s) - t0)) >&2
  if [ "$rc" -eq 0 ]; then
    printf 'vagrant/e2e: PASSED\n' >&2
  else
    printf 'vagrant/e2e: FAILED (exit %s); consoles in vagrant/.lab/console-*.log\n' "$rc" >&2
  fi
}
trap cleanup EXIT
vagrant destroy -f >/dev/null 2>&1 || true
log "vagrant up (WEFT_NODES=${WEFT_NODES:-2})"
vagrant up --provider=libvirt || die "vagrant up failed (the output above says which machine and step)"
phase "vagrant up (incl. the check)"

log "the connectivity check again, from the control-plane VM"
vagrant ssh cp -c "sudo weft-lab-check" || die "the connectivity check failed"
vagrant ssh cp -c "sudo weftctl nodes" || die "weftctl nodes failed on the control-plane VM"
phase "check again"
