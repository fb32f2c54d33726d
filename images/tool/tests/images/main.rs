//! The tests of weft's images (`images/`), all needing root and run by
//! `scripts/test-all`:
//!
//! - [`microvm`]: a control plane in the test's own namespace and two
//!   microVM nodes booted from `images/node` with `images/node/run`, a pod
//!   each; pod-to-pod ping and a checksummed 10 MiB TCP transfer across the
//!   VMs through weft.
//! - [`oci_image`]: `images/agent/build`'s OCI layout, built twice (same
//!   bytes), imported into containerd, its agent run (`--version`) and its
//!   CNI installer run inside containers.
//! - [`cri`]: the kubelet's path: containerd's CRI (RunPodSandbox,
//!   PodSandboxStatus, StopPodSandbox, RemovePodSandbox) on two lab nodes,
//!   with weft-cni as its CNI.
//! - [`bad_input`]: every script's bad input ends with one clear line and a
//!   non-zero exit.
//!
//! They are one test binary so that its harness runs them side by side
//! (the microVMs mostly wait on emulated CPUs). Each prints its phases'
//! durations to stderr (`--nocapture`).

mod bad_input;
mod cri;
mod microvm;
mod oci_image;
mod support;
