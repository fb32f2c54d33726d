#!/usr/bin/env bash
# Every lab VM, first: the weft binaries (synced from the host's
# target/release to /weft/bin), the lab's SSH key (root on every lab VM
# reaches root on the others over the private network, nowhere else), the
# lab machines' names, and /etc/weft/lab.env for weft-lab-check.
#
# Environment (from the Vagrantfile): WEFT_LAB_NAME, WEFT_LAB_IP,
# WEFT_LAB_CP (cp=IP), WEFT_LAB_NODES ("n1=IP n2=IP ..."),
# WEFT_LAB_CONTROL_PLANE (IP:PORT), WEFT_LAB_PODS_PER_NODE.
set -euo pipefail
log() { printf 'weft-lab[%s]: %s\n' "$WEFT_LAB_NAME" "$*"; }
die() { log "$*" >&2; exit 1; }

changed=()
for b in weft-control-plane weft-agent weftctl weft-cni; do
  if [ -f "/weft/bin/$b" ] && ! cmp -s "/weft/bin/$b" "/usr/local/bin/$b"; then
    install -m 0755 "/weft/bin/$b" "/usr/local/bin/$b.new"
    mv -f "/usr/local/bin/$b.new" "/usr/local/bin/$b"
    changed+=("$b")
  fi
done
for b in weft-control-plane weft-agent weftctl; do
  [ -x "/usr/local/bin/$b" ] || die "/weft/bin/$b is missing: build on the host first (cargo build --release), then vagrant provision"
done
/usr/local/bin/weftctl --version >/dev/null ||
  die "weftctl does not run here (built for another system? the VMs need x86_64 Linux binaries built against glibc <= Debian 12's)"
if [ ${#changed[@]} -gt 0 ]; then
  log "installed ${changed[*]} ($(/usr/local/bin/weftctl --version)) in /usr/local/bin"
  # A new build replaces what runs (pods keep their interfaces across an
  # agent restart).
  for unit in weft-control-plane weft-agent; do
    if [[ " ${changed[*]} " == *" $unit "* ]] && systemctl is-active --quiet "$unit.service"; then
      log "restarting $unit (new binary)"
      systemctl restart "$unit.service"
    fi
  done
else
  log "the weft binaries in /usr/local/bin are up to date"
fi

# The lab key: root to root between the lab's machines.
[ -f /weft/ssh/id_ed25519 ] || die "/weft/ssh/id_ed25519 is missing (the Vagrantfile makes it on vagrant up)"
install -d -m 0700 /root/.ssh
install -m 0600 /weft/ssh/id_ed25519 /root/.ssh/weft-lab
pub="$(cat /weft/ssh/id_ed25519.pub)"
touch /root/.ssh/authorized_keys
chmod 0600 /root/.ssh/authorized_keys
grep -qxF "$pub" /root/.ssh/authorized_keys || echo "$pub" >>/root/.ssh/authorized_keys

names=""
hosts=""
for pair in $WEFT_LAB_CP $WEFT_LAB_NODES; do
  names="$names ${pair%%=*}"
  hosts="$hosts ${pair#*=}"
done
cat >/etc/ssh/ssh_config.d/weft-lab.conf <<CONF
# weft's Vagrant lab: the lab machines, by name or private address.
Host$names$hosts
  User root
  IdentityFile /root/.ssh/weft-lab
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  BatchMode yes
  ConnectTimeout 10
CONF
sed -i '/# weft-lab$/d' /etc/hosts
for pair in $WEFT_LAB_CP $WEFT_LAB_NODES; do
  printf '%s\t%s\t# weft-lab\n' "${pair#*=}" "${pair%%=*}" >>/etc/hosts
done

install -d -m 0755 /etc/weft
cat >/etc/weft/lab.env <<CONF
# weft's Vagrant lab (written by vagrant/provision/install.sh)
WEFT_LAB_NAME="$WEFT_LAB_NAME"
WEFT_LAB_IP="$WEFT_LAB_IP"
WEFT_LAB_CP="$WEFT_LAB_CP"
WEFT_LAB_CONTROL_PLANE="$WEFT_LAB_CONTROL_PLANE"
WEFT_LAB_NODES="$WEFT_LAB_NODES"
WEFT_LAB_PODS_PER_NODE="$WEFT_LAB_PODS_PER_NODE"
CONF
install -m 0755 /weft/provision/check.sh /usr/local/sbin/weft-lab-check
