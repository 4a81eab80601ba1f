//! Stand-alone exec helper: `lockbox-exec-helper __exec-helper …`.
//!
//! The lockbox binary does exactly this at the top of its `main()`; this
//! target exists so the crate's tests (and anyone embedding the crate without
//! the lockbox binary) have a helper executable.

fn main() {
    if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new(lockbox_exec::HELPER_ARG))
    {
        lockbox_exec::helper_main();
    }
    eprintln!(
        "lockbox-exec-helper: internal helper of lockbox; it is started by the daemon as `{} {}`",
        std::env::args().next().unwrap_or_default(),
        lockbox_exec::HELPER_ARG
    );
    std::process::exit(2);
}
