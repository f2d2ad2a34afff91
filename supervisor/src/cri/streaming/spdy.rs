//! SPDY/3.1 framing, as Kubernetes' streaming protocols use it (the
//! kubelet's and client-go's `moby/spdystream`): frames in and out of bytes,
//! and the zlib-compressed header blocks with SPDY/3's preset dictionary.
//!
//! Contract: [`Codec::decode`] reads at most one frame from the front of a
//! buffer and either returns it, asks for more bytes (`Ok(None)`), or
//! refuses the input with an [`Error`]; it never panics, never allocates
//! more than [`MAX_FRAME`] for a frame nor more than [`MAX_HEADER_BLOCK`]
//! for a decompressed header block, whatever the input. After an error the
//! connection is unusable (the header compression state is shared by all
//! frames of one direction) and the caller closes it. No I/O here.
//!
//! Wire format (SPDY/3 draft, §2.2): a control frame is `1 | version(15) |
//! type(16) | flags(8) | length(24) | payload`; a data frame is
//! `0 | stream-id(31) | flags(8) | length(24) | payload`. A header block is
//! `count(32)` then `name-len(32) name value-len(32) value` pairs (values
//! may hold several NUL-separated values), compressed with one zlib stream
//! per direction, each block ending at a sync flush.

use std::sync::OnceLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;
/// FIN: the sender's last frame on this stream.
pub const FLAG_FIN: u8 = 0x01;
/// SYN_STREAM's UNIDIRECTIONAL flag: the receiver sends nothing back.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// Largest frame payload accepted (the field allows 16 MiB - 1).
pub const MAX_FRAME: usize = (1 << 24) - 1;
/// Largest decompressed header block accepted.
pub const MAX_HEADER_BLOCK: usize = 256 << 10;
/// Largest number of header pairs in one block.
pub const MAX_HEADERS: usize = 1024;

/// RST_STREAM status codes (§2.4.2).
pub mod rst {
    /// PROTOCOL_ERROR.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// INVALID_STREAM.
    pub const INVALID_STREAM: u32 = 2;
    /// REFUSED_STREAM.
    pub const REFUSED_STREAM: u32 = 3;
    /// CANCEL.
    pub const CANCEL: u32 = 5;
    /// INTERNAL_ERROR.
    pub const INTERNAL_ERROR: u32 = 6;
}

/// Header pairs of a block, names lowercase on the wire.
pub type Headers = Vec<(String, String)>;

/// One SPDY frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream.
    SynStream {
        /// The new stream's id (odd from clients).
        stream_id: u32,
        /// The stream it belongs to (0: none).
        associated_to: u32,
        /// 0 (highest) to 7.
        priority: u8,
        /// FIN and/or UNIDIRECTIONAL.
        flags: u8,
        /// The stream's headers.
        headers: Headers,
    },
    /// Accepts a stream.
    SynReply {
        /// The stream answered.
        stream_id: u32,
        /// FIN or 0.
        flags: u8,
        /// Reply headers.
        headers: Headers,
    },
    /// Ends a stream abnormally.
    RstStream {
        /// The stream reset.
        stream_id: u32,
        /// One of [`rst`].
        status: u32,
    },
    /// Connection settings (id, value, per-entry flags).
    Settings {
        /// CLEAR_SETTINGS or 0.
        flags: u8,
        /// `(flags, id, value)` entries.
        entries: Vec<(u8, u32, u32)>,
    },
    /// Liveness check, echoed by the receiver.
    Ping {
        /// Odd from clients, even from servers.
        id: u32,
    },
    /// The sender stops accepting streams.
    GoAway {
        /// The last stream the sender processed.
        last_good: u32,
        /// 0 OK, 1 protocol error, 2 internal error.
        status: u32,
    },
    /// More headers on an open stream.
    Headers {
        /// The stream.
        stream_id: u32,
        /// FIN or 0.
        flags: u8,
        /// The headers.
        headers: Headers,
    },
    /// Flow control credit (stream 0: the connection).
    WindowUpdate {
        /// The stream, or 0.
        stream_id: u32,
        /// Bytes granted (1 to 2^31 - 1).
        delta: u32,
    },
    /// Payload bytes of a stream.
    Data {
        /// The stream.
        stream_id: u32,
        /// FIN or 0.
        flags: u8,
        /// The bytes.
        data: Vec<u8>,
    },
}

/// Why bytes are not a valid frame sequence.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// unsupported spdy version {0}
    #[error("unsupported spdy version {0}")]
    Version(u16),
    /// frame of {0} bytes is larger than allowed
    #[error("frame of {0} bytes is larger than allowed")]
    TooLarge(usize),
    /// malformed {0} frame
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    /// stream id 0 on a stream frame
    #[error("stream id 0 in a {0} frame")]
    ZeroStream(&'static str),
    /// bad header block
    #[error("bad header block: {0}")]
    HeaderBlock(&'static str),
    /// the header compression failed
    #[error("header compression: {0}")]
    Compression(String),
}

/// The SPDY/3 header dictionary (§2.6.10.1): length-prefixed common header
/// names and values, then a run of common value fragments; 1423 bytes.
pub fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options",
            "head",
            "post",
            "put",
            "delete",
            "trace",
            "accept",
            "accept-charset",
            "accept-encoding",
            "accept-language",
            "accept-ranges",
            "age",
            "allow",
            "authorization",
            "cache-control",
            "connection",
            "content-base",
            "content-encoding",
            "content-language",
            "content-length",
            "content-location",
            "content-md5",
            "content-range",
            "content-type",
            "date",
            "etag",
            "expect",
            "expires",
            "from",
            "host",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "last-modified",
            "location",
            "max-forwards",
            "pragma",
            "proxy-authenticate",
            "proxy-authorization",
            "range",
            "referer",
            "retry-after",
            "server",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "user-agent",
            "vary",
            "via",
            "warning",
            "www-authenticate",
            "method",
            "get",
            "status",
            "200 OK",
            "version",
            "HTTP/1.1",
            "url",
            "public",
            "set-cookie",
            "keep-alive",
            "origin",
        ];
        const TAIL: &[&str] = &[
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
            "203 Non-Authoritative Information",
            "204 No Content",
            "301 Moved Permanently",
            "400 Bad Request",
            "401 Unauthorized",
            "403 Forbidden",
            "404 Not Found",
            "500 Internal Server Error",
            "501 Not Implemented",
            "503 Service Unavailable",
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,",
            "application/xhtml+xml,text/plain,text/javascript,publicprivate",
            "max-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
        ];
        let mut d = Vec::with_capacity(1423);
        for w in WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        for t in TAIL {
            d.extend_from_slice(t.as_bytes());
        }
        d
    })
}

/// Encodes and decodes the frames of one connection: one compressor for
/// the header blocks sent, one decompressor for those received.
pub struct Codec {
    deflate: Compress,
    inflate: Decompress,
    deflate_primed: bool,
}

impl Default for Codec {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").finish_non_exhaustive()
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Codec {
    /// A codec at the start of a connection.
    pub fn new() -> Self {
        Self {
            deflate: Compress::new(Compression::default(), true),
            inflate: Decompress::new(true),
            deflate_primed: false,
        }
    }

    /// Appends `frame`'s bytes to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), Error> {
        let control = |out: &mut Vec<u8>, kind: u16, flags: u8, payload: &[u8]| {
            out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
            out.extend_from_slice(&kind.to_be_bytes());
            out.push(flags);
            out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
            out.extend_from_slice(payload);
        };
        match frame {
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                let mut p = Vec::new();
                p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                p.extend_from_slice(&(associated_to & 0x7fff_ffff).to_be_bytes());
                p.push((priority & 7) << 5);
                p.push(0);
                self.compress_headers(headers, &mut p)?;
                control(out, 1, *flags, &p);
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                let mut p = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                self.compress_headers(headers, &mut p)?;
                control(out, 2, *flags, &p);
            }
            Frame::RstStream { stream_id, status } => {
                let mut p = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                control(out, 3, 0, &p);
            }
            Frame::Settings { flags, entries } => {
                let mut p = (entries.len() as u32).to_be_bytes().to_vec();
                for (f, id, value) in entries {
                    p.push(*f);
                    p.extend_from_slice(&id.to_be_bytes()[1..]);
                    p.extend_from_slice(&value.to_be_bytes());
                }
                control(out, 4, *flags, &p);
            }
            Frame::Ping { id } => control(out, 6, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good, status } => {
                let mut p = (last_good & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                control(out, 7, 0, &p);
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let mut p = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                self.compress_headers(headers, &mut p)?;
                control(out, 8, *flags, &p);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut p = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
                control(out, 9, 0, &p);
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_FRAME {
                    return Err(Error::TooLarge(data.len()));
                }
                out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                out.push(*flags);
                out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                out.extend_from_slice(data);
            }
        }
        Ok(())
    }

    fn compress_headers(&mut self, headers: &Headers, out: &mut Vec<u8>) -> Result<(), Error> {
        let mut raw = (headers.len() as u32).to_be_bytes().to_vec();
        for (name, value) in headers {
            raw.extend_from_slice(&(name.len() as u32).to_be_bytes());
            raw.extend_from_slice(name.to_ascii_lowercase().as_bytes());
            raw.extend_from_slice(&(value.len() as u32).to_be_bytes());
            raw.extend_from_slice(value.as_bytes());
        }
        if !self.deflate_primed {
            self.deflate
                .set_dictionary(dictionary())
                .map_err(|e| Error::Compression(e.to_string()))?;
            self.deflate_primed = true;
        }
        let mut input = &raw[..];
        loop {
            out.reserve(input.len() + 64);
            let before_in = self.deflate.total_in();
            self.deflate
                .compress_vec(input, out, FlushCompress::Sync)
                .map_err(|e| Error::Compression(e.to_string()))?;
            let used = (self.deflate.total_in() - before_in) as usize;
            input = &input[used..];
            // A sync flush is complete once all input is in and the
            // output had room to spare.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
        }
    }

    fn decompress_headers(&mut self, mut input: &[u8]) -> Result<Headers, Error> {
        let mut raw: Vec<u8> = Vec::with_capacity(1024);
        let mut rounds = 0usize;
        loop {
            rounds += 1;
            if rounds > 10_000 {
                return Err(Error::HeaderBlock("decompression does not progress"));
            }
            if raw.len() == raw.capacity() {
                if raw.len() >= MAX_HEADER_BLOCK {
                    return Err(Error::HeaderBlock("too large"));
                }
                raw.reserve((raw.len()).clamp(1024, MAX_HEADER_BLOCK - raw.len()));
            }
            let (before_in, before_out) = (self.inflate.total_in(), self.inflate.total_out());
            let status = match self
                .inflate
                .decompress_vec(input, &mut raw, FlushDecompress::Sync)
            {
                Ok(s) => s,
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(dictionary())
                        .map_err(|_| Error::HeaderBlock("wrong dictionary"))?;
                    let used = (self.inflate.total_in() - before_in) as usize;
                    input = &input[used.min(input.len())..];
                    continue;
                }
                Err(_) => return Err(Error::HeaderBlock("corrupt zlib data")),
            };
            let used = (self.inflate.total_in() - before_in) as usize;
            let made = (self.inflate.total_out() - before_out) as usize;
            input = &input[used.min(input.len())..];
            match status {
                Status::StreamEnd => return Err(Error::HeaderBlock("zlib stream ended")),
                Status::Ok | Status::BufError => {
                    if input.is_empty() && raw.len() < raw.capacity() {
                        break;
                    }
                    if used == 0 && made == 0 && raw.len() < raw.capacity() {
                        return Err(Error::HeaderBlock("truncated"));
                    }
                }
            }
        }
        parse_header_block(&raw)
    }

    /// Takes one frame off the front of `buf`: `Ok(None)` when `buf` does
    /// not hold a whole frame yet (nothing consumed).
    pub fn decode(&mut self, buf: &mut Vec<u8>) -> Result<Option<Frame>, Error> {
        loop {
            match self.decode_one(buf)? {
                None => return Ok(None),
                Some(Some(f)) => return Ok(Some(f)),
                // An unknown control frame, skipped (§2.2.1).
                Some(None) => continue,
            }
        }
    }

    fn decode_one(&mut self, buf: &mut Vec<u8>) -> Result<Option<Option<Frame>>, Error> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let len = (be32(&buf[4..8]) & 0x00ff_ffff) as usize;
        let flags = buf[4];
        if len > MAX_FRAME {
            return Err(Error::TooLarge(len));
        }
        if buf.len() < 8 + len {
            return Ok(None);
        }
        let frame: Vec<u8> = buf.drain(..8 + len).collect();
        let p = &frame[8..];
        if frame[0] & 0x80 == 0 {
            let stream_id = be32(&frame[0..4]) & 0x7fff_ffff;
            if stream_id == 0 {
                return Err(Error::ZeroStream("DATA"));
            }
            return Ok(Some(Some(Frame::Data {
                stream_id,
                flags,
                data: p.to_vec(),
            })));
        }
        let version = u16::from_be_bytes([frame[0], frame[1]]) & 0x7fff;
        if version != VERSION {
            return Err(Error::Version(version));
        }
        let kind = u16::from_be_bytes([frame[2], frame[3]]);
        let need = |n: usize, name: &'static str| {
            if p.len() < n {
                Err(Error::Malformed(name))
            } else {
                Ok(())
            }
        };
        let stream = |name: &'static str| {
            let id = be32(p) & 0x7fff_ffff;
            if id == 0 {
                Err(Error::ZeroStream(name))
            } else {
                Ok(id)
            }
        };
        let f = match kind {
            1 => {
                need(10, "SYN_STREAM")?;
                let stream_id = stream("SYN_STREAM")?;
                Frame::SynStream {
                    stream_id,
                    associated_to: be32(&p[4..8]) & 0x7fff_ffff,
                    priority: p[8] >> 5,
                    flags,
                    headers: self.decompress_headers(&p[10..])?,
                }
            }
            2 => {
                need(4, "SYN_REPLY")?;
                let stream_id = stream("SYN_REPLY")?;
                Frame::SynReply {
                    stream_id,
                    flags,
                    headers: self.decompress_headers(&p[4..])?,
                }
            }
            3 => {
                if p.len() != 8 {
                    return Err(Error::Malformed("RST_STREAM"));
                }
                Frame::RstStream {
                    stream_id: stream("RST_STREAM")?,
                    status: be32(&p[4..8]),
                }
            }
            4 => {
                need(4, "SETTINGS")?;
                let n = be32(p) as usize;
                if p.len() != 4 + n.saturating_mul(8) {
                    return Err(Error::Malformed("SETTINGS"));
                }
                let entries = p[4..]
                    .chunks_exact(8)
                    .map(|e| (e[0], be32(e) & 0x00ff_ffff, be32(&e[4..8])))
                    .collect();
                Frame::Settings { flags, entries }
            }
            6 => {
                if p.len() != 4 {
                    return Err(Error::Malformed("PING"));
                }
                Frame::Ping { id: be32(p) }
            }
            7 => {
                if p.len() != 8 {
                    return Err(Error::Malformed("GOAWAY"));
                }
                Frame::GoAway {
                    last_good: be32(p) & 0x7fff_ffff,
                    status: be32(&p[4..8]),
                }
            }
            8 => {
                need(4, "HEADERS")?;
                let stream_id = stream("HEADERS")?;
                Frame::Headers {
                    stream_id,
                    flags,
                    headers: self.decompress_headers(&p[4..])?,
                }
            }
            9 => {
                if p.len() != 8 {
                    return Err(Error::Malformed("WINDOW_UPDATE"));
                }
                Frame::WindowUpdate {
                    stream_id: be32(p) & 0x7fff_ffff,
                    delta: be32(&p[4..8]) & 0x7fff_ffff,
                }
            }
            _ => return Ok(Some(None)),
        };
        Ok(Some(Some(f)))
    }
}

fn parse_header_block(raw: &[u8]) -> Result<Headers, Error> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], Error> {
        let end = at
            .checked_add(n)
            .filter(|e| *e <= raw.len())
            .ok_or(Error::HeaderBlock("truncated"))?;
        let s = &raw[at..end];
        at = end;
        Ok(s)
    };
    let count = be32(take(4)?) as usize;
    if count > MAX_HEADERS {
        return Err(Error::HeaderBlock("too many headers"));
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let n = be32(take(4)?) as usize;
        let name = take(n)?;
        if name.is_empty() || name.iter().any(|b| b.is_ascii_uppercase()) {
            return Err(Error::HeaderBlock("empty or uppercase header name"));
        }
        let name = std::str::from_utf8(name).map_err(|_| Error::HeaderBlock("name not utf-8"))?;
        let n = be32(take(4)?) as usize;
        let value =
            std::str::from_utf8(take(n)?).map_err(|_| Error::HeaderBlock("value not utf-8"))?;
        out.push((name.to_string(), value.to_string()));
    }
    Ok(out)
}

/// The first value of header `name` (values may be NUL-separated lists).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.split('\0').next().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn dictionary_is_spdy3s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(&d[..11], b"\0\0\0\x07options");
        assert!(d.ends_with(b"enq=0."));
    }

    #[test]
    fn every_frame_round_trips_and_header_state_carries_over() {
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: hs(&[("streamtype", "error")]),
            },
            Frame::SynStream {
                stream_id: 3,
                associated_to: 0,
                priority: 7,
                flags: FLAG_FIN,
                headers: hs(&[("streamtype", "stdout"), ("port", "80"), ("requestid", "0")]),
            },
            Frame::SynReply {
                stream_id: 3,
                flags: 0,
                headers: vec![],
            },
            Frame::RstStream {
                stream_id: 5,
                status: rst::CANCEL,
            },
            Frame::Settings {
                flags: 0,
                entries: vec![(0, 7, 65536), (1, 4, 100)],
            },
            Frame::Ping { id: 2 },
            Frame::GoAway {
                last_good: 9,
                status: 0,
            },
            Frame::Headers {
                stream_id: 7,
                flags: FLAG_FIN,
                headers: hs(&[("a", "b\0c")]),
            },
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 1 << 20,
            },
            Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                data: b"hello".to_vec(),
            },
            Frame::Data {
                stream_id: 3,
                flags: 0,
                data: vec![7u8; 100_000],
            },
        ];
        let (mut tx, mut rx) = (Codec::new(), Codec::new());
        let mut wire = Vec::new();
        for f in &frames {
            tx.encode(f, &mut wire).unwrap();
        }
        // Feed in small pieces: a frame is decoded only once whole.
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(7) {
            buf.extend_from_slice(chunk);
            while let Some(f) = rx.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert!(buf.is_empty());
        assert_eq!(got, frames);
    }

    #[test]
    fn refusals() {
        let mut c = Codec::new();
        // Version 2.
        let mut b = vec![0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1];
        assert_eq!(c.decode(&mut b), Err(Error::Version(2)));
        // Data on stream 0.
        let mut b = vec![0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(c.decode(&mut b), Err(Error::ZeroStream("DATA")));
        // PING of the wrong size.
        let mut b = vec![0x80, 3, 0, 6, 0, 0, 0, 2, 0, 0];
        assert_eq!(c.decode(&mut b), Err(Error::Malformed("PING")));
        // A header block that is not zlib.
        let mut b = vec![0x80, 3, 0, 2, 0, 0, 0, 8, 0, 0, 0, 1, 1, 2, 3, 4];
        assert!(matches!(c.decode(&mut b), Err(Error::HeaderBlock(_))));
        // Unknown control frames are skipped.
        let mut c = Codec::new();
        let mut b = vec![0x80, 3, 0, 0x42, 0, 0, 0, 1, 9];
        b.extend_from_slice(&[0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]);
        assert_eq!(c.decode(&mut b), Ok(Some(Frame::Ping { id: 1 })));
    }

    #[test]
    fn header_values_split_on_nul() {
        let h = hs(&[(
            "x-stream-protocol-version",
            "v4.channel.k8s.io\0v3.channel.k8s.io",
        )]);
        assert_eq!(
            header(&h, "X-Stream-Protocol-Version"),
            Some("v4.channel.k8s.io")
        );
    }
}
