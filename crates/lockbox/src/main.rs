//! The `lockbox` binary: `lockbox daemon` serves, every other subcommand is the CLI.

fn main() -> std::process::ExitCode {
    lockbox::main()
}
