//! Service table, endpoint choice and per-packet translation tests.

mod offload;
mod race;
mod support;
mod table;
mod translate;
