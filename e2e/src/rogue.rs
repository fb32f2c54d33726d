//! A rogue peer: a node that joined the cluster for real (token, key, CSR)
//! and then speaks WireGuard itself, from its own namespace on the lab's
//! underlay, with a boringtun tunnel driven by the test (through
//! [`weft_node_agent::wg`], the agent's own wrapper). It can send a real
//! node encrypted packets with any inner source address, to check that the
//! node only accepts the addresses the peer owns.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ipnet::{IpNet, Ipv4Net};
use rand::RngCore;
use weft_lab::{exec_in, Cluster, DEFAULT_COMMAND_TIMEOUT, WIREGUARD_PORT};
use weft_node_agent::kernel::netns::NetNs;
use weft_node_agent::wg::{Decap, Encap, NodeKey, Timer, Tunnel};
use weft_proto::v1::cluster_client::ClusterClient;
use weft_proto::v1::{CreateTokenRequest, JoinRequest};

use crate::{in_ns, udp_bind, E2eError, Result};

/// The bound of the join call.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the control plane gave the rogue node when it joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RogueJoin {
    /// Its node name.
    pub name: String,
    /// Its node id.
    pub node_id: u64,
    /// The pod CIDR it was leased: the only inner sources it may use.
    pub pod_cidr: IpNet,
    /// The underlay endpoint it announced (and sends from).
    pub endpoint: SocketAddr,
    /// Its WireGuard public key.
    pub public_key: [u8; 32],
}

/// A joined rogue node with its UDP socket, and a tunnel once
/// [`RoguePeer::connect`] made one.
#[derive(Debug)]
pub struct RoguePeer {
    /// What it joined as.
    pub joined: RogueJoin,
    identity: NodeKey,
    socket: UdpSocket,
    tunnel: Option<(Tunnel, SocketAddr)>,
}

impl RoguePeer {
    /// Adds namespace `weft-<lab>-n<k>` to `cluster`'s underlay (so the lab's
    /// teardown removes it) with the `k+1`-th underlay address, joins the
    /// cluster from it as node `name` with a fresh key, and binds the
    /// WireGuard port there. `k` must not be a node the cluster has or
    /// will add.
    pub fn join(cluster: &Cluster, name: &str, k: usize) -> Result<Self> {
        let state = cluster.lab().state();
        let ns = format!("{}n{k}", cluster.name().prefix());
        let addr: Ipv4Addr = state.underlay_cidr.hosts().nth(k).ok_or_else(|| {
            E2eError::failed(format!("underlay {} has no host {k}", state.underlay_cidr))
        })?;
        let net = Ipv4Net::new(addr, state.underlay_cidr.prefix_len())
            .map_err(|e| E2eError::failed(e.to_string()))?;
        add_host(
            &state.underlay_ns,
            &state.bridge,
            &ns,
            &format!("v-n{k}"),
            net,
        )?;
        let netns = PathBuf::from("/run/netns").join(&ns);

        let mut private = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut private);
        let identity = NodeKey::from_bytes(private);
        let public_key = identity.public_bytes();
        let endpoint = SocketAddr::new(IpAddr::V4(addr), WIREGUARD_PORT);

        let description = format!("e2e rogue {name}");
        let (token, ca_hash) = cluster.admin(move |mut admin| async move {
            let r = admin
                .create_token(CreateTokenRequest {
                    ttl_seconds: 600,
                    usages: 1,
                    description,
                })
                .await?
                .into_inner();
            Ok((r.token_string, r.ca_cert_hash))
        })?;
        let request = JoinRequest {
            token,
            node_name: name.to_string(),
            public_key: base64::engine::general_purpose::STANDARD.encode(public_key),
            endpoints: vec![endpoint.to_string()],
            labels: Default::default(),
            csr_pem: weft_client::generate_csr(name)
                .map_err(|e| E2eError::failed(format!("making a CSR: {e}")))?
                .1,
        };
        let server = cluster.control_plane().address.to_string();
        let node = in_ns(&netns, move || join(&server, &ca_hash, request))??;
        let pod_cidr = node.pod_cidr.parse().map_err(|e| {
            E2eError::failed(format!("the join gave pod CIDR {:?}: {e}", node.pod_cidr))
        })?;
        let socket = udp_bind(&netns, SocketAddr::new([0, 0, 0, 0].into(), WIREGUARD_PORT))?;
        Ok(Self {
            joined: RogueJoin {
                name: name.to_string(),
                node_id: node.id,
                pod_cidr,
                endpoint,
                public_key,
            },
            identity,
            socket,
            tunnel: None,
        })
    }

    /// Makes a WireGuard session with the node holding `peer_key` at
    /// `endpoint` (which must know this rogue as a peer already): sends a
    /// handshake initiation, answers what comes back, until the session is
    /// up or `timeout` passes.
    pub fn connect(
        &mut self,
        peer_key: [u8; 32],
        endpoint: SocketAddr,
        timeout: Duration,
    ) -> Result<()> {
        let mut tunnel = Tunnel::new(&self.identity, peer_key, None, 1)
            .map_err(|e| E2eError::failed(format!("making a tunnel: {e}")))?;
        let mut out = vec![0u8; 2048];
        let mut buf = vec![0u8; 2048];
        let n = tunnel
            .initiate(&mut out)
            .ok_or_else(|| E2eError::failed("boringtun made no handshake initiation"))?;
        self.send_to(&out[..n], endpoint)?;
        let deadline = Instant::now() + timeout;
        let mut last = String::from("nothing received");
        while tunnel.last_handshake().is_none() {
            if Instant::now() >= deadline {
                return Err(E2eError::Timeout {
                    what: format!("a WireGuard handshake with {endpoint}"),
                    timeout,
                    last,
                });
            }
            if let Timer::Send(n) = tunnel.update_timers(&mut out) {
                self.send_to(&out[..n], endpoint)?;
            }
            let Some((got, from)) = self.recv(&mut buf, Duration::from_millis(100))? else {
                continue;
            };
            match tunnel.decapsulate(from.ip(), &buf[..got], &mut out) {
                Decap::Reply(n) | Decap::Cookie(n) => {
                    self.send_to(&out[..n], from)?;
                    while let Some(n) = tunnel.next_queued(&mut out) {
                        self.send_to(&out[..n], from)?;
                    }
                }
                other => last = format!("{other:?} from {from}"),
            }
        }
        self.tunnel = Some((tunnel, endpoint));
        Ok(())
    }

    /// Encrypts the IP packet `packet` on the session [`RoguePeer::connect`]
    /// made, and sends it.
    pub fn send(&mut self, packet: &[u8]) -> Result<()> {
        let mut out = vec![0u8; packet.len() + 256];
        let (tunnel, endpoint) = self
            .tunnel
            .as_mut()
            .ok_or_else(|| E2eError::failed("the rogue peer has no session: connect first"))?;
        let endpoint = *endpoint;
        match tunnel.encapsulate(packet, &mut out) {
            Encap::Send(n) => self.send_to(&out[..n], endpoint),
            other => Err(E2eError::failed(format!(
                "encapsulating a {}-byte packet: {other:?}",
                packet.len()
            ))),
        }
    }

    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> Result<()> {
        self.socket
            .send_to(datagram, to)
            .map(|_| ())
            .map_err(|e| E2eError::io(format!("sending to {to}"), e))
    }

    fn recv(&self, buf: &mut [u8], wait: Duration) -> Result<Option<(usize, SocketAddr)>> {
        self.socket
            .set_read_timeout(Some(wait))
            .map_err(|e| E2eError::io("setting a read timeout", e))?;
        match self.socket.recv_from(buf) {
            Ok(got) => Ok(Some(got)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(E2eError::io("receiving on the rogue's socket", e)),
        }
    }
}

/// Joins at `server` (pinning `ca_hash`) with `request`, on a runtime of
/// its own; for a thread inside the rogue's namespace.
fn join(server: &str, ca_hash: &str, request: JoinRequest) -> Result<weft_proto::v1::Node> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| E2eError::io("starting an async runtime", e))?;
    runtime.block_on(async {
        let work = async {
            let (channel, _ca) = weft_client::connect_pinned(server, ca_hash)
                .await
                .map_err(|e| E2eError::failed(format!("connecting to {server}: {e}")))?;
            let response = ClusterClient::new(channel)
                .join(request)
                .await
                .map_err(|s| {
                    E2eError::failed(format!("Join refused ({:?}): {}", s.code(), s.message()))
                })?
                .into_inner();
            response
                .node
                .ok_or_else(|| E2eError::failed("the Join response has no node"))
        };
        tokio::time::timeout(JOIN_TIMEOUT, work)
            .await
            .map_err(|_| E2eError::failed(format!("Join: no answer within {JOIN_TIMEOUT:?}")))?
    })
}

/// Makes namespace `ns` with `eth0` (address `net`), a veth to port `port`
/// of `bridge` in the underlay namespace `ul`.
fn add_host(ul: &str, bridge: &str, ns: &str, port: &str, net: Ipv4Net) -> Result<()> {
    NetNs::create_named(ns)?;
    let address = net.to_string();
    let steps: [(&str, Vec<&str>); 5] = [
        (ns, vec!["link", "set", "lo", "up"]),
        (
            ul,
            vec![
                "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ],
        ),
        (ul, vec!["link", "set", port, "master", bridge, "up"]),
        (ns, vec!["addr", "add", &address, "dev", "eth0"]),
        (ns, vec!["link", "set", "eth0", "up"]),
    ];
    for (inside, args) in steps {
        let out = exec_in(inside, "ip", &args, DEFAULT_COMMAND_TIMEOUT)?;
        if !out.status.success() {
            return Err(E2eError::failed(format!(
                "`ip {}` in {inside}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(())
}
