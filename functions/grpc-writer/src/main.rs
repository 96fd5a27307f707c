runtime::use_mimalloc!();

fn main() -> std::process::ExitCode {
    runtime::main::<grpc_writer::Function>()
}
