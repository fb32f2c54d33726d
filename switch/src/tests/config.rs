use super::*;
use crate::testing::pkt;

#[test]
fn conflicting_config_is_refused_and_leaves_the_switch_unchanged() {
    let mut sw = configured();
    let before: Vec<_> = sw.routes().collect();
    let err = sw.set_pod_port(PortId(5), &[ip(HOST4)]).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Conflict {
            existing: Route::Host,
            wanted: Route::Port(PortId(5)),
            ..
        }
    ));
    assert!(err.to_string().contains("10.244.1.1/32"), "{err}");
    let err = sw.set_pod_port(PortId(5), &[ip(POD_A4)]).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Conflict {
            existing: Route::Port(A),
            ..
        }
    ));
    let err = sw.set_peer(PeerId(5), &[net("10.244.2.0/24")]).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Conflict {
            existing: Route::Peer(P1),
            ..
        }
    ));
    let err = sw.set_peer(PeerId(5), &[net("10.244.1.0/24")]).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Conflict {
            existing: Route::Unassigned,
            ..
        }
    ));
    let err = sw.set_host_addresses(&[ip(POD_B4)]).unwrap_err();
    assert!(matches!(err, ConfigError::Conflict { .. }));
    assert_eq!(sw.routes().collect::<Vec<_>>(), before);
    // PeerId 5 was not half-added.
    let mut p = pkt("10.9.9.9", POD_A4).udp(1, 2).build();
    assert_eq!(
        sw.from_peer(PeerId(5), &mut p, &mut [], t0()),
        Action::Drop(DropReason::UnknownPeer)
    );
}

#[test]
fn invalid_pod_ports_are_refused() {
    let mut sw = configured();
    assert_eq!(
        sw.set_pod_port(PortId(5), &[]),
        Err(ConfigError::NoAddress(PortId(5)))
    );
    assert_eq!(
        sw.set_pod_port(PortId(5), &[ip("10.244.1.8"), ip("10.244.1.9")]),
        Err(ConfigError::TwoAddressesOfOneFamily(PortId(5)))
    );
    assert_eq!(
        sw.set_pod_port(PortId(5), &[ip("127.0.0.1")]),
        Err(ConfigError::UnusableAddress(ip("127.0.0.1")))
    );
    assert_eq!(
        sw.set_pod_port(PortId(MAX_ID + 1), &[ip("10.244.1.8")]),
        Err(ConfigError::IdOutOfRange(MAX_ID + 1))
    );
    assert_eq!(
        sw.set_peer(PeerId(u32::MAX), &[]),
        Err(ConfigError::IdOutOfRange(u32::MAX))
    );
    assert_eq!(
        sw.set_host_addresses(&[ip("fe80::1")]),
        Err(ConfigError::UnusableAddress(ip("fe80::1")))
    );
    sw.set_pod_port(PortId(MAX_ID), &[ip("10.244.1.8")])
        .unwrap();
}

#[test]
fn set_peer_replaces_prefixes_and_set_pod_port_replaces_addresses() {
    let mut h = Harness::new();
    h.sw.set_peer(P1, &[net("10.244.20.0/24")]).unwrap();
    assert_eq!(h.sw.route(ip(PEER1_POD4)), None);
    assert_eq!(h.sw.route(ip(PEER1_POD6)), None);
    assert_eq!(h.sw.route(ip("10.244.20.1")), Some(Route::Peer(P1)));
    assert_eq!(
        h.peer(P1, pkt(PEER1_POD4, POD_A4).udp(1, 2).build()),
        Action::Drop(DropReason::SpoofedPeerSource)
    );
    assert_eq!(
        h.peer(P1, pkt("10.244.20.1", POD_A4).udp(1, 2).build()),
        Action::ToPort(A)
    );

    h.sw.set_pod_port(B, &[ip("10.244.1.30")]).unwrap();
    assert_eq!(h.sw.route(ip(POD_B4)), Some(Route::Unassigned));
    assert_eq!(h.sw.route(ip(POD_B6)), Some(Route::Unassigned));
    assert_eq!(
        h.pod(B, pkt(POD_B4, POD_A4).udp(1, 2).build()),
        Action::Drop(DropReason::SpoofedPodSource)
    );
    assert_eq!(
        h.pod(B, pkt("10.244.1.30", POD_A4).udp(1, 2).build()),
        Action::ToPort(A)
    );
    // A peer with no prefixes is known, but can send nothing.
    h.sw.set_peer(P2, &[]).unwrap();
    assert_eq!(
        h.peer(P2, pkt(PEER2_POD4, POD_A4).udp(1, 2).build()),
        Action::Drop(DropReason::SpoofedPeerSource)
    );
}

#[test]
fn unconfigured_switch_drops_everything() {
    let mut h = Harness::with(Switch::new());
    let p = pkt(POD_A4, POD_B4).udp(1, 2).build();
    assert_eq!(h.pod(A, p.clone()), Action::Drop(DropReason::UnknownPort));
    assert_eq!(h.peer(P1, p.clone()), Action::Drop(DropReason::UnknownPeer));
    assert_eq!(h.host(p), Action::Drop(DropReason::SpoofedHostSource));
    assert_eq!(h.sw.routes().count(), 0);
}

#[test]
fn route_table_lists_everything() {
    let sw = configured();
    let routes: Vec<_> = sw.routes().collect();
    assert!(routes.contains(&(net("10.244.1.1/32"), Route::Host)));
    assert!(routes.contains(&(net("10.244.1.0/24"), Route::Unassigned)));
    assert!(routes.contains(&(net("fd00:244:1::2/128"), Route::Port(A))));
    assert!(routes.contains(&(net("fd00:244:3::/64"), Route::Peer(P2))));
    // 2 host + 2 CIDR + 4 pod + 4 peer prefixes.
    assert_eq!(routes.len(), 12);
}
