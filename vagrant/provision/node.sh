#!/usr/bin/env bash
# A node VM: join it (a one-use token made on the control-plane VM with
# `weftctl token create`, fetched over the private network), weft-agent as a
# systemd service (deploy/systemd/weft-agent.service) with --control-plane,
# --token, --ca-hash, --name and --endpoint on the private network, then the
# pods (`weftctl pod add nK-pJ`). The same steps as the local lab's.
set -euo pipefail
log() { printf 'weft-lab[%s]: %s\n' "$WEFT_LAB_NAME" "$*"; }
die() { log "$*" >&2; exit 1; }

name="$WEFT_LAB_NAME"
wait_s="${WEFT_LAB_WAIT:-180}"
cp_ip="${WEFT_LAB_CP#*=}"

if [ -f /var/lib/weft/agent/node.json ] && [ -f /etc/weft/agent.env ]; then
  log "already joined (/var/lib/weft/agent/node.json)"
else
  log "asking the control plane ($cp_ip) for a join token"
  deadline=$((SECONDS + wait_s))
  until ssh "$cp_ip" weftctl token create --ttl 1h --usages 1 --description "vagrant-lab-$name" -o json \
    >/tmp/weft-token.json 2>/tmp/weft-token.err; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      die "no join token from the control-plane VM $cp_ip within ${wait_s}s: $(tail -1 /tmp/weft-token.err) (is it up? vagrant up cp)"
    fi
    sleep 3
  done
  token="$(sed -n 's/.*"token":"\([^"]*\)".*/\1/p' /tmp/weft-token.json)"
  ca_hash="$(sed -n 's/.*"ca_cert_hash":"\([^"]*\)".*/\1/p' /tmp/weft-token.json)"
  rm -f /tmp/weft-token.json /tmp/weft-token.err
  [ -n "$token" ] && [ -n "$ca_hash" ] || die "cannot read the token and CA hash from weftctl token create's output"
  umask 077
  cat >/etc/weft/agent.env <<CONF
# weft-agent's flags (weft-agent --help), written by vagrant/provision/node.sh
WEFT_CONTROL_PLANE=$WEFT_LAB_CONTROL_PLANE
WEFT_TOKEN=$token
WEFT_CA_HASH=$ca_hash
WEFT_NODE_NAME=$name
WEFT_ENDPOINT=$WEFT_LAB_IP:51820
CONF
  umask 022
fi

install -m 0644 /weft/systemd/weft-agent.service /etc/systemd/system/weft-agent.service
systemctl daemon-reload
systemctl enable weft-agent.service >/dev/null 2>&1
systemctl is-active --quiet weft-agent.service || systemctl restart weft-agent.service

# Joined once the agent knows its name and overlay address.
deadline=$((SECONDS + wait_s))
until weftctl check inventory >/tmp/weft-inventory 2>&1; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    journalctl -u weft-agent.service --no-pager -n 30 >&2 || true
    die "the agent did not join within ${wait_s}s: $(tail -1 /tmp/weft-inventory)"
  fi
  sleep 1
done

pods="$(weftctl pod list -o json)"
for j in $(seq 1 "${WEFT_LAB_PODS_PER_NODE:-2}"); do
  pod="$name-p$j"
  if grep -q "\"id\": \"$pod\"" <<<"$pods"; then
    log "pod $pod exists"
  else
    weftctl pod add "$pod"
  fi
done
weftctl status
