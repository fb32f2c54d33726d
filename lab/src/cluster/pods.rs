//! Pods of the cluster by their Kubernetes names, added to and removed
//! from a running lab (`weftctl lab pod add NS/NAME --node n2`, `weftctl
//! lab pod del NS/NAME`), and the outside host.
//!
//! Contract: adding checks the identity first (Kubernetes' rules, as the
//! agent does), refuses a name the lab has already, makes a pod namespace
//! of the node (`nK-pJ`), has the agent add the pod, records it, and
//! returns once the agent has registered it with the control plane (so
//! `weftctl --lab get pods` shows it). Removing deletes it through the
//! agent, removes its namespace and record, and returns once the control
//! plane no longer has it. Every wait is bounded by the cluster's wait.

use std::time::{Duration, Instant};

use weft_proto::v1::GetObjectsRequest;

use super::up::{add_identified_pod, PodIdentity};
use super::{agent, Cluster, ADMIN_TIMEOUT};
use crate::{ClusterPod, HostRecord, LabError};

impl Cluster {
    /// The outside host `ext`, if the lab has one.
    pub fn external(&self) -> Option<&HostRecord> {
        self.lab.state().external.as_ref()
    }

    /// Adds the pod `identity` to node `node` (see the module docs).
    pub fn add_named_pod(
        &mut self,
        node: &str,
        identity: PodIdentity,
    ) -> Result<ClusterPod, LabError> {
        let cluster_name = format!("{}/{}", identity.namespace, identity.name);
        let problems = weft_agent_api::validate_pod_meta(
            Some(&identity.namespace),
            Some(&identity.name),
            &identity.labels,
            &identity.ports,
        );
        if !problems.is_empty() {
            return Err(LabError::InvalidArgument(format!(
                "pod {cluster_name}: {}",
                problems.join("; ")
            )));
        }
        if self.record.pod(&cluster_name).is_some() {
            return Err(LabError::InvalidArgument(format!(
                "lab '{}' has a pod {cluster_name} already; `weftctl lab pod del {cluster_name}` removes it",
                self.lab.name()
            )));
        }
        let n = self.node_record(node)?.clone();
        let step = |what: &str| format!("adding pod {cluster_name} to {node}: {what}");
        let ns = self
            .lab
            .add_pod(n.index)
            .map_err(|e| e.in_step(step("making its namespace")))?;
        let pod = match add_identified_pod(&n, &ns, &identity, self.wait) {
            Ok(pod) => pod,
            Err(e) => {
                if let Err(cleanup) = self.lab.remove_pod(&ns.ns) {
                    tracing::warn!(error = %cleanup, ns = %ns.ns, "could not remove the pod namespace again");
                }
                return Err(e.in_step(step("adding it through the agent")));
            }
        };
        self.update(|c| {
            c.pods.push(pod.clone());
            Ok(())
        })?;
        agent::wait_registered(&n, &pod.name, self.wait)
            .map_err(|e| e.in_step(step("waiting for the agent to register it")))?;
        Ok(pod)
    }

    /// Removes the pod `target` (`NAMESPACE/NAME` or `nK-pJ`): see the
    /// module docs. Returns it.
    pub fn remove_pod(&mut self, target: &str) -> Result<ClusterPod, LabError> {
        let pod = self.record.pod(target).cloned().ok_or_else(|| {
            let pods: Vec<String> = self
                .record
                .pods
                .iter()
                .map(|p| p.cluster_name().unwrap_or_else(|| p.name.clone()))
                .collect();
            LabError::InvalidArgument(format!(
                "lab '{}' has no pod {target:?} (it has {})",
                self.lab.name(),
                pods.join(", ")
            ))
        })?;
        let n = self.node_record(&pod.node)?.clone();
        let step = |what: &str| format!("removing pod {target} from {}: {what}", n.name);
        agent::client(&n.api_socket, self.wait)
            .and_then(|mut c| c.pod_del(&pod.name).map_err(|e| e.to_string()))
            .map_err(|reason| LabError::Refused {
                what: step("pod_del"),
                reason,
                log: n.log.clone(),
                log_tail: crate::process::log_tail(&n.log, 20),
            })?;
        self.lab
            .remove_pod(&pod.ns)
            .map_err(|e| e.in_step(step("removing its namespace")))?;
        self.update(|c| {
            c.pods.retain(|p| p.name != pod.name);
            Ok(())
        })?;
        if let (Some(ns), Some(name)) = (pod.namespace.clone(), pod.pod_name.clone()) {
            self.wait_unregistered(&ns, &name)
                .map_err(|e| e.in_step(step("waiting until the control plane no longer has it")))?;
        }
        Ok(pod)
    }

    /// Waits until the control plane has no pod `namespace`/`name`.
    fn wait_unregistered(&self, namespace: &str, name: &str) -> Result<(), LabError> {
        let deadline = Instant::now() + self.wait;
        loop {
            let (ns, n) = (namespace.to_string(), name.to_string());
            let found = self.admin(move |mut admin| async move {
                let request = GetObjectsRequest {
                    kind: "pods".into(),
                    namespace: ns,
                    name: n,
                    ..GetObjectsRequest::default()
                };
                match admin.get_objects(request).await {
                    Ok(r) => Ok(!r.into_inner().objects.is_empty()),
                    Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
                    Err(s) => Err(s),
                }
            });
            let last = match found {
                Ok(false) => return Ok(()),
                Ok(true) => format!("the control plane still has pod {namespace}/{name}"),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                let cp = &self.record.control_plane;
                return Err(LabError::WaitTimeout {
                    timeout: self.wait,
                    last,
                    log: cp.log.clone(),
                    log_tail: crate::process::log_tail(&cp.log, 20),
                });
            }
            std::thread::sleep(POLL.min(ADMIN_TIMEOUT));
        }
    }
}

/// How often the waits poll.
const POLL: Duration = Duration::from_millis(50);
