runtime::use_mimalloc!();

fn main() -> std::process::ExitCode {
    runtime::main("grpc-writer", grpc_writer::routes)
}
