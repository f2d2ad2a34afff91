//! Accepting any `:authority` on the unix socket.
//!
//! gRPC clients built on grpc-core (Python's grpcio, Ruby, PHP, C++) send
//! the percent-encoded socket path as `:authority` for `unix:///path`
//! targets (`%2Frun%2Fberth%2Fberthd.sock`). The HTTP/2 server under tonic
//! (h2) checks the authority with the `http` crate, which refuses a `%` in a
//! host, and resets the stream (RST_STREAM PROTOCOL_ERROR) before any
//! service sees it. containerd serves such clients; berthd does too: the
//! authority means nothing on a unix socket, so one that h2 would refuse
//! (or an empty one) is replaced by `localhost`, what grpc-go sends.
//!
//! [`HeaderRewriter`] sits on the bytes the client sends, ahead of h2. It
//! follows the frames, decodes every header block with its own HPACK
//! decoder (so its dynamic table stays in step with the client's), and
//! forwards the client's bytes unchanged until a block carries an authority
//! h2 would refuse. From that block on, every block is sent re-encoded as
//! literals without indexing: h2's table then no longer follows the
//! client's, so nothing may refer to it. A block it cannot decode, or one
//! over [`MAX_BLOCK`], is forwarded as it came and the rewriter stands
//! aside for the rest of the connection (h2 judges it as before).

use std::borrow::Cow;

use tonic::codegen::http;

/// The authority put in place of one h2 would refuse.
const REPLACEMENT: &[u8] = b"localhost";

/// Largest header block decoded; a larger one is forwarded untouched.
pub(crate) const MAX_BLOCK: usize = 256 << 10;

/// The table size h2 announces (the HTTP/2 default): the most a client's
/// encoder may use.
const TABLE_SIZE: usize = 4096;

/// Frames are cut at the smallest `SETTINGS_MAX_FRAME_SIZE` a peer may set.
const MAX_FRAME: usize = 16_384;

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Whether h2 would take `value` as an `:authority`.
fn acceptable(value: &[u8]) -> bool {
    !value.is_empty() && http::uri::Authority::try_from(value).is_ok()
}

/// One header block being collected: the HEADERS frame's stream, flags and
/// priority, the fragments so far, and the raw frames (sent as they came
/// when the block is not rewritten).
struct Pending {
    stream: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
    raw: Vec<u8>,
}

/// What to do with a complete frame.
pub(crate) enum Verdict {
    /// forward these bytes (the frame as it came, or its rewrite)
    Forward(Vec<u8>),
    /// part of a header block still being collected: nothing to send yet
    Hold,
}

/// Follows a client's header blocks; see the module doc.
pub(crate) struct HeaderRewriter {
    decoder: loona_hpack::Decoder<'static>,
    /// every block from now on is re-encoded
    rewriting: bool,
    /// decoding failed once: forward everything untouched
    aside: bool,
    pending: Option<Pending>,
}

impl HeaderRewriter {
    pub(crate) fn new() -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(TABLE_SIZE);
        Self {
            decoder,
            rewriting: false,
            aside: false,
            pending: None,
        }
    }

    /// Whether a frame of type `kind` must be handed whole to
    /// [`HeaderRewriter::frame`]; other frames go straight through.
    pub(crate) fn wants(&self, kind: u8) -> bool {
        !self.aside && (kind == HEADERS || kind == CONTINUATION || self.pending.is_some())
    }

    /// A frame too large to hold arrived: forward what is held and stand
    /// aside for the rest of the connection.
    pub(crate) fn abandon(&mut self) -> Vec<u8> {
        let held = self.pending.take().map(|p| p.raw).unwrap_or_default();
        self.aside = true;
        held
    }

    /// Takes one whole frame (9-byte header and payload) from the client.
    pub(crate) fn frame(&mut self, frame: Vec<u8>) -> Verdict {
        if self.aside {
            return Verdict::Forward(frame);
        }
        let kind = frame[3];
        let flags = frame[4];
        let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        match (kind, self.pending.take()) {
            (HEADERS, None) => {
                let Some((priority, fragment)) = split_headers(&frame[9..], flags) else {
                    return self.stand_aside(Vec::new(), frame);
                };
                let p = Pending {
                    stream,
                    flags,
                    priority,
                    block: fragment.to_vec(),
                    raw: frame,
                };
                self.collect(p, flags)
            }
            (CONTINUATION, Some(mut p)) if p.stream == stream => {
                p.block.extend_from_slice(&frame[9..]);
                p.raw.extend_from_slice(&frame);
                if p.block.len() > MAX_BLOCK {
                    return self.stand_aside(p.raw, Vec::new());
                }
                self.collect(p, flags)
            }
            // Anything else inside a header block is a protocol error for
            // h2 to report: send what we held and stand aside.
            (_, Some(p)) => self.stand_aside(p.raw, frame),
            (_, None) => Verdict::Forward(frame),
        }
    }

    fn stand_aside(&mut self, mut held: Vec<u8>, frame: Vec<u8>) -> Verdict {
        self.aside = true;
        held.extend_from_slice(&frame);
        Verdict::Forward(held)
    }

    fn collect(&mut self, p: Pending, flags: u8) -> Verdict {
        if flags & END_HEADERS == 0 {
            self.pending = Some(p);
            return Verdict::Hold;
        }
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut refused = false;
        let decoded = {
            let decoder = &mut self.decoder;
            let block = &p.block;
            // The decoder reads hostile input: a panic in it must cost this
            // connection's rewriting, not the connection task.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                decoder.decode_with_cb(block, |name: Cow<'_, [u8]>, value: Cow<'_, [u8]>| {
                    if &name[..] == b":authority" && !acceptable(&value) {
                        refused = true;
                        fields.push((name.into_owned(), REPLACEMENT.to_vec()));
                    } else {
                        fields.push((name.into_owned(), value.into_owned()));
                    }
                })
            }))
        };
        match decoded {
            Ok(Ok(())) => {}
            _ => return self.stand_aside(p.raw, Vec::new()),
        }
        if refused && !self.rewriting {
            tracing::debug!(
                stream = p.stream,
                "client sent an :authority h2 refuses; re-encoding its header blocks"
            );
            self.rewriting = true;
        }
        if !self.rewriting {
            return Verdict::Forward(p.raw);
        }
        Verdict::Forward(encode_frames(&p, &fields))
    }
}

/// The priority fields and the header block fragment of a HEADERS payload;
/// None when the padding or priority fields do not fit.
fn split_headers(payload: &[u8], flags: u8) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut body = payload;
    let mut pad = 0usize;
    if flags & PADDED != 0 {
        pad = usize::from(*body.first()?);
        body = &body[1..];
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        let fields: [u8; 5] = body.get(..5)?.try_into().ok()?;
        priority = Some(fields);
        body = &body[5..];
    }
    let end = body.len().checked_sub(pad)?;
    Some((priority, &body[..end]))
}

/// HPACK integer with an `n`-bit prefix whose high bits are `first`.
fn put_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A header block of literals without indexing (new names, no Huffman).
pub(crate) fn encode_block(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        put_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name);
        put_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value);
    }
    out
}

fn frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// The block `fields` as a HEADERS frame (with the original END_STREAM and
/// priority, without padding) and as many CONTINUATION frames as needed.
fn encode_frames(p: &Pending, fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let block = encode_block(fields);
    let prio = p.priority.map_or(0, |_| 5);
    let first_room = MAX_FRAME - prio;
    let (first, mut rest) = block.split_at(block.len().min(first_room));
    let mut out = Vec::with_capacity(block.len() + 64);
    let mut flags = p.flags & (END_STREAM | PRIORITY);
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    frame_header(&mut out, first.len() + prio, HEADERS, flags, p.stream);
    if let Some(fields) = p.priority {
        out.extend_from_slice(&fields);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME));
        let flags = if tail.is_empty() { END_HEADERS } else { 0 };
        frame_header(&mut out, chunk.len(), CONTINUATION, flags, p.stream);
        out.extend_from_slice(chunk);
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        frame_header(&mut out, payload.len(), kind, flags, stream);
        out.extend_from_slice(payload);
        out
    }

    /// Decodes what the rewriter forwarded with a fresh decoder, as h2 would.
    fn decode_forwarded(
        h2: &mut loona_hpack::Decoder<'static>,
        bytes: &[u8],
    ) -> Vec<(String, String)> {
        let mut block = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
            let kind = bytes[at + 3];
            let flags = bytes[at + 4];
            let payload = &bytes[at + 9..at + 9 + len];
            let frag = if kind == HEADERS {
                split_headers(payload, flags).unwrap().1
            } else {
                payload
            };
            block.extend_from_slice(frag);
            at += 9 + len;
        }
        h2.decode(&block)
            .unwrap()
            .into_iter()
            .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
            .collect()
    }

    /// Literal with incremental indexing, indexed name `idx`.
    fn inc_indexed_name(out: &mut Vec<u8>, idx: usize, value: &[u8]) {
        put_int(out, 0x40, 6, idx);
        put_int(out, 0, 7, value.len());
        out.extend_from_slice(value);
    }

    #[test]
    fn valid_authorities_pass_untouched() {
        let mut r = HeaderRewriter::new();
        let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
        inc_indexed_name(&mut block, 1, b"localhost");
        let f = frame(HEADERS, END_HEADERS, 1, &block);
        match r.frame(f.clone()) {
            Verdict::Forward(out) => assert_eq!(out, f),
            Verdict::Hold => panic!("held"),
        }
    }

    #[test]
    fn percent_encoded_paths_become_localhost_and_indexes_stay_right() {
        let mut r = HeaderRewriter::new();
        let mut h2 = loona_hpack::Decoder::new();
        let path = b"%2Frun%2Fberth%2Fberthd.sock";
        // First request: the authority is indexed into the dynamic table.
        let mut block = vec![0x83, 0x86];
        inc_indexed_name(&mut block, 1, path);
        inc_indexed_name(
            &mut block,
            4,
            b"/containerd.services.version.v1.Version/Version",
        );
        let out = match r.frame(frame(HEADERS, END_HEADERS | PRIORITY, 1, &{
            let mut b = vec![0, 0, 0, 0, 15];
            b.extend_from_slice(&block);
            b
        })) {
            Verdict::Forward(out) => out,
            Verdict::Hold => panic!("held"),
        };
        let got = decode_forwarded(&mut h2, &out);
        assert!(
            got.contains(&(":authority".into(), "localhost".into())),
            "{got:?}"
        );
        assert!(got.contains(&(
            ":path".into(),
            "/containerd.services.version.v1.Version/Version".into()
        )));
        // Second request on stream 3 refers to the client's table (62 is
        // the path, 63 the authority), split over a CONTINUATION frame.
        let block = [0x83, 0x86, 0x80 | 63, 0x80 | 62];
        assert!(matches!(
            r.frame(frame(HEADERS, END_STREAM, 3, &block[..2])),
            Verdict::Hold
        ));
        let out = match r.frame(frame(CONTINUATION, END_HEADERS, 3, &block[2..])) {
            Verdict::Forward(out) => out,
            Verdict::Hold => panic!("held"),
        };
        assert_eq!(out[4] & END_STREAM, END_STREAM, "END_STREAM kept");
        let got = decode_forwarded(&mut h2, &out);
        assert_eq!(
            got,
            vec![
                (":method".into(), "POST".into()),
                (":scheme".into(), "http".into()),
                (":authority".into(), "localhost".into()),
                (
                    ":path".into(),
                    "/containerd.services.version.v1.Version/Version".into()
                ),
            ]
        );
    }

    #[test]
    fn large_blocks_are_split_and_garbage_is_left_to_h2() {
        let mut r = HeaderRewriter::new();
        let mut block = vec![0x83, 0x86];
        inc_indexed_name(&mut block, 1, b"");
        block.push(0x00);
        put_int(&mut block, 0, 7, 3);
        block.extend_from_slice(b"big");
        let v = vec![b'v'; 40_000];
        put_int(&mut block, 0, 7, v.len());
        block.extend_from_slice(&v);
        let out = match r.frame(frame(HEADERS, END_HEADERS, 1, &block)) {
            Verdict::Forward(out) => out,
            Verdict::Hold => panic!("held"),
        };
        let mut h2 = loona_hpack::Decoder::new();
        let got = decode_forwarded(&mut h2, &out);
        assert!(got.contains(&(":authority".into(), "localhost".into())));
        assert_eq!(got.last().unwrap().1.len(), 40_000);
        // An undecodable block goes through as it came, and so does all after.
        let bad = frame(
            HEADERS,
            END_HEADERS,
            3,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        );
        match r.frame(bad.clone()) {
            Verdict::Forward(out) => assert_eq!(out, bad),
            Verdict::Hold => panic!("held"),
        }
        let next = frame(HEADERS, END_HEADERS, 5, &[0x82]);
        match r.frame(next.clone()) {
            Verdict::Forward(out) => assert_eq!(out, next),
            Verdict::Hold => panic!("held"),
        }
    }
}
