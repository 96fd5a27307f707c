runtime::use_mimalloc!();

fn main() -> std::process::ExitCode {
    runtime::main("dashboard-api", dashboard_api::routes)
}
