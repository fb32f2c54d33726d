//! Helpers of weft's image recipes (`images/`), behind the `weft-image`
//! command the recipes call.
//!
//! - [`oci`]: an OCI image layout (one gzip layer made from a directory
//!   tree, its config, manifest and index, in one tar) written byte for byte
//!   the same from the same inputs: no registry, no container daemon, no
//!   clock. `images/agent/build` and the tests' pause image use it.
//! - [`vm`]: the client side of a microVM node's command channel (the
//!   second serial port the node image's `/init` serves), which
//!   `images/node/run exec` and the tests use to run commands in a VM.
//!
//! Contract: nothing here panics on bad input (a file tree, a socket's
//! bytes); every failure is an [`oci::OciError`] or a [`vm::VmError`] that
//! says what and where. Every wait on a VM is bounded.

#![forbid(unsafe_code)]

pub mod oci;
pub mod vm;
