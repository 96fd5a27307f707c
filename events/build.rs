//! Compiles `proto/` with protox, a protobuf compiler written in Rust that
//! carries Google's well-known types (`any.proto`, `timestamp.proto`), so the
//! build needs no `protoc` and no include files from the machine.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    // tonic-prost-build does not ask Cargo to watch the .proto files itself.
    println!("cargo:rerun-if-changed=../proto");
    let descriptors = protox::compile(["case_writer.proto"], ["../proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
