//! A small blocking SPDY/3.1 client for the streaming tests, written from
//! the protocol description (SPDY/3 draft §2; Kubernetes' remote command
//! and port-forward conventions), not from berthd's server: an HTTP/1.1
//! upgrade, then frames on the socket. A reader thread decodes what the
//! server sends into [`Event`]s.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// The SPDY/3 header dictionary: 65 length-prefixed header words, then
/// common value fragments (1423 bytes).
pub fn dictionary() -> Vec<u8> {
    let words = "options head post put delete trace accept accept-charset accept-encoding \
        accept-language accept-ranges age allow authorization cache-control connection \
        content-base content-encoding content-language content-length content-location \
        content-md5 content-range content-type date etag expect expires from host if-match \
        if-modified-since if-none-match if-range if-unmodified-since last-modified location \
        max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after \
        server te trailer transfer-encoding upgrade user-agent vary via warning \
        www-authenticate method get status 200_OK version HTTP/1.1 url public set-cookie \
        keep-alive origin";
    let mut d = Vec::new();
    for w in words.split_whitespace() {
        let w = w.replace('_', " ");
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(
        b"100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505\
203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request\
401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented\
503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 \
Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,\
application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=\
gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    assert_eq!(d.len(), 1423, "SPDY/3 dictionary length");
    d
}

/// What the server sent.
#[derive(Debug)]
pub enum Event {
    /// SYN_REPLY for a stream.
    Reply(u32),
    /// DATA (possibly empty) with its FIN flag.
    Data(u32, Vec<u8>, bool),
    /// RST_STREAM.
    Reset(u32, u32),
    /// GOAWAY.
    GoAway,
    /// The connection ended.
    Closed,
}

/// Why the upgrade was refused: HTTP status and body.
#[derive(Debug)]
pub struct Refused {
    /// The status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// A client session.
pub struct Client {
    out: Arc<Mutex<(TcpStream, Compress)>>,
    next_id: u32,
    /// Events from the server.
    pub events: mpsc::Receiver<Event>,
    /// The sub-protocol the server chose.
    pub protocol: String,
}

fn write_all(w: &mut TcpStream, b: &[u8]) {
    let _ = w.write_all(b);
}

impl Client {
    /// Upgrades `url` (`http://host:port/path`) offering `protocols`.
    pub fn connect(url: &str, protocols: &[&str]) -> Result<Self, Refused> {
        let rest = url.strip_prefix("http://").expect("http URL");
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut s = TcpStream::connect(host).expect("connect to the streaming server");
        s.set_nodelay(true).ok();
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n"
        );
        for p in protocols {
            req.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut protocol = String::new();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
            let (k, v) = h.split_once(':').unwrap_or((&h, ""));
            let v = v.trim().to_string();
            match k.to_ascii_lowercase().as_str() {
                "x-stream-protocol-version" => protocol = v,
                "content-length" => length = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        if status != 101 {
            let mut body = vec![0u8; length];
            let _ = r.read_exact(&mut body);
            return Err(Refused {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        let (tx, events) = mpsc::channel();
        let out = Arc::new(Mutex::new((s, Compress::new(Compression::default(), true))));
        let echo = out.clone();
        std::thread::spawn(move || read_frames(r, tx, echo));
        Ok(Self {
            out,
            next_id: 1,
            events,
            protocol,
        })
    }

    /// Opens a stream with `headers`; its id.
    pub fn open(&mut self, headers: &[(&str, &str)]) -> u32 {
        let id = self.next_id;
        self.next_id += 2;
        let mut block = (headers.len() as u32).to_be_bytes().to_vec();
        for (k, v) in headers {
            for x in [k, v] {
                block.extend_from_slice(&(x.len() as u32).to_be_bytes());
                block.extend_from_slice(x.as_bytes());
            }
        }
        let mut g = self.out.lock().unwrap();
        let (sock, z) = &mut *g;
        if z.total_in() == 0 {
            z.set_dictionary(&dictionary()).unwrap();
        }
        let mut packed = Vec::with_capacity(block.len() + 128);
        z.compress_vec(&block, &mut packed, FlushCompress::Sync)
            .unwrap();
        let mut payload = id.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        payload.extend_from_slice(&packed);
        let mut f = vec![0x80, 3, 0, 1, 0];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        f.extend_from_slice(&payload);
        write_all(sock, &f);
        id
    }

    /// DATA on stream `id`, with FIN when `fin`.
    pub fn send(&self, id: u32, data: &[u8], fin: bool) {
        let mut f = id.to_be_bytes().to_vec();
        f.push(fin as u8);
        f.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        f.extend_from_slice(data);
        write_all(&mut self.out.lock().unwrap().0, &f);
    }

    /// Raw bytes on the connection (for malformed-frame tests).
    pub fn send_raw(&self, bytes: &[u8]) {
        write_all(&mut self.out.lock().unwrap().0, bytes);
    }

    /// Collects DATA per stream until the connection closes (`limit`
    /// at most): `(stream, bytes, saw FIN)`.
    pub fn collect(&self, limit: Duration) -> std::collections::HashMap<u32, (Vec<u8>, bool)> {
        let mut got: std::collections::HashMap<u32, (Vec<u8>, bool)> = Default::default();
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Data(id, b, fin)) => {
                    let e = got.entry(id).or_default();
                    e.0.extend_from_slice(&b);
                    e.1 |= fin;
                }
                Ok(Event::Closed) | Err(_) => return got,
                Ok(_) => {}
            }
        }
    }
}

fn read_frames(
    mut r: BufReader<TcpStream>,
    tx: mpsc::Sender<Event>,
    out: Arc<Mutex<(TcpStream, Compress)>>,
) {
    let mut z = Decompress::new(true);
    loop {
        let mut head = [0u8; 8];
        if r.read_exact(&mut head).is_err() {
            let _ = tx.send(Event::Closed);
            return;
        }
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let flags = head[4];
        let mut p = vec![0u8; len];
        if r.read_exact(&mut p).is_err() {
            let _ = tx.send(Event::Closed);
            return;
        }
        let word = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if head[0] & 0x80 == 0 {
            let id = word(&head) & 0x7fff_ffff;
            let _ = tx.send(Event::Data(id, p, flags & 1 != 0));
            continue;
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let ev = match kind {
            2 => {
                // Keep the decompressor in step with the server's.
                let mut block = Vec::with_capacity(4096);
                let mut input = &p[4..];
                loop {
                    let before = z.total_in();
                    match z.decompress_vec(input, &mut block, FlushDecompress::Sync) {
                        Ok(_) => {}
                        Err(e) if e.needs_dictionary().is_some() => {
                            z.set_dictionary(&dictionary()).unwrap();
                        }
                        Err(e) => panic!("server header block: {e}"),
                    }
                    input = &input[(z.total_in() - before) as usize..];
                    if input.is_empty() && block.len() < block.capacity() {
                        break;
                    }
                    block.reserve(4096);
                }
                Some(Event::Reply(word(&p) & 0x7fff_ffff))
            }
            3 => Some(Event::Reset(word(&p) & 0x7fff_ffff, word(&p[4..]))),
            6 => {
                let id = word(&p);
                if id % 2 == 0 {
                    // Echo the server's pings.
                    let mut f = vec![0x80, 3, 0, 6, 0, 0, 0, 4];
                    f.extend_from_slice(&p);
                    write_all(&mut out.lock().unwrap().0, &f);
                }
                None
            }
            7 => Some(Event::GoAway),
            _ => None,
        };
        if let Some(ev) = ev {
            let _ = tx.send(ev);
        }
    }
}
