//! Compiles `weft/v1/*.proto` with protox (a pure-Rust protobuf compiler), so
//! `cargo build` needs no `protoc` on the machine.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "weft/v1/types.proto",
        "weft/v1/objects.proto",
        "weft/v1/cluster.proto",
        "weft/v1/admin.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("weft_v1_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .btree_map(".")
        .bytes(".")
        // Written by hand (src/watch_response.rs): the same message, able to
        // carry events encoded beforehand.
        .extern_path(
            ".weft.v1.WatchResponse",
            "crate::watch_response::WatchResponse",
        )
        .compile_fds(fds)?;
    Ok(())
}
