//! A registry mirror stand-in that records every request with its headers:
//! it either forwards to a real registry, mapping its own API root onto
//! the registry's `/v2` (a hosts.toml entry with `override_path`), or
//! answers every request with one fixed status (a broken mirror).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// One request as the mirror got it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The request target (path and query).
    pub target: String,
    /// The headers, names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// Every value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// What the mirror does with a request.
#[derive(Debug, Clone)]
enum Mode {
    /// `ROOT/<rest>` is sent to `upstream` as `/v2/<rest>`.
    Forward { upstream: String, root: String },
    /// Every request gets this status line (e.g. `503 Service Unavailable`).
    Answer(String),
}

/// The mirror; stops on drop.
pub struct Mirror {
    port: u16,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Mirror {
    /// Forwards `ROOT/<rest>` to `upstream` (`host:port`) as `/v2/<rest>`.
    pub fn forward(upstream: &str, root: &str) -> Self {
        Self::start(Mode::Forward {
            upstream: upstream.to_string(),
            root: root.trim_end_matches('/').to_string(),
        })
    }

    /// Answers every request with `status` (`503 Service Unavailable`).
    pub fn failing(status: &str) -> Self {
        Self::start(Mode::Answer(status.to_string()))
    }

    fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind mirror");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (mode, seen) = (mode.clone(), seen2.clone());
                thread::spawn(move || serve(conn, &mode, &seen));
            }
        });
        Self {
            port,
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The requests so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request per connection (answers say `Connection: close`).
fn serve(mut conn: TcpStream, mode: &Mode, seen: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        target: target.clone(),
        headers: headers.clone(),
    });
    match mode {
        Mode::Answer(status) => {
            let body = br#"{"errors":[{"code":"UNAVAILABLE","message":"mirror down"}]}"#;
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(body);
        }
        Mode::Forward { upstream, root } => {
            let Some(rest) = target.strip_prefix(root.as_str()) else {
                let _ = conn.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return;
            };
            let Ok(mut up) = TcpStream::connect(upstream) else {
                let _ = conn.write_all(
                    b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return;
            };
            let mut req = format!("{method} /v2{rest} HTTP/1.1\r\n");
            for (k, v) in &headers {
                if k != "connection" {
                    req.push_str(&format!("{k}: {v}\r\n"));
                }
            }
            req.push_str("Connection: close\r\n\r\n");
            if up.write_all(req.as_bytes()).is_ok() {
                let _ = std::io::copy(&mut up, &mut conn);
            }
        }
    }
    let _ = conn.shutdown(std::net::Shutdown::Both);
}
