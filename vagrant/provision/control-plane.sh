#!/usr/bin/env bash
# The control-plane VM: weft-control-plane as a systemd service on the
# private network, then wait until the Admin API answers. The same steps as
# the local lab's (`weftctl lab up`): listen on and advertise the private
# address, state in /var/lib/weft/control-plane (CA, state.redb, admin.conf,
# which is weftctl's default --config here).
set -euo pipefail
log() { printf 'weft-lab[%s]: %s\n' "$WEFT_LAB_NAME" "$*"; }
die() { log "$*" >&2; exit 1; }

address="$WEFT_LAB_CONTROL_PLANE"
cat >/etc/weft/control-plane.env.new <<CONF
WEFT_LISTEN=$address
WEFT_ADVERTISE_ADDRESS=$address
WEFT_STATE_DIR=/var/lib/weft/control-plane
CONF
changed=0
cmp -s /etc/weft/control-plane.env.new /etc/weft/control-plane.env || changed=1
mv -f /etc/weft/control-plane.env.new /etc/weft/control-plane.env
cmp -s /weft/provision/weft-control-plane.service /etc/systemd/system/weft-control-plane.service || changed=1
install -m 0644 /weft/provision/weft-control-plane.service /etc/systemd/system/weft-control-plane.service
systemctl daemon-reload
systemctl enable weft-control-plane.service >/dev/null 2>&1
if [ "$changed" = 1 ] || ! systemctl is-active --quiet weft-control-plane.service; then
  log "starting weft-control-plane on $address"
  systemctl restart weft-control-plane.service
fi

# Wait until an Admin call over TLS works (bounded: software emulation is slow).
deadline=$((SECONDS + ${WEFT_LAB_WAIT:-180}))
until weftctl cluster info >/tmp/weft-cluster-info 2>&1; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    journalctl -u weft-control-plane.service --no-pager -n 30 >&2 || true
    die "the control plane did not answer within ${WEFT_LAB_WAIT:-180}s: $(tail -1 /tmp/weft-cluster-info)"
  fi
  sleep 1
done
log "the control plane answers:"
cat /tmp/weft-cluster-info
