//! Process facts read from /proc.

use std::fs;

/// The parent PID of `pid` (the shim, for a container's init process).
pub(crate) fn parent_pid(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_of_self_is_known() {
        let me = std::process::id() as i32;
        assert_eq!(parent_pid(me), Some(nix::unistd::getppid().as_raw()));
    }
}
