//! Readiness for a service manager (`Type=notify` in berthd.service):
//! READY=1 once start-up recovery is done and the socket serves,
//! STOPPING=1 when a stop begins, WATCHDOG=1 at half the interval systemd
//! asks for. Without systemd (no `NOTIFY_SOCKET`) every call is a no-op.
//!
//! [`Notifier::from_env`] takes `NOTIFY_SOCKET`, `WATCHDOG_USEC` and
//! `WATCHDOG_PID` out of berthd's environment before anything starts, so
//! no child inherits them: a `runc start` that sees `NOTIFY_SOCKET` waits
//! for the container itself to send READY=1, which would hang every
//! container under systemd (containerd drops the variable for the same
//! reason). The messages are the `sd-notify` crate's; they are sent to the
//! socket taken here (a path, or `@name` in the abstract namespace).

use std::ffi::OsString;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Where readiness goes, taken from the environment once.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<OsString>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// Takes the service manager's variables out of the environment. Call
    /// it before any thread starts (it changes the environment).
    pub fn from_env() -> Self {
        let socket = std::env::var_os(NOTIFY_SOCKET).filter(|s| !s.is_empty());
        // WATCHDOG_USEC, for this process (WATCHDOG_PID, when set, is ours).
        let watchdog = sd_notify::watchdog_enabled().filter(|d| !d.is_zero());
        for var in [NOTIFY_SOCKET, "WATCHDOG_USEC", "WATCHDOG_PID"] {
            std::env::remove_var(var);
        }
        Self { socket, watchdog }
    }

    /// Whether a service manager listens.
    pub fn is_active(&self) -> bool {
        self.socket.is_some()
    }

    /// The watchdog interval systemd asked for, if any.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// A free-form status line (`systemctl status` shows it).
    pub fn status(&self, text: &str) {
        self.send(&[NotifyState::Status(text)]);
    }

    /// Start-up is done: recovery finished and the socket serves.
    pub fn ready(&self) {
        self.send(&[NotifyState::Ready, NotifyState::Status("serving")]);
    }

    /// A stop has begun: calls drain, then berthd exits.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
    }

    /// Pings the watchdog at half its interval until `stop` (when systemd
    /// asked for one).
    pub fn spawn_watchdog(&self, stop: CancellationToken) {
        let Some(interval) = self.watchdog else {
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval / 2);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => me.send(&[NotifyState::Watchdog]),
                }
            }
        });
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        let Some(socket) = &self.socket else {
            return;
        };
        let msg: String = states.iter().map(|s| format!("{s}\n")).collect();
        if let Err(e) = send_to(socket, msg.as_bytes()) {
            tracing::warn!(socket = ?socket, error = %e, "cannot notify the service manager");
        }
    }
}

/// One datagram to `socket`: a path, or `@name` for an abstract socket.
fn send_to(socket: &OsString, msg: &[u8]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let sock = UnixDatagram::unbound()?;
    let bytes = socket.as_bytes();
    let sent = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(msg, &addr)?
        }
        None => sock.send_to(msg, socket)?,
    };
    if sent != msg.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "short write",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_a_socket_and_nothing_without_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = Notifier {
            socket: Some(path.into_os_string()),
            watchdog: None,
        };
        n.ready();
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving\n");
        n.stopping();
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1\nSTATUS=draining\n");
        Notifier::none().ready();
        assert!(!Notifier::none().is_active());
    }

    #[test]
    fn abstract_sockets_work_too() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("berth-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = Notifier {
            socket: Some(format!("@{name}").into()),
            watchdog: None,
        };
        n.status("recovering");
        let mut buf = [0u8; 64];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STATUS=recovering\n");
    }
}
