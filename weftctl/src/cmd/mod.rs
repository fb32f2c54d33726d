//! One module per `weftctl` command: its arguments (clap) and what it does.
//! Printing for people lives beside the other renderers in `render/`.

pub mod admin;
pub mod apply;
pub mod check;
pub mod get;
pub mod lab;
pub mod manifests;
pub mod on_lab;
pub mod pod;
pub mod status;
