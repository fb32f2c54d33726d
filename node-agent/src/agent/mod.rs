//! The agent binary's wiring: its flags, and [`run()`], which puts the
//! parts together: the kernel edge ([`crate::kernel`]: the host TUN
//! `weft0`, the UDP socket's namespace), the engine ([`crate::engine`]),
//! the cluster client ([`crate::cluster`]) feeding the engine's peers,
//! pods ([`crate::pods`]), the local API ([`crate::api`]) and metrics.
//!
//! Files:
//! - [`flags`]: the command line, checked into an [`AgentConfig`] (exit 64
//!   with one line on bad input);
//! - `run`: [`run()`] (the whole agent until a signal) and [`leave`].

pub mod flags;
mod run;

pub use self::flags::{parse, AgentConfig, ConfigError, Invocation, LeaveConfig};
pub use self::run::{leave, run, RunError, HOST_IFNAME};
