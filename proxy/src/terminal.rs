//! The terminal, where it differs by platform: hiding a password as it is typed.

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
