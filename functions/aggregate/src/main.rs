runtime::use_mimalloc!();

fn main() -> std::process::ExitCode {
    runtime::main::<aggregate::Function>()
}
