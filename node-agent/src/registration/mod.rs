//! Pod registration: every pod this node runs that has a Kubernetes name
//! (CNI ADD with `K8S_POD_NAME`, `weftctl pod add`) is registered with the
//! control plane (`RegisterPod`: namespace, name, labels, named ports,
//! address, this node, readiness), unregistered when it is deleted
//! (`UnregisterPod`), and the whole set re-sent (`SyncPods`) at start and
//! after every reconnection.
//!
//! Contract:
//! - Registration never stands in a pod's way: `pod_add` and `pod_del`
//!   finish locally and the calls to the control plane follow in the
//!   background ([`run`]), retried with backoff until they go through; the
//!   state of each pod and the failures are in [`RegistrationStatus`]
//!   (`weftctl status`, `weftctl pod list`).
//! - Files: `pod.rs` (the Pod document of a local pod), `plan.rs` (the
//!   sans-IO planner: which call next, backoff, status), `task.rs` (the
//!   loop that follows the pods and the connection and makes the calls).

mod plan;
mod pod;
mod task;

pub use plan::{Next, Outcome, Registrations, Work};
pub use pod::{documents, pod_object, Documents, CONTAINER_NAME};
pub use task::{run, PodSource, RegistrationStatus, RegistrationTiming};
