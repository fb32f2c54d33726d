//! Builders shared by the service tests.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::conntrack::HashSeed;
use crate::service::{
    EndpointPort, EndpointSpec, Protocol, ServicePort, ServiceSpec, Translator, TranslatorConfig,
};

pub(super) use crate::testing::epoch as t0;

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(super) fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A ready endpoint at `addr` serving the port named `name` on `port`.
pub(super) fn ep(addr: &str, name: &str, proto: Protocol, port: u16) -> EndpointSpec {
    EndpointSpec {
        address: ip(addr),
        ports: vec![EndpointPort {
            name: name.into(),
            protocol: proto,
            port,
        }],
        ..EndpointSpec::default()
    }
}

/// `ns/name` with cluster IP `vip` and one port `name` `port`/`proto`.
pub(super) fn svc(ns: &str, name: &str, vip: &str, port: u16, proto: Protocol) -> ServiceSpec {
    ServiceSpec {
        namespace: ns.into(),
        name: name.into(),
        cluster_ips: vec![ip(vip)],
        ports: vec![ServicePort {
            name: "p".into(),
            protocol: proto,
            port,
            node_port: None,
        }],
        ..ServiceSpec::default()
    }
}

/// A translator with fixed seeds and the node's overlay addresses as
/// hairpin sources.
pub(super) fn translator(now: Instant) -> Translator {
    let cfg = TranslatorConfig {
        hairpin_v4: Some("10.244.1.1".parse().unwrap()),
        hairpin_v6: Some("fd00:244:1::1".parse().unwrap()),
        ..TranslatorConfig::default()
    };
    Translator::new(cfg, [7; 32], HashSeed(11, 13), now)
}
