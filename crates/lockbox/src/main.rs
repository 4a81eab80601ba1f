//! The `lockbox` binary: `lockbox daemon` serves, every other subcommand is the CLI.

/// mimalloc instead of glibc's malloc: glibc keeps memory freed by one thread in that thread's
/// arena and rarely returns fragmented heap to the system, which made most of the daemon's RSS
/// beyond its state; allocation was also ~15 % of a create's CPU. See the workspace Cargo.toml
/// and bench/analysis.md for the measurements. Secret values are zeroized by their own types
/// before they are freed, whatever the allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    lockbox::main()
}
