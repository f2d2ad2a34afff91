//! Log entries: a stream cut into lines (and pieces of long lines), each
//! encoded in the kubelet's CRI format or Docker's json-file format. Pure:
//! no I/O, no clock.
//!
//! A line ends with `\n`; a `\r` right before it belongs to the ending
//! (CRI drops both, as containerd does; json-file keeps them in `log`, as
//! Docker does). A line whose text is longer than [`MAX_LINE`] bytes is cut
//! into pieces of exactly [`MAX_LINE`] bytes, each a partial entry, and
//! its rest, which ends the line. Text that the stream ends without a
//! newline is a partial entry. A `\r\n` is never split across pieces.

/// The longest text of one entry (containerd's default
/// `max_container_log_line_size`, Docker's 16 KiB buffer).
pub const MAX_LINE: usize = 16 * 1024;

/// The container's output stream an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// fd 1, and a terminal's output
    Stdout,
    /// fd 2
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// How an entry's text ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// a piece of a longer line, or the stream ended without a newline
    Partial,
    /// `\n`
    Lf,
    /// `\r\n`
    CrLf,
}

/// The on-disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `TIME STREAM P|F TEXT\n` (the kubelet reads it)
    Cri,
    /// `{"log":..,"stream":..,"time":..}\n` (Docker's json-file)
    JsonFile,
}

/// Cuts one stream into entries; keeps an unfinished line between feeds
/// (at most `MAX_LINE + 1` bytes).
#[derive(Debug, Default)]
pub struct Splitter {
    pending: Vec<u8>,
}

/// Emits every entry `buf` completes; returns the bytes consumed. The rest
/// is an unfinished line whose fate the next bytes decide.
fn split(buf: &[u8], emit: &mut dyn FnMut(&[u8], End)) -> usize {
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        let window = &rest[..rest.len().min(MAX_LINE + 2)];
        match window.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let (text, end) = if i > 0 && rest[i - 1] == b'\r' {
                    (&rest[..i - 1], End::CrLf)
                } else {
                    (&rest[..i], End::Lf)
                };
                if text.len() > MAX_LINE {
                    emit(&text[..MAX_LINE], End::Partial);
                    at += MAX_LINE;
                } else {
                    emit(text, end);
                    at += i + 1;
                }
            }
            // No newline in the first MAX_LINE + 2 bytes, or in MAX_LINE + 1
            // bytes not ending with a \r (whose \n may come next): the line
            // is longer than MAX_LINE.
            None if rest.len() > MAX_LINE + 1
                || (rest.len() == MAX_LINE + 1 && rest[MAX_LINE] != b'\r') =>
            {
                emit(&rest[..MAX_LINE], End::Partial);
                at += MAX_LINE;
            }
            None => return at,
        }
    }
}

impl Splitter {
    /// Feeds the next bytes of the stream; `emit(text, end)` gets each
    /// entry they complete, in order.
    pub fn feed(&mut self, mut data: &[u8], emit: &mut dyn FnMut(&[u8], End)) {
        while !self.pending.is_empty() && !data.is_empty() {
            // Enough to settle the pending line: up to its newline, or past
            // MAX_LINE + 1 bytes.
            let room = (2 * MAX_LINE + 2).saturating_sub(self.pending.len());
            let window = &data[..data.len().min(room)];
            let take = window
                .iter()
                .position(|&b| b == b'\n')
                .map_or(window.len(), |i| i + 1);
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            let used = split(&self.pending, emit);
            self.pending.drain(..used);
        }
        if self.pending.is_empty() {
            let used = split(data, emit);
            self.pending.extend_from_slice(&data[used..]);
        }
        if self.pending.is_empty() && self.pending.capacity() > 4096 {
            self.pending = Vec::new();
        }
    }

    /// The stream ended: what is left is a partial entry.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&[u8], End)) {
        if !self.pending.is_empty() {
            emit(&self.pending, End::Partial);
        }
        self.pending = Vec::new();
    }
}

/// `time` as RFC 3339 in UTC with nanoseconds, e.g.
/// `2026-01-02T03:04:05.000000006Z` (both formats' timestamp; fixed width,
/// which RFC3339Nano parsers read).
pub fn timestamp(time: std::time::SystemTime) -> String {
    humantime::format_rfc3339_nanos(time).to_string()
}

/// Appends one entry to `out`. `time` comes from [`timestamp`].
pub fn encode(
    format: Format,
    out: &mut Vec<u8>,
    time: &str,
    stream: Stream,
    text: &[u8],
    end: End,
) {
    match format {
        Format::Cri => {
            let tag = if end == End::Partial { "P" } else { "F" };
            out.reserve(time.len() + text.len() + 12);
            out.extend_from_slice(time.as_bytes());
            out.push(b' ');
            out.extend_from_slice(stream.name().as_bytes());
            out.push(b' ');
            out.extend_from_slice(tag.as_bytes());
            out.push(b' ');
            out.extend_from_slice(text);
            out.push(b'\n');
        }
        Format::JsonFile => {
            out.extend_from_slice(b"{\"log\":");
            let line = String::from_utf8_lossy(text);
            let ending = match end {
                End::Partial => "",
                End::Lf => "\\n",
                End::CrLf => "\\r\\n",
            };
            // Writing JSON into a Vec cannot fail. The ending goes inside
            // the string, escaped, before its closing quote.
            let _ = serde_json::to_writer(&mut *out, &*line);
            out.pop();
            out.extend_from_slice(ending.as_bytes());
            out.push(b'"');
            out.extend_from_slice(b",\"stream\":\"");
            out.extend_from_slice(stream.name().as_bytes());
            out.extend_from_slice(b"\",\"time\":\"");
            out.extend_from_slice(time.as_bytes());
            out.extend_from_slice(b"\"}\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks`, then ends the stream; returns (text, end) pairs.
    fn entries(chunks: &[&[u8]]) -> Vec<(Vec<u8>, End)> {
        let mut out = Vec::new();
        let mut s = Splitter::default();
        let mut emit = |t: &[u8], e: End| out.push((t.to_vec(), e));
        for c in chunks {
            s.feed(c, &mut emit);
        }
        s.finish(&mut emit);
        out
    }

    fn e(text: &str, end: End) -> (Vec<u8>, End) {
        (text.as_bytes().to_vec(), end)
    }

    #[test]
    fn lines_crlf_and_a_partial_end() {
        assert_eq!(
            entries(&[b"a\nbb\r\n\nc\rd\n", b"tail"]),
            [
                e("a", End::Lf),
                e("bb", End::CrLf),
                e("", End::Lf),
                e("c\rd", End::Lf),
                e("tail", End::Partial),
            ]
        );
        // Chunks cut anywhere give the same entries, \r\n cut included.
        let whole = b"one\r\ntwo\nthree\r\n";
        for cut in 0..whole.len() {
            assert_eq!(
                entries(&[&whole[..cut], &whole[cut..]]),
                [
                    e("one", End::CrLf),
                    e("two", End::Lf),
                    e("three", End::CrLf)
                ],
                "cut at {cut}"
            );
        }
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(entries(&bytes).len(), 3);
        assert_eq!(entries(&[b"", b""]), []);
    }

    #[test]
    fn long_lines_are_cut_at_max_line() {
        let x = |n: usize| "x".repeat(n);
        // Exactly MAX_LINE is one full line, with \n or \r\n.
        for ending in ["\n", "\r\n"] {
            let line = format!("{}{ending}", x(MAX_LINE));
            let got = entries(&[line.as_bytes()]);
            assert_eq!(got.len(), 1, "{ending:?}");
            assert_eq!(got[0].0.len(), MAX_LINE);
        }
        // One more byte: a piece and the rest.
        let line = format!("{}y\n", x(MAX_LINE));
        assert_eq!(
            entries(&[line.as_bytes()]),
            [e(&x(MAX_LINE), End::Partial), e("y", End::Lf)]
        );
        // 2.5 pieces in small chunks, then a CRLF line.
        let line = format!("{}abc\r\nz\n", x(2 * MAX_LINE));
        let chunks: Vec<&[u8]> = line.as_bytes().chunks(1000).collect();
        assert_eq!(
            entries(&chunks),
            [
                e(&x(MAX_LINE), End::Partial),
                e(&x(MAX_LINE), End::Partial),
                e("abc", End::CrLf),
                e("z", End::Lf)
            ]
        );
        // A \r at the cut: it waits to see whether \n follows.
        let line = format!("{}\r", x(MAX_LINE));
        assert_eq!(
            entries(&[line.as_bytes(), b"\n"]),
            [e(&x(MAX_LINE), End::CrLf)]
        );
        let line = format!("{}\r", x(MAX_LINE));
        assert_eq!(
            entries(&[line.as_bytes(), b"q\n"]),
            [e(&x(MAX_LINE), End::Partial), e("\rq", End::Lf)]
        );
        // A stream that ends inside a long line.
        let line = x(MAX_LINE + 5);
        assert_eq!(
            entries(&[line.as_bytes()]),
            [e(&x(MAX_LINE), End::Partial), e(&x(5), End::Partial)]
        );
    }

    #[test]
    fn cri_format() {
        let ts = timestamp(std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 5));
        assert_eq!(ts, "2023-11-14T22:13:20.000000005Z");
        let mut out = Vec::new();
        encode(Format::Cri, &mut out, &ts, Stream::Stdout, b"hi", End::Lf);
        encode(
            Format::Cri,
            &mut out,
            &ts,
            Stream::Stderr,
            b"pa",
            End::Partial,
        );
        encode(Format::Cri, &mut out, &ts, Stream::Stderr, b"rt", End::CrLf);
        encode(Format::Cri, &mut out, &ts, Stream::Stdout, b"", End::Lf);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2023-11-14T22:13:20.000000005Z stdout F hi\n\
             2023-11-14T22:13:20.000000005Z stderr P pa\n\
             2023-11-14T22:13:20.000000005Z stderr F rt\n\
             2023-11-14T22:13:20.000000005Z stdout F \n"
        );
    }

    #[test]
    fn json_file_format() {
        let ts = "2023-11-14T22:13:20.000000005Z";
        let mut out = Vec::new();
        let f = Format::JsonFile;
        encode(
            f,
            &mut out,
            ts,
            Stream::Stdout,
            b"say \"hi\"\t<ok>",
            End::Lf,
        );
        encode(f, &mut out, ts, Stream::Stderr, b"dos", End::CrLf);
        encode(
            f,
            &mut out,
            ts,
            Stream::Stdout,
            b"bad \xff\x01",
            End::Partial,
        );
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            text.lines().next().unwrap(),
            r#"{"log":"say \"hi\"\t<ok>\n","stream":"stdout","time":"2023-11-14T22:13:20.000000005Z"}"#
        );
        assert_eq!(lines[1]["log"], "dos\r\n");
        assert_eq!(lines[1]["stream"], "stderr");
        assert_eq!(lines[2]["log"], "bad \u{fffd}\u{1}");
        assert_eq!(lines[2]["time"], ts);
    }
}
