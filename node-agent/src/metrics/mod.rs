//! The agent's Prometheus endpoint (`--metrics-listen IP:PORT`).
//!
//! Contract:
//! - `GET /metrics` answers with OpenMetrics text ([`CONTENT_TYPE`]); any
//!   other path is a 404. Nothing is kept between scrapes: each one asks
//!   for the same [`StatusResult`](weft_agent_api::StatusResult)
//!   the local API's `status` answers ([`crate::api::status`]) and
//!   [`render`]s it, so `weftctl status` and the metrics never disagree.
//! - [`render`] is pure. Counters carry `_total`; every drop reason the
//!   data plane lists is a sample, zeros included, so rates work from the
//!   first scrape; a peer that never handshook has no handshake sample.
//!   If the data plane did not answer, only the node's own metrics are
//!   served, with `weft_dataplane_up 0`.
//! - [`bind`] binds at start-up (the agent refuses to start if it cannot);
//!   [`serve_on`] serves until its shutdown future resolves, then lets
//!   scrapes in flight finish.

mod dns;
mod render;
mod serve;

pub use render::{render, CONTENT_TYPE};
pub use serve::{bind, serve_on, MetricsError};
