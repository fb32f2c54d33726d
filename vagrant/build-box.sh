#!/usr/bin/env bash
# Builds the Vagrant box the lab expects, weft/debian12 (libvirt), from
# Debian's packages alone: no Vagrant Cloud, no HashiCorp download, no KVM,
# no loop device, no mount.
#
#   sudo vagrant/build-box.sh            # builds vagrant/.box/weft-debian12.box and `vagrant box add`s it
#   sudo vagrant/build-box.sh --no-add   # only builds the .box file
#
# How: debootstrap Debian 12 (bookworm) into a directory; configure it in a
# chroot (the vagrant user with Vagrant's insecure public key, passwordless
# sudo, openssh-server, ifupdown with DHCP on eth0, fresh SSH host keys and
# machine id on first boot); make an ext4 file system from that directory
# (`mkfs.ext4 -d`) inside a partitioned raw disk image (sfdisk on a plain
# file); make it bootable by writing GRUB's boot.img into the MBR and a
# core.img (built with the guest's own grub-mkimage) right after it; convert
# to qcow2; pack box.img + metadata.json + Vagrantfile as a libvirt box.
#
# Environment:
#   WEFT_BOX          box name to add (default weft/debian12)
#   WEFT_BOX_MIRROR   Debian mirror (default http://deb.debian.org/debian)
#   WEFT_BOX_KERNEL   kernel package (default linux-image-cloud-amd64: small,
#                     virtio drivers, boots fast under emulation; use
#                     linux-image-amd64 for every driver)
#   WEFT_BOX_DISK     virtual disk size in GiB (default 8)
#   WEFT_BOX_OUT      the .box file (default vagrant/.box/weft-debian12.box)
#   TMPDIR            where the root file system is built (default /var/tmp; ~1 GiB)
#
# Host packages: debootstrap, qemu-utils (qemu-img), e2fsprogs (mkfs.ext4
# >= 1.43 for -d), fdisk (sfdisk), vagrant (the insecure key, `box add`).
# It installs the missing ones with apt-get. Takes ~5-10 minutes, mostly
# debootstrap's downloads.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

box_name="${WEFT_BOX:-weft/debian12}"
mirror="${WEFT_BOX_MIRROR:-http://deb.debian.org/debian}"
kernel="${WEFT_BOX_KERNEL:-linux-image-cloud-amd64}"
disk_gib="${WEFT_BOX_DISK:-8}"
out="${WEFT_BOX_OUT:-$here/.box/weft-debian12.box}"
add=1
for arg in "$@"; do
  case "$arg" in
    --no-add) add=0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
    *) echo "build-box: unknown argument $arg (try --help)" >&2; exit 64 ;;
  esac
done

log() { printf 'build-box: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and chroot need it): sudo $0"
case "$disk_gib" in '' | *[!0-9]*) die "WEFT_BOX_DISK=$disk_gib: a whole number of GiB" ;; esac

start=$(date +%s)
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v sfdisk >/dev/null || need+=(fdisk)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi

# Vagrant's insecure public key: the box ships it so that the first
# `vagrant up` can log in (Vagrant then replaces it with a key of its own).
insecure_key=""
for k in /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub \
  /opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub \
  /usr/share/vagrant/keys/vagrant.pub; do
  [ -f "$k" ] && insecure_key="$k" && break
done
[ -n "$insecure_key" ] || die "Vagrant's insecure public key (keys/vagrant.pub of the vagrant package) not found; install vagrant first"

work="$(mktemp -d "${TMPDIR:-/var/tmp}/weft-box.XXXXXX")"
root="$work/root"
cleanup() {
  for m in proc sys dev/pts dev; do
    mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m" || true
  done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

packages=(
  "$kernel" grub-pc-bin systemd-sysv udev kmod initramfs-tools
  openssh-server sudo rsync ifupdown isc-dhcp-client iproute2 iputils-ping
  procps less ca-certificates dbus
)
log "debootstrap bookworm ($mirror) into $root"
debootstrap --variant=minbase --include="$(
  IFS=,
  echo "${packages[*]}"
)" bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -30 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
log "debootstrap done in $(($(date +%s) - start))s"

uuid="$(cat /proc/sys/kernel/random/uuid)"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }
mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"

log "configuring the guest"
echo weft-box >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tweft-box\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
printf 'UUID=%s\t/\text4\terrors=remount-ro\t0\t1\n' "$uuid" >"$root/etc/fstab"
cat >"$root/etc/network/interfaces" <<'EOF'
# The management interface: Vagrant reaches the machine over it (DHCP).
# Vagrant appends its private networks below.
auto lo
iface lo inet loopback

allow-hotplug eth0
iface eth0 inet dhcp
EOF
printf 'deb %s bookworm main\n' "$mirror" >"$root/etc/apt/sources.list"

# The vagrant user: password "vagrant", passwordless sudo, the insecure key.
in_root useradd --create-home --shell /bin/bash --user-group vagrant
echo 'vagrant:vagrant' | in_root chpasswd
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' >"$root/etc/sudoers.d/vagrant"
chmod 0440 "$root/etc/sudoers.d/vagrant"
install -d -m 0700 -o 1000 -g 1000 "$root/home/vagrant/.ssh"
install -m 0600 -o 1000 -g 1000 "$insecure_key" "$root/home/vagrant/.ssh/authorized_keys"
[ "$(stat -c %u "$root/home/vagrant")" = 1000 ] || die "the vagrant user did not get uid 1000"

# sshd: no DNS lookups (there is no DNS); host keys made on first boot, so
# that machines from this box do not share them.
printf 'UseDNS no\n' >"$root/etc/ssh/sshd_config.d/vagrant.conf"
rm -f "$root"/etc/ssh/ssh_host_*
mkdir -p "$root/etc/systemd/system/ssh.service.d"
cat >"$root/etc/systemd/system/ssh.service.d/host-keys.conf" <<'EOF'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOF
# A machine id per machine (systemd makes one on first boot).
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
# No network beyond the lab's: nothing that would try to reach a mirror.
in_root systemctl disable apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true
in_root systemctl enable ssh.service >/dev/null 2>&1 || true

# The boot loader: GRUB loads /vmlinuz and /initrd.img (symlinks the kernel
# package keeps up to date) from the root file system.
vmlinuz=/vmlinuz
initrd=/initrd.img
if [ ! -e "$root/vmlinuz" ]; then
  vmlinuz="/boot/$(basename "$(ls "$root"/boot/vmlinuz-* | sort -V | tail -1)")"
  initrd="/boot/$(basename "$(ls "$root"/boot/initrd.img-* | sort -V | tail -1)")"
fi
cp "$(ls "$root"/boot/vmlinuz-* | sort -V | tail -1)" "$work/vmlinuz"
mkdir -p "$root/boot/grub"
cat >"$root/boot/grub/grub.cfg" <<EOF
set timeout=0
linux $vmlinuz root=UUID=$uuid ro net.ifnames=0 biosdevname=0 console=tty0 console=ttyS0,115200n8
initrd $initrd
boot
EOF
in_root grub-mkimage -O i386-pc -o /tmp/core.img -p '(hd0,msdos1)/boot/grub' \
  biosdisk part_msdos ext2 linux normal configfile echo test
cp "$root/tmp/core.img" "$work/core.img"
cp "$root/usr/lib/grub/i386-pc/boot.img" "$work/boot.img"
rm -f "$root/tmp/core.img"
[ "$(stat -c %s "$work/core.img")" -lt $((2047 * 512)) ] || die "GRUB's core.img does not fit before the first partition"

in_root apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/root/.bash_history
umount "$root/proc" "$root/sys"

log "making the disk image (${disk_gib} GiB virtual)"
raw="$work/disk.raw"
truncate -s "${disk_gib}G" "$raw"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk --quiet "$raw"
fs_kib=$(((disk_gib * 1024 * 1024) - 1024))
mkfs.ext4 -q -F -U "$uuid" -L weft-root -d "$root" -E offset=$((2048 * 512)) "$raw" "${fs_kib}k"
# MBR boot code (the first 440 bytes: the partition table stays), then
# core.img from sector 1: boot.img loads sector 1, whose block list
# (written by grub-mkimage) covers the rest of core.img.
dd if="$work/boot.img" of="$raw" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$raw" bs=512 seek=1 conv=notrunc status=none

log "packing the box"
mkdir -p "$work/box"
qemu-img convert -f raw -O qcow2 "$raw" "$work/box/box.img"
rm -f "$raw"
printf '{"provider":"libvirt","format":"qcow2","virtual_size":%s}\n' "$disk_gib" >"$work/box/metadata.json"
cat >"$work/box/Vagrantfile" <<'EOF'
# weft/debian12: Debian 12 built by weft's vagrant/build-box.sh.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
    libvirt.nic_model_type = "virtio"
  end
end
EOF
mkdir -p "$(dirname "$out")"
# The kernel beside the box too: e2e.sh boots it under KVM to see whether
# KVM works here.
cp "$work/vmlinuz" "$(dirname "$out")/vmlinuz"
tar -C "$work/box" -czf "$out.tmp" metadata.json Vagrantfile box.img
mv "$out.tmp" "$out"
log "built $out ($(du -h "$out" | cut -f1)) in $(($(date +%s) - start))s"

if [ "$add" = 1 ]; then
  command -v vagrant >/dev/null || die "vagrant is not installed: cannot add the box (the file is $out)"
  vagrant box add --force --name "$box_name" "$out"
  # vagrant-libvirt copies a box's image into the storage pool once and
  # reuses it: drop an old copy, so that new machines get this build.
  if command -v virsh >/dev/null; then
    vol="$(printf '%s' "$box_name" | sed 's,/,-VAGRANTSLASH-,g')_vagrant_box_image_0_box.img"
    virsh -c qemu:///system vol-delete --pool default "$vol" >/dev/null 2>&1 &&
      log "removed the old copy $vol from libvirt's default pool" || true
  fi
  log "added box $box_name (libvirt) in $(($(date +%s) - start))s in all"
fi
