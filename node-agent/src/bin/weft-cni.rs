//! `weft-cni`: the CNI plugin of weft. Container runtimes run it with the
//! `CNI_*` environment and the network configuration on stdin; it asks the
//! node's `weft-agent` and prints the result (or a CNI error) on stdout.
//! Install it as `/opt/cni/bin/weft-cni`; see `docs/cni.md`.

#![forbid(unsafe_code)]

fn main() {
    // Warnings only, on stderr (stdout is the CNI result); WEFT_LOG for more.
    weft_node_agent::logging::init("warn", false);
    std::process::exit(weft_node_agent::cni::shell::main());
}
