//! The Docker-style workflow as berthd's `berth.containers.v1` serves it:
//! create (with the pull's progress), run in the foreground (start, the
//! log followed until the run ends, its exit code), logs. berthd does the
//! work; these are the client's halves.

use std::io::Write;

use berth_api::berth_containers::v1 as pb;
use berth_api::images::v1::PullProgress;

use crate::client::Client;
use crate::error::{Error, Result, RpcContext};

/// Creates a container; every pull progress message goes to `progress`.
pub async fn create(
    client: &Client,
    req: pb::CreateRequest,
    mut progress: impl FnMut(&PullProgress),
) -> Result<pb::Created> {
    let image = req
        .config
        .as_ref()
        .map(|c| c.image.clone())
        .unwrap_or_default();
    let mut stream = client
        .engine()
        .create(req)
        .await
        .with_context(|| format!("create a container from {image:?}"))?
        .into_inner();
    loop {
        let msg = stream
            .message()
            .await
            .with_context(|| format!("create a container from {image:?}"))?;
        match msg.and_then(|m| m.msg) {
            Some(pb::create_progress::Msg::Pull(p)) => progress(&p),
            Some(pb::create_progress::Msg::Created(c)) => return Ok(c),
            None => {
                return Err(Error::Protocol(
                    "berthd ended the create without a container".into(),
                ))
            }
        }
    }
}

/// Writes log entries to stdout or stderr (by their streams), with their
/// RFC 3339 times first when `timestamps`: the bytes of a run of entries
/// of one stream in one write.
fn write_entries(entries: &[pb::LogEntry], timestamps: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let mut run: Vec<u8> = Vec::new();
    let mut run_err = false;
    let mut emit = |run: &mut Vec<u8>, to_err: bool| -> std::io::Result<()> {
        if !run.is_empty() {
            if to_err {
                err.write_all(run)?;
            } else {
                out.write_all(run)?;
            }
            run.clear();
        }
        Ok(())
    };
    let res = (|| {
        for e in entries {
            let is_err = e.stream == pb::Stream::Stderr as i32;
            if is_err != run_err {
                emit(&mut run, run_err)?;
                run_err = is_err;
            }
            if timestamps {
                let t = std::time::UNIX_EPOCH
                    + std::time::Duration::from_nanos(e.time_unix_nano.max(0) as u64);
                write!(run, "{} ", humantime::format_rfc3339_nanos(t))?;
            }
            run.extend_from_slice(&e.data);
        }
        emit(&mut run, run_err)
    })();
    res.map_err(|e| Error::io("write the log", e))?;
    out.flush().map_err(|e| Error::io("write to stdout", e))?;
    err.flush().map_err(|e| Error::io("write to stderr", e))
}

/// Streams container logs as `req` asks to stdout and stderr (by the
/// entries' streams), with RFC 3339 times first when `timestamps`.
pub async fn logs(client: &Client, req: pb::LogsRequest, timestamps: bool) -> Result<()> {
    let what = format!("logs of container {:?}", req.container);
    let mut stream = client
        .engine()
        .logs(req)
        .await
        .context(what.clone())?
        .into_inner();
    while let Some(batch) = stream.message().await.context(what.clone())? {
        write_entries(&batch.entries, timestamps)?;
    }
    Ok(())
}

/// How an attach runs.
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    /// forward berthctl's stdin (the container keeps stdin open)
    pub stdin: bool,
    /// the container has a terminal: raw mode here, resizes forwarded
    pub tty: bool,
    /// start the container once its output is followed (run, start -a)
    pub start: bool,
    /// the key sequence on stdin that detaches (empty: none)
    pub detach_keys: Vec<u8>,
    /// forward SIGINT, SIGTERM, ... to the container (without a terminal)
    pub sig_proxy: bool,
}

/// How an attach ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachEnd {
    /// the run ended with this exit code
    Exited(i32),
    /// the detach keys were typed; the container runs on
    Detached,
}

/// `ctrl-p,ctrl-q` (Docker's default), `ctrl-a,d`: the bytes.
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for k in s.split(',').filter(|k| !k.is_empty()) {
        let b = match k.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => {
                let c = c.as_bytes()[0].to_ascii_lowercase();
                match c {
                    b'a'..=b'z' => c - b'a' + 1,
                    b'@' => 0,
                    b'[' => 27,
                    b'\\' => 28,
                    b']' => 29,
                    b'^' => 30,
                    b'_' => 31,
                    _ => return Err(Error::Input(format!("detach key {k:?}: unknown"))),
                }
            }
            None if k.len() == 1 => k.as_bytes()[0],
            _ => return Err(Error::Input(format!("detach key {k:?}: unknown"))),
        };
        out.push(b);
    }
    Ok(out)
}

/// Finds the detach sequence in stdin's bytes, across reads: bytes that
/// may begin it are held back until it completes (detach) or breaks.
#[derive(Debug, Default)]
pub struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachScanner {
    /// A scanner for `keys` (empty: never detaches).
    pub fn new(keys: Vec<u8>) -> Self {
        Self { keys, matched: 0 }
    }

    /// The bytes to send for `input`, and whether the sequence completed.
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        if self.keys.is_empty() {
            out.extend_from_slice(input);
            return (out, false);
        }
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
                continue;
            }
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

fn start_msg(container: &str, o: &AttachOptions) -> pb::AttachRequest {
    pb::AttachRequest {
        msg: Some(pb::attach_request::Msg::Start(pb::AttachStart {
            container: container.to_string(),
            stdin: o.stdin,
            logs: false,
        })),
    }
}

fn resize_msg() -> Option<pb::AttachRequest> {
    crate::tty::size().map(|(w, h)| pb::AttachRequest {
        msg: Some(pb::attach_request::Msg::Resize(pb::Resize {
            width: w.into(),
            height: h.into(),
        })),
    })
}

/// Attaches to `container` (starting it when `o.start`) until its run ends
/// or the detach keys are typed. Going away never stops the container.
pub async fn attach(client: &Client, container: &str, o: &AttachOptions) -> Result<AttachEnd> {
    use tokio::signal::unix::{signal, SignalKind};
    let what = format!("attach to container {container:?}");
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::AttachRequest>(16);
    tx.send(start_msg(container, o))
        .await
        .map_err(|_| Error::Protocol("attach: request stream closed".into()))?;
    let mut out = client
        .engine()
        .attach(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .context(what.clone())?
        .into_inner();
    let id = match out
        .message()
        .await
        .context(what.clone())?
        .and_then(|m| m.msg)
    {
        Some(pb::attach_response::Msg::Ready(id)) => id,
        _ => return Err(Error::Protocol(format!("{what}: berthd did not say ready"))),
    };
    let raw = o.tty.then(crate::tty::RawMode::enter);
    if o.start {
        let size = if o.tty { crate::tty::size() } else { None };
        let started = client
            .engine()
            .start(pb::StartRequest {
                container: id.clone(),
                tty_width: size.map(|s| s.0.into()).unwrap_or(0),
                tty_height: size.map(|s| s.1.into()).unwrap_or(0),
            })
            .await
            .with_context(|| format!("start container {container:?}"));
        if let Err(e) = started {
            drop(raw);
            return Err(e);
        }
    } else if o.tty {
        if let Some(m) = resize_msg() {
            let _ = tx.send(m).await;
        }
    }
    let (detach_tx, mut detach_rx) = tokio::sync::mpsc::channel::<()>(1);
    if o.stdin {
        let tx = tx.clone();
        let mut scan = DetachScanner::new(o.detach_keys.clone());
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 32 * 1024];
            let mut stdin = std::io::stdin().lock();
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = tx.blocking_send(pb::AttachRequest {
                            msg: Some(pb::attach_request::Msg::CloseStdin(true)),
                        });
                        return;
                    }
                    Ok(n) => n,
                };
                let (data, detach) = scan.feed(&buf[..n]);
                if !data.is_empty()
                    && tx
                        .blocking_send(pb::AttachRequest {
                            msg: Some(pb::attach_request::Msg::Stdin(data)),
                        })
                        .is_err()
                {
                    return;
                }
                if detach {
                    let _ = detach_tx.blocking_send(());
                    return;
                }
            }
        });
    }
    let sig = |k| signal(k).map_err(|e| Error::io("install signal handler", e));
    let mut winch = sig(SignalKind::window_change())?;
    // Signals to forward arrive here (without a terminal, with --sig-proxy).
    let (sig_tx, mut sig_rx) = tokio::sync::mpsc::channel::<&'static str>(4);
    if o.sig_proxy && !o.tty {
        for (kind, name) in [
            (SignalKind::interrupt(), "SIGINT"),
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::hangup(), "SIGHUP"),
            (SignalKind::quit(), "SIGQUIT"),
        ] {
            let mut s = sig(kind)?;
            let tx = sig_tx.clone();
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    if tx.send(name).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
    drop(sig_tx);
    let end = loop {
        tokio::select! {
            m = out.message() => match m.context(what.clone())?.and_then(|m| m.msg) {
                Some(pb::attach_response::Msg::Output(batch)) => write_entries(&batch.entries, false)?,
                Some(pb::attach_response::Msg::Exit(e)) => break AttachEnd::Exited(e.exit_code),
                Some(pb::attach_response::Msg::Ready(_)) => {}
                None => return Err(Error::Protocol(format!("{what}: berthd ended the attach before the container stopped"))),
            },
            Some(()) = detach_rx.recv() => break AttachEnd::Detached,
            _ = winch.recv(), if o.tty => {
                if let Some(m) = resize_msg() {
                    let _ = tx.send(m).await;
                }
            }
            Some(name) = sig_rx.recv() => {
                let _ = client.engine().kill(pb::KillRequest {
                    container: id.clone(),
                    signal: name.into(),
                }).await;
            }
        }
    };
    drop(raw);
    Ok(end)
}

/// Runs `start` in its container through berthd (stdin forwarded when
/// `start.stdin`, raw mode and resizes when `start.tty`) until the
/// process exits; its exit code.
pub async fn exec(client: &Client, start: pb::ExecStart) -> Result<i32> {
    use tokio::signal::unix::{signal, SignalKind};
    let what = format!("exec in container {:?}", start.container);
    let (tty, stdin) = (start.tty, start.stdin);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::ExecRequest>(16);
    tx.send(pb::ExecRequest {
        msg: Some(pb::exec_request::Msg::Start(start)),
    })
    .await
    .map_err(|_| Error::Protocol("exec: request stream closed".into()))?;
    let mut out = client
        .engine()
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .context(what.clone())?
        .into_inner();
    match out
        .message()
        .await
        .context(what.clone())?
        .and_then(|m| m.msg)
    {
        Some(pb::exec_response::Msg::Started(_)) => {}
        _ => {
            return Err(Error::Protocol(format!(
                "{what}: berthd did not say started"
            )))
        }
    }
    let raw = tty.then(crate::tty::RawMode::enter);
    if stdin {
        let tx = tx.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 32 * 1024];
            let mut stdin = std::io::stdin().lock();
            loop {
                let msg = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => pb::exec_request::Msg::CloseStdin(true),
                    Ok(n) => pb::exec_request::Msg::Stdin(buf[..n].to_vec()),
                };
                let last = matches!(msg, pb::exec_request::Msg::CloseStdin(_));
                if tx
                    .blocking_send(pb::ExecRequest { msg: Some(msg) })
                    .is_err()
                    || last
                {
                    return;
                }
            }
        });
    }
    let mut winch =
        signal(SignalKind::window_change()).map_err(|e| Error::io("install signal handler", e))?;
    let code = loop {
        tokio::select! {
            m = out.message() => match m.context(what.clone())?.and_then(|m| m.msg) {
                Some(pb::exec_response::Msg::Output(o)) => {
                    let res = if o.stream == pb::Stream::Stderr as i32 {
                        let mut e = std::io::stderr().lock();
                        e.write_all(&o.data).and_then(|()| e.flush())
                    } else {
                        let mut w = std::io::stdout().lock();
                        w.write_all(&o.data).and_then(|()| w.flush())
                    };
                    res.map_err(|e| Error::io("write the output", e))?;
                }
                Some(pb::exec_response::Msg::ExitCode(c)) => break c,
                Some(pb::exec_response::Msg::Started(_)) => {}
                None => return Err(Error::Protocol(format!("{what}: berthd ended the exec before the process exited"))),
            },
            _ = winch.recv(), if tty => {
                if let Some((w, h)) = crate::tty::size() {
                    let _ = tx.send(pb::ExecRequest {
                        msg: Some(pb::exec_request::Msg::Resize(pb::Resize { width: w.into(), height: h.into() })),
                    }).await;
                }
            }
        }
    };
    drop(raw);
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("ctrl-a,d").unwrap(), vec![1, b'd']);
        assert!(parse_detach_keys("ctrl-pp").is_err());
        assert!(parse_detach_keys("").unwrap().is_empty());
    }

    #[test]
    fn the_detach_sequence_is_found_across_reads_and_held_back() {
        let mut s = DetachScanner::new(vec![16, 17]);
        assert_eq!(s.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(s.feed(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(s.feed(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(s.feed(b"\x11rest"), (Vec::new(), true));
        let mut none = DetachScanner::new(Vec::new());
        assert_eq!(none.feed(b"\x10\x11"), (b"\x10\x11".to_vec(), false));
    }
}
