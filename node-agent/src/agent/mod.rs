//! The agent core: flags, keys, joining, the watch client, leases, and
//! wiring the data plane, pods and the local API together.
//!
//! STATUS: being written.
