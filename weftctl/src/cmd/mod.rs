//! One module per `weftctl` command: its arguments (clap) and what it does.
//! Printing for people lives beside the other renderers in `render/`.

pub(crate) mod admin;
pub(crate) mod apply;
pub(crate) mod check;
pub(crate) mod explain;
pub(crate) mod get;
pub(crate) mod lab;
pub(crate) mod manifests;
pub(crate) mod on_lab;
pub(crate) mod pod;
pub(crate) mod status;
pub(crate) mod trace;
