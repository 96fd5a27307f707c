//! The project's only calls into libc: signals, the parent-death signal and
//! the clock tick. Every other module stays safe code (`unsafe_code` is
//! denied for the workspace; this module alone allows it).
#![allow(unsafe_code)]

use std::io;
use std::os::unix::process::CommandExt;

/// Sends `signal` (`libc::SIGTERM`, `libc::SIGKILL`, ...) to process `pid`.
pub fn send_signal(pid: u32, signal: i32) -> io::Result<()> {
    let pid =
        i32::try_from(pid).map_err(|_| io::Error::other(format!("pid {pid} out of range")))?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The child started by `cmd` is killed when the thread that starts it ends,
/// even if this process is killed with -9. Call from a thread that lives as
/// long as the process.
pub fn die_with_parent(cmd: &mut std::process::Command) {
    // SAFETY: the closure runs between fork and exec, where only
    // async-signal-safe calls are allowed; prctl(2) is one, and it allocates
    // nothing.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Clock ticks per second, the unit of CPU times in `/proc/<pid>/stat`.
pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf(3) has no preconditions and reads no memory of ours.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}
