fn main() -> Result<(), Box<dyn std::error::Error>> {
    // tonic-prost-build does not ask Cargo to watch the .proto files itself.
    println!("cargo:rerun-if-changed=../proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["../proto/case_writer.proto"], &["../proto"])?;
    Ok(())
}
