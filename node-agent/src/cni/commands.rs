//! What each CNI command does, over two small seams: [`Agent`] (the
//! agent's local API) and [`System`] (the namespaces and interfaces of this
//! host). The shell (`shell.rs`) implements them for real; the unit tests
//! below with fakes.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use weft_agent_api::{AgentApiError, ErrorCode, Pod, PodAddRequest, StatusResult};

use super::config::NetConf;
use super::env::{Attachment, PodMeta};
use super::error::{agent_error, code, AgentCall, CniError};
use super::result::{add_result, expect_from_prev, Attached, PrevResult};
use crate::kernel::netlink::Route;
use crate::kernel::tun::PortState;
use crate::pods::AddressPool;

/// How long one exchange with the agent may take in ADD, CHECK, DEL, GC.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// How long STATUS waits for the agent (runtimes call it often).
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// The agent's local API, as weft-cni uses it. Implementations connect on
/// first use, so a missing agent shows as the first call's error.
pub trait Agent {
    /// The node and data plane.
    fn status(&mut self) -> Result<StatusResult, AgentApiError>;
    /// One pod; a `not_found` API error if there is none.
    fn pod_get(&mut self, id: &str) -> Result<Pod, AgentApiError>;
    /// Adds a pod.
    fn pod_add(&mut self, request: PodAddRequest) -> Result<Pod, AgentApiError>;
    /// Deletes a pod (idempotent).
    fn pod_del(&mut self, id: &str) -> Result<Option<Pod>, AgentApiError>;
    /// Every pod.
    fn pod_list(&mut self) -> Result<Vec<Pod>, AgentApiError>;
}

/// Why `CNI_NETNS` cannot hold a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsProblem {
    /// Nothing is at the path.
    Missing,
    /// Something is, but not a network namespace (what it is).
    NotANetns(String),
    /// It is weft-cni's own namespace (the host's).
    IsOurs,
    /// It could not be opened (why).
    Unreadable(String),
}

/// This host's namespaces and interfaces, and the way to the agent.
pub trait System {
    /// A client of the agent at `socket`, each exchange within `timeout`.
    fn agent(&mut self, socket: &Path, timeout: Duration) -> Box<dyn Agent + '_>;
    /// Whether `path` is a network namespace a pod may live in.
    fn check_netns(&mut self, path: &str) -> Result<(), NetnsProblem>;
    /// The state of `ifname` in the namespace at `netns`; `None` if there is
    /// no such interface.
    fn port_state(&mut self, netns: &str, ifname: &str) -> Result<Option<PortState>, String>;
}

fn netns_error(path: &str, problem: NetnsProblem) -> CniError {
    match problem {
        NetnsProblem::Missing => CniError::new(
            code::INVALID_ENV,
            format!("CNI_NETNS {path} does not exist"),
        ),
        NetnsProblem::NotANetns(found) => CniError::new(
            code::INVALID_ENV,
            format!("CNI_NETNS {path} is not a network namespace ({found})"),
        ),
        NetnsProblem::IsOurs => CniError::new(
            code::INVALID_ENV,
            format!(
                "CNI_NETNS {path} is weft-cni's own (the host's) network namespace; a pod needs one of its own"
            ),
        ),
        NetnsProblem::Unreadable(why) => CniError::new(
            code::IO_FAILURE,
            format!("opening CNI_NETNS {path}: {why}"),
        ),
    }
}

/// ADD: a TUN for the attachment in `netns`, and its result.
pub fn add(
    sys: &mut dyn System,
    conf: &NetConf,
    attachment: &Attachment,
    netns: &str,
    meta: &PodMeta,
    prev_result: Option<&Value>,
) -> Result<Value, CniError> {
    sys.check_netns(netns)
        .map_err(|problem| netns_error(netns, problem))?;
    let id = attachment.pod_id();
    let mut agent = sys.agent(&conf.agent_socket, CALL_TIMEOUT);
    let failed = |e: AgentApiError| agent_error(AgentCall::Add, &e);
    match agent.pod_get(&id) {
        Ok(existing) => {
            return Err(CniError::new(
                code::ATTACHMENT_EXISTS,
                format!(
                    "container {} already has interface {} on this network ({} in {})",
                    attachment.container_id, attachment.ifname, existing.address, existing.netns
                ),
            )
            .with_details("a runtime must DEL an attachment before adding it again"))
        }
        Err(e) if e.code() == Some(ErrorCode::NotFound) => {}
        Err(e) => return Err(failed(e)),
    }
    // Before anything is made, so that a failure leaves nothing behind.
    let node = agent.status().map_err(failed)?.node;
    let pod = agent
        .pod_add(PodAddRequest {
            id,
            netns: Some(netns.into()),
            create_netns: false,
            ifname: Some(attachment.ifname.clone()),
            pod_namespace: meta.namespace.clone(),
            pod_name: meta.name.clone(),
            ..PodAddRequest::default()
        })
        .map_err(failed)?;
    let attached = Attached {
        address: pod.address,
        ifname: &attachment.ifname,
        netns,
        pod_namespace: meta.namespace.as_deref(),
    };
    Ok(add_result(
        conf.version,
        &attached,
        &node,
        node.mtu,
        prev_result,
    ))
}

/// DEL: best effort, always a success; what went wrong is returned as
/// log lines (the agent drops pods whose namespace is gone when it
/// restarts, and GC catches the rest).
pub fn del(sys: &mut dyn System, conf: &NetConf, attachment: &Attachment) -> Vec<String> {
    let id = attachment.pod_id();
    let mut agent = sys.agent(&conf.agent_socket, CALL_TIMEOUT);
    match agent.pod_del(&id) {
        Ok(_) => Vec::new(),
        Err(e) => vec![format!(
            "DEL {id}: {e}; reported as done (GC, or the agent's restart, removes what is left)"
        )],
    }
}

/// CHECK: the agent's record, `prevResult` and the interface agree.
pub fn check(
    sys: &mut dyn System,
    conf: &NetConf,
    attachment: &Attachment,
    netns: &str,
    prev_result: &Value,
) -> Result<(), CniError> {
    let prev = PrevResult::parse(prev_result)?;
    sys.check_netns(netns)
        .map_err(|problem| netns_error(netns, problem))?;
    let id = attachment.pod_id();
    let ifname = attachment.ifname.as_str();
    let fail = |msg: String| CniError::new(code::CHECK_FAILED, msg);
    let pod = {
        let mut agent = sys.agent(&conf.agent_socket, CALL_TIMEOUT);
        match agent.pod_get(&id) {
            Ok(pod) => pod,
            Err(e) if e.code() == Some(ErrorCode::NotFound) => {
                return Err(fail(format!("weft-agent has no attachment {id}")))
            }
            Err(e) => return Err(agent_error(AgentCall::Check, &e)),
        }
    };
    if pod.netns != netns || pod.ifname != ifname {
        return Err(fail(format!(
            "weft-agent has attachment {id} as {} in {}, not {ifname} in {netns}",
            pod.ifname, pod.netns
        )));
    }
    let want = expect_from_prev(&prev, ifname, netns, pod.address)?;
    let state = sys
        .port_state(netns, ifname)
        .map_err(|why| fail(format!("inspecting {ifname} in {netns}: {why}")))?
        .ok_or_else(|| fail(format!("interface {ifname} is missing from {netns}")))?;
    if !state.up {
        return Err(fail(format!("interface {ifname} in {netns} is down")));
    }
    if !state.addresses.contains(&want.address) {
        return Err(fail(format!(
            "interface {ifname} in {netns} has lost its address {}",
            want.address
        )));
    }
    for dst in &want.routes {
        if !state.routes.contains(&Route::dev(*dst)) {
            return Err(fail(format!(
                "the route {dst} out of {ifname} in {netns} is missing"
            )));
        }
    }
    if !pod.attached {
        return Err(fail(format!(
            "attachment {id} is not attached to weft-agent's data plane, so its traffic goes nowhere (see `weftctl status`)"
        )));
    }
    Ok(())
}

/// STATUS: can weft-cni serve an ADD now?
pub fn status(sys: &mut dyn System, conf: &NetConf) -> Result<(), CniError> {
    let status = {
        let mut agent = sys.agent(&conf.agent_socket, STATUS_TIMEOUT);
        agent
            .status()
            .map_err(|e| agent_error(AgentCall::Status, &e))?
    };
    let node = &status.node;
    let (Ok(cidr), Ok(node_address)) = (
        node.pod_cidr.parse::<ipnet::IpNet>(),
        node.node_address.parse::<std::net::IpAddr>(),
    ) else {
        return Err(CniError::new(
            code::NOT_AVAILABLE,
            "weft-agent has not joined yet: the node has no pod CIDR",
        ));
    };
    if status.dataplane.is_none() {
        let why = status
            .dataplane_error
            .as_deref()
            .unwrap_or("it does not answer");
        return Err(CniError::new(
            code::LIMITED_CONNECTIVITY,
            format!("weft-agent's data plane is not running: {why}"),
        )
        .with_details("pods on this node have no connectivity; see the agent's log"));
    }
    if let Ok(pool) = AddressPool::new(cidr, node_address) {
        let capacity = pool.capacity();
        if u128::try_from(status.pods).unwrap_or(u128::MAX) >= capacity {
            return Err(CniError::new(
                code::NOT_AVAILABLE,
                format!(
                    "no free pod address: all {capacity} addresses of node CIDR {cidr} are in use"
                ),
            ));
        }
    }
    Ok(())
}

/// Whether a pod is one weft-cni made: its id is `<container-id>/<ifname>`
/// with its own interface name, in a namespace the agent did not create.
/// Pods of `weftctl pod add` never are (their names have no `/`).
pub fn cni_attachment(pod: &Pod) -> Option<Attachment> {
    Attachment::from_pod_id(&pod.id).filter(|a| a.ifname == pod.ifname && !pod.created_netns)
}

/// GC: deletes every weft-cni attachment not in `valid`; the log lines say
/// what went.
pub fn gc(
    sys: &mut dyn System,
    conf: &NetConf,
    valid: &HashSet<Attachment>,
) -> Result<Vec<String>, CniError> {
    let mut agent = sys.agent(&conf.agent_socket, CALL_TIMEOUT);
    let pods = agent
        .pod_list()
        .map_err(|e| agent_error(AgentCall::Gc, &e))?;
    let stale: Vec<(Pod, Attachment)> = pods
        .into_iter()
        .filter_map(|p| cni_attachment(&p).map(|a| (p, a)))
        .filter(|(_, a)| !valid.contains(a))
        .collect();
    let (mut log, mut failures) = (Vec::new(), Vec::new());
    for (pod, _) in &stale {
        match agent.pod_del(&pod.id) {
            Ok(_) => log.push(format!(
                "GC: deleted stale attachment {} ({} in {})",
                pod.id, pod.address, pod.netns
            )),
            Err(e) => failures.push(format!("{}: {e}", pod.id)),
        }
    }
    if failures.is_empty() {
        Ok(log)
    } else {
        Err(CniError::new(
            code::GC_INCOMPLETE,
            format!(
                "GC could not delete {} of {} stale attachments",
                failures.len(),
                stale.len()
            ),
        )
        .with_details(failures.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use weft_agent_api::DEFAULT_SOCKET;

    use super::super::fake::FakeHost;
    use super::*;
    use crate::cni::version::CniVersion;

    fn conf(version: CniVersion) -> NetConf {
        NetConf {
            version,
            name: "weft".into(),
            agent_socket: DEFAULT_SOCKET.into(),
        }
    }

    fn att(cid: &str) -> Attachment {
        Attachment {
            container_id: cid.into(),
            ifname: "eth0".into(),
        }
    }

    fn meta() -> PodMeta {
        PodMeta {
            namespace: Some("default".into()),
            name: Some("web".into()),
        }
    }

    fn add_ok(host: &mut FakeHost, cid: &str) -> Value {
        add(
            host,
            &conf(CniVersion::V1_1_0),
            &att(cid),
            "/run/netns/p1",
            &meta(),
            None,
        )
        .unwrap()
    }

    #[test]
    fn add_then_a_second_add_is_refused() {
        let mut host = FakeHost::new();
        let r = add_ok(&mut host, "c1");
        assert_eq!(r["ips"][0]["address"], "10.244.3.2/32");
        assert_eq!(r["dns"]["search"][0], "default.svc.cluster.local");
        assert_eq!(host.calls, ["pod_get c1/eth0", "status", "pod_add c1/eth0"]);
        let pod = &host.pods["c1/eth0"];
        assert_eq!(pod.pod_namespace.as_deref(), Some("default"));
        assert_eq!(pod.pod_name.as_deref(), Some("web"));

        let e = add(
            &mut host,
            &conf(CniVersion::V1_1_0),
            &att("c1"),
            "/run/netns/p1",
            &meta(),
            None,
        )
        .unwrap_err();
        assert_eq!(e.code, code::ATTACHMENT_EXISTS);
        assert_eq!(
            e.msg,
            "container c1 already has interface eth0 on this network (10.244.3.2 in /run/netns/p1)"
        );
    }

    #[test]
    fn add_errors() {
        let mut host = FakeHost::new();
        let c = conf(CniVersion::V1_0_0);
        let run = |host: &mut FakeHost, netns: &str| {
            add(host, &c, &att("c1"), netns, &PodMeta::default(), None).unwrap_err()
        };
        let e = run(&mut host, "/run/netns/gone");
        assert_eq!(
            (e.code, e.msg.as_str()),
            (4, "CNI_NETNS /run/netns/gone does not exist")
        );
        let e = run(&mut host, "/etc/hosts");
        assert_eq!(e.code, 4);
        assert_eq!(
            e.msg,
            "CNI_NETNS /etc/hosts is not a network namespace (a regular file)"
        );
        let e = run(&mut host, "/proc/1/ns/net");
        assert_eq!(e.code, 4);
        assert!(e
            .msg
            .contains("weft-cni's own (the host's) network namespace"));
        assert!(host.calls.is_empty(), "the agent is not asked");

        host.agent_down = true;
        let e = run(&mut host, "/run/netns/p1");
        assert_eq!(e.code, code::TRY_AGAIN_LATER);
        assert_eq!(
            e.msg,
            "weft-agent is not running (no socket at /run/weft/agent.sock)"
        );

        host.agent_down = false;
        host.capacity = 0;
        let e = run(&mut host, "/run/netns/p1");
        assert_eq!(e.code, code::POOL_EXHAUSTED);
        assert!(e.msg.starts_with("weft-agent: no free address"));
    }

    #[test]
    fn add_after_a_previous_plugin_extends_its_result() {
        let mut host = FakeHost::new();
        let prev = json!({"cniVersion":"1.0.0","interfaces":[{"name":"lo"}],"ips":[]});
        let r = add(
            &mut host,
            &conf(CniVersion::V1_0_0),
            &att("c1"),
            "/run/netns/p1",
            &PodMeta::default(),
            Some(&prev),
        )
        .unwrap();
        assert_eq!(r["interfaces"][1]["name"], "eth0");
        assert_eq!(r["ips"][0]["interface"], 1);
    }

    #[test]
    fn del_is_idempotent_and_never_fails() {
        let mut host = FakeHost::new();
        add_ok(&mut host, "c1");
        let c = conf(CniVersion::V1_1_0);
        assert!(del(&mut host, &c, &att("c1")).is_empty());
        assert!(host.pods.is_empty());
        assert!(del(&mut host, &c, &att("c1")).is_empty(), "again");
        host.agent_down = true;
        let log = del(&mut host, &c, &att("c1"));
        assert_eq!(log.len(), 1);
        assert!(
            log[0].starts_with("DEL c1/eth0: is weft-agent running?"),
            "{}",
            log[0]
        );
    }

    #[test]
    fn check_compares_record_prev_result_and_interface() {
        let mut host = FakeHost::new();
        let prev = add_ok(&mut host, "c1");
        let c = conf(CniVersion::V1_1_0);
        let run =
            |host: &mut FakeHost, prev: &Value| check(host, &c, &att("c1"), "/run/netns/p1", prev);
        run(&mut host, &prev).unwrap();

        let key = ("/run/netns/p1".to_string(), "eth0".to_string());
        let state = host.ports[&key].clone();
        host.ports.get_mut(&key).unwrap().up = false;
        let e = run(&mut host, &prev).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (105, "interface eth0 in /run/netns/p1 is down")
        );
        host.ports.get_mut(&key).unwrap().up = true;
        host.ports.get_mut(&key).unwrap().addresses.clear();
        let e = run(&mut host, &prev).unwrap_err();
        assert_eq!(
            e.msg,
            "interface eth0 in /run/netns/p1 has lost its address 10.244.3.2/32"
        );
        host.ports.insert(key.clone(), state.clone());
        host.ports.get_mut(&key).unwrap().routes.clear();
        let e = run(&mut host, &prev).unwrap_err();
        assert_eq!(
            e.msg,
            "the route 0.0.0.0/0 out of eth0 in /run/netns/p1 is missing"
        );
        host.ports.remove(&key);
        let e = run(&mut host, &prev).unwrap_err();
        assert_eq!(e.msg, "interface eth0 is missing from /run/netns/p1");
        host.ports.insert(key, state);

        host.pods.get_mut("c1/eth0").unwrap().attached = false;
        let e = run(&mut host, &prev).unwrap_err();
        assert!(e.msg.contains("is not attached to weft-agent's data plane"));
        host.pods.get_mut("c1/eth0").unwrap().attached = true;

        let mut other = prev.clone();
        other["ips"][0]["address"] = json!("10.244.3.7/32");
        let e = run(&mut host, &other).unwrap_err();
        assert_eq!(e.code, 105);
        assert!(e
            .msg
            .starts_with("prevResult gives eth0 the address 10.244.3.7/32"));

        host.pods.clear();
        let e = run(&mut host, &prev).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (105, "weft-agent has no attachment c1/eth0")
        );
        host.agent_down = true;
        let e = run(&mut host, &prev).unwrap_err();
        assert_eq!(e.code, code::TRY_AGAIN_LATER);
        let e = run(&mut host, &json!({"ips": 3})).unwrap_err();
        assert_eq!(e.code, 6);
    }

    #[test]
    fn status_says_why_weft_is_not_ready() {
        let mut host = FakeHost::new();
        let c = conf(CniVersion::V1_1_0);
        status(&mut host, &c).unwrap();
        host.dataplane_down = true;
        let e = status(&mut host, &c).unwrap_err();
        assert_eq!(e.code, code::LIMITED_CONNECTIVITY);
        assert_eq!(
            e.msg,
            "weft-agent's data plane is not running: the data plane is not running"
        );
        host.dataplane_down = false;
        for i in 0..253 {
            host.pods.insert(
                format!("p{i}"),
                FakeHost::pod(&format!("p{i}"), "10.244.3.2", "/x", "eth0"),
            );
        }
        let e = status(&mut host, &c).unwrap_err();
        assert_eq!(e.code, code::NOT_AVAILABLE);
        assert_eq!(
            e.msg,
            "no free pod address: all 253 addresses of node CIDR 10.244.3.0/24 are in use"
        );
        host.agent_down = true;
        let e = status(&mut host, &c).unwrap_err();
        assert_eq!(e.code, code::NOT_AVAILABLE);
        assert_eq!(
            e.msg,
            "weft-agent is not running (no socket at /run/weft/agent.sock)"
        );
    }

    #[test]
    fn gc_deletes_only_stale_cni_attachments() {
        let mut host = FakeHost::new();
        add_ok(&mut host, "keep");
        add_ok(&mut host, "leak");
        host.pods.insert(
            "web".into(),
            FakeHost::pod("web", "10.244.3.9", "/run/netns/web", "eth0"),
        );
        // A weftctl pod whose name merely looks like an attachment.
        let mut lookalike = FakeHost::pod("team/eth0", "10.244.3.10", "/run/netns/t", "eth0");
        lookalike.created_netns = true;
        host.pods.insert(lookalike.id.clone(), lookalike);
        let valid = [att("keep")].into_iter().collect();
        let log = gc(&mut host, &conf(CniVersion::V1_1_0), &valid).unwrap();
        assert_eq!(
            log,
            ["GC: deleted stale attachment leak/eth0 (10.244.3.3 in /run/netns/p1)"]
        );
        let left: Vec<&str> = host.pods.keys().map(String::as_str).collect();
        assert_eq!(left, ["keep/eth0", "team/eth0", "web"]);

        add_ok(&mut host, "stuck");
        host.del_fails.insert("stuck/eth0".into());
        add_ok(&mut host, "gone");
        let e = gc(&mut host, &conf(CniVersion::V1_1_0), &valid).unwrap_err();
        assert_eq!(e.code, code::GC_INCOMPLETE);
        assert_eq!(e.msg, "GC could not delete 1 of 2 stale attachments");
        assert_eq!(
            e.details.as_deref(),
            Some("stuck/eth0: deleting the TUN failed")
        );
        assert!(
            !host.pods.contains_key("gone/eth0"),
            "GC went on after a failure"
        );

        host.agent_down = true;
        let e = gc(&mut host, &conf(CniVersion::V1_1_0), &valid).unwrap_err();
        assert_eq!(e.code, code::TRY_AGAIN_LATER);
    }
}
