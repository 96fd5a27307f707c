fn main() -> std::process::ExitCode {
    runtime::main("redis-sub", redis_sub::routes)
}
