//! What differs by platform outside the sockets: hiding a password as it is typed, and the
//! CPU time of this process (for the benches).

/// Turns the terminal's echo off or on (so a password typed at a prompt is not shown); false
/// when it could not, and the caller must then not read a secret from the terminal.
#[cfg(unix)]
pub fn set_echo(on: bool) -> bool {
    std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .status()
        .is_ok_and(|s| s.success())
}

/// Turns the terminal's echo off or on; false when it could not.
#[cfg(not(unix))]
pub fn set_echo(_on: bool) -> bool {
    // No portable way without a console API: the caller refuses to read a visible password.
    false
}

/// CPU seconds this process has used so far (user and system, all threads); `None` where the
/// platform's clock is not read (the benches then report wall-clock time only).
#[cfg(target_os = "linux")]
pub fn process_cpu_secs() -> Option<f64> {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    (rc == 0).then_some(t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9)
}

/// CPU seconds this process has used so far; `None` on this platform.
#[cfg(not(target_os = "linux"))]
pub fn process_cpu_secs() -> Option<f64> {
    None
}
