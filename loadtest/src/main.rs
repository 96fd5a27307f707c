fn main() -> std::process::ExitCode {
    loadtest::main()
}
