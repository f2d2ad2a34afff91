//! Reading a container's json-file log (what its shim writes, see the
//! shim's `logfile`): every file of the rotation, oldest first (`PATH.N`
//! ... `PATH.1`, `PATH`), the last N lines only, a time window, one or
//! both streams, and following it while a run lasts.
//!
//! Following: at the end of the file the reader waits (polling, from 2 ms
//! up to 50 ms) for more; when the shim rotates (`PATH` renamed to
//! `PATH.1`, a new `PATH` started) it finishes the renamed file through
//! the descriptor it holds, then opens the new one. It stops once the run
//! it follows has ended (the monitor reports that only after the task is
//! deleted, so the shim has written everything) and the file is drained.
//!
//! Entries are parsed by a fast path for the shim's exact layout
//! (`{"log":"..","stream":"..","time":".."}`), with serde as the fallback
//! for anything else a json-file may hold.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::RunMark;

/// Which output stream an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// fd 1 (and a terminal's output)
    Stdout,
    /// fd 2
    Stderr,
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Its stream.
    pub stream: LogStream,
    /// When the shim read it, in nanoseconds since the epoch.
    pub time: i64,
    /// The bytes, with their newline.
    pub data: Vec<u8>,
}

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Only the last N lines (before following).
    pub tail: Option<u64>,
    /// Only entries at or after this time (ns since the epoch).
    pub since: Option<i64>,
    /// Only entries before this time.
    pub until: Option<i64>,
    /// stdout entries (both false: both streams).
    pub stdout: bool,
    /// stderr entries.
    pub stderr: bool,
    /// Follow until run N of the container has ended (None: read to the
    /// end and stop).
    pub follow_run: Option<u64>,
    /// Start at this offset of the newest file (attach: its length when
    /// attaching, so only what comes next is read).
    pub start_offset: Option<u64>,
    /// Lines of one stream in a row may become one entry (the first's
    /// time): for clients that show no times, far fewer and larger
    /// entries to encode and write.
    pub coalesce: bool,
}

/// How many data bytes one batch holds at most.
const BATCH_BYTES: usize = 128 * 1024;
/// Read size.
const CHUNK: usize = 256 * 1024;

/// The files of a log, oldest first.
fn files(path: &Path) -> Vec<PathBuf> {
    let mut older = Vec::new();
    for i in 1.. {
        let p = PathBuf::from(format!("{}.{i}", path.display()));
        if !p.exists() {
            break;
        }
        older.push(p);
    }
    older.reverse();
    older.push(path.to_path_buf());
    older
}

/// Where the last `n` lines of `files` start: (file index, offset).
fn tail_start(files: &[PathBuf], n: u64) -> (usize, u64) {
    if n == 0 {
        let last = files.len() - 1;
        let len = std::fs::metadata(&files[last])
            .map(|m| m.len())
            .unwrap_or(0);
        return (last, len);
    }
    let mut need = n;
    for (i, p) in files.iter().enumerate().rev() {
        let Ok(mut f) = File::open(p) else { continue };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut end = len;
        // The file's last byte is a line's newline: it does not start one.
        let mut skip_last = true;
        let mut buf = vec![0u8; 64 * 1024];
        while end > 0 {
            let start = end.saturating_sub(buf.len() as u64);
            let chunk = &mut buf[..(end - start) as usize];
            if f.seek(SeekFrom::Start(start)).is_err() || f.read_exact(chunk).is_err() {
                break;
            }
            for (j, b) in chunk.iter().enumerate().rev() {
                if *b != b'\n' {
                    continue;
                }
                if skip_last && start + j as u64 == len - 1 {
                    skip_last = false;
                    continue;
                }
                need -= 1;
                if need == 0 {
                    return (i, start + j as u64 + 1);
                }
            }
            skip_last = false;
            end = start;
        }
        // the file's first line counts too
        if len > 0 {
            need -= 1;
            if need == 0 {
                return (i, 0);
            }
        }
    }
    (0, 0)
}

/// Nanoseconds since the epoch of `2026-01-02T03:04:05.000000006Z`.
pub(super) fn parse_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let fast = b.len() == 30
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[29] == b'Z';
    if fast {
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let mut v = 0i64;
            for &c in &b[r] {
                if !c.is_ascii_digit() {
                    return None;
                }
                v = v * 10 + (c - b'0') as i64;
            }
            Some(v)
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, se, ns) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..29)?);
        let days = days_from_civil(y, mo, d);
        return Some(((days * 86400 + h * 3600 + mi * 60 + se) * 1_000_000_000) + ns);
    }
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(d.as_nanos() as i64)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Appends the JSON string body starting at `s` (after its opening
/// quote) unescaped to `out`; returns the bytes consumed with the closing
/// quote.
fn unescape(s: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    let mut i = 0;
    let mut run = 0;
    while i < s.len() {
        match s[i] {
            b'"' => {
                out.extend_from_slice(&s[run..i]);
                return Some(i + 1);
            }
            b'\\' => {
                out.extend_from_slice(&s[run..i]);
                let e = *s.get(i + 1)?;
                i += 2;
                match e {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'"' | b'\\' | b'/' => out.push(e),
                    b'u' => {
                        let hex = |at: usize| -> Option<u32> {
                            let h = std::str::from_utf8(s.get(at..at + 4)?).ok()?;
                            u32::from_str_radix(h, 16).ok()
                        };
                        let mut cp = hex(i)?;
                        i += 4;
                        if (0xD800..0xDC00).contains(&cp) && s.get(i..i + 2) == Some(b"\\u") {
                            let lo = hex(i + 2)?;
                            if (0xDC00..0xE000).contains(&lo) {
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                i += 6;
                            }
                        }
                        let c = char::from_u32(cp).unwrap_or('\u{FFFD}');
                        let mut b = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                    }
                    _ => return None,
                }
                run = i;
            }
            _ => i += 1,
        }
    }
    None
}

/// Parses one json-file line (without its newline): appends its data to
/// `out` and answers its stream and time (on failure `out` is as it was).
pub(super) fn parse_into(line: &[u8], out: &mut Vec<u8>) -> Option<(LogStream, i64)> {
    const HEAD: &[u8] = b"{\"log\":\"";
    let mark = out.len();
    if let Some(rest) = line.strip_prefix(HEAD) {
        if let Some(used) = unescape(rest, out) {
            let rest = &rest[used..];
            let stream = match rest.strip_prefix(b",\"stream\":\"stdout\"") {
                Some(r) => Some((LogStream::Stdout, r)),
                None => rest
                    .strip_prefix(b",\"stream\":\"stderr\"")
                    .map(|r| (LogStream::Stderr, r)),
            };
            if let Some((stream, rest)) = stream {
                if let Some(t) = rest
                    .strip_prefix(b",\"time\":\"")
                    .and_then(|r| r.strip_suffix(b"\"}"))
                {
                    if let Some(time) = std::str::from_utf8(t).ok().and_then(parse_time) {
                        return Some((stream, time));
                    }
                }
            }
        }
        out.truncate(mark);
    }
    let e = parse_slow(line)?;
    out.extend_from_slice(&e.data);
    Some((e.stream, e.time))
}

/// Parses one json-file line (without its newline).
#[cfg(test)]
pub(super) fn parse_line(line: &[u8]) -> Option<LogEntry> {
    let mut data = Vec::with_capacity(line.len());
    let (stream, time) = parse_into(line, &mut data)?;
    Some(LogEntry { stream, time, data })
}

fn parse_slow(line: &[u8]) -> Option<LogEntry> {
    #[derive(serde::Deserialize)]
    struct Raw {
        log: String,
        stream: String,
        time: String,
    }
    let r: Raw = serde_json::from_slice(line).ok()?;
    Some(LogEntry {
        stream: if r.stream == "stderr" {
            LogStream::Stderr
        } else {
            LogStream::Stdout
        },
        time: parse_time(&r.time)?,
        data: r.log.into_bytes(),
    })
}

/// Reads a log as `q` asks, sending batches to `tx` until done or the
/// receiver goes away. Blocking: run it on a blocking thread.
pub(super) fn read(
    path: &Path,
    q: &LogQuery,
    mut runs: watch::Receiver<RunMark>,
    tx: mpsc::Sender<Vec<LogEntry>>,
) {
    let mut r = Reader {
        q,
        tx,
        batch: Vec::new(),
        batch_bytes: 0,
        pending: Vec::new(),
        gone: false,
    };
    let list = files(path);
    let (first, offset) = if let Some(at) = q.start_offset {
        (list.len() - 1, at)
    } else {
        match q.tail {
            Some(n) => tail_start(&list, n),
            None => (0, 0),
        }
    };
    let mut current: Option<(File, u64)> = None;
    for (i, p) in list.iter().enumerate().skip(first) {
        let Ok(mut f) = File::open(p) else { continue };
        if i == first && offset > 0 && f.seek(SeekFrom::Start(offset)).is_err() {
            continue;
        }
        r.drain(&mut f);
        if r.gone {
            return;
        }
        if i == list.len() - 1 {
            let ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
            current = Some((f, ino));
        }
    }
    r.flush();
    let Some(run) = q.follow_run else { return };
    let ended = |m: &RunMark| m.removed || m.run > run || (m.run == run && !m.running);
    let mut nap = Duration::from_millis(2);
    loop {
        if r.gone {
            return;
        }
        let was_ended = ended(&runs.borrow_and_update());
        let got = match current.as_mut() {
            Some((f, _)) => r.drain(f),
            None => 0,
        };
        // rotated: finish the old file (done above), then the new one
        let now_ino = std::fs::metadata(path).map(|m| m.ino()).ok();
        let rotated = match (&current, now_ino) {
            (Some((_, ino)), Some(n)) => *ino != n,
            (None, Some(_)) => true,
            _ => false,
        };
        if rotated {
            // what the shim wrote between the drain above and its rename
            if let Some((f, _)) = current.as_mut() {
                r.drain(f);
            }
            if let Ok(f) = File::open(path) {
                let ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
                current = Some((f, ino));
                r.pending.clear();
                continue;
            }
        }
        r.flush();
        if got > 0 {
            nap = Duration::from_millis(2);
            continue;
        }
        if was_ended {
            return;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(50));
    }
}

struct Reader<'a> {
    q: &'a LogQuery,
    tx: mpsc::Sender<Vec<LogEntry>>,
    batch: Vec<LogEntry>,
    batch_bytes: usize,
    /// a line the file does not end yet
    pending: Vec<u8>,
    /// the receiver went away
    gone: bool,
}

impl Reader<'_> {
    /// Reads `f` to its end; returns the bytes read.
    fn drain(&mut self, f: &mut File) -> usize {
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0;
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => n,
            };
            total += n;
            let mut data = &buf[..n];
            if !self.pending.is_empty() {
                match data.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.pending.extend_from_slice(&data[..i]);
                        let line = std::mem::take(&mut self.pending);
                        self.line(&line);
                        data = &data[i + 1..];
                    }
                    None => {
                        self.pending.extend_from_slice(data);
                        continue;
                    }
                }
            }
            let mut start = 0;
            for (i, b) in data.iter().enumerate() {
                if *b == b'\n' {
                    self.line(&data[start..i]);
                    start = i + 1;
                }
            }
            self.pending.extend_from_slice(&data[start..]);
            if self.gone {
                return total;
            }
        }
    }

    fn line(&mut self, line: &[u8]) {
        if line.is_empty() {
            return;
        }
        let q = self.q;
        // Decode into the batch's last entry when it may grow, else into
        // a new one; a line the query does not want is cut off again.
        let grow = q.coalesce && !self.batch.is_empty();
        let mut fresh = Vec::new();
        let (buf, mark) = match self.batch.last_mut() {
            Some(last) if grow => {
                let mark = last.data.len();
                (&mut last.data, mark)
            }
            _ => {
                fresh.reserve(line.len());
                (&mut fresh, 0)
            }
        };
        let Some((stream, time)) = parse_into(line, buf) else {
            return;
        };
        let want = match stream {
            LogStream::Stdout => q.stdout || !q.stderr,
            LogStream::Stderr => q.stderr || !q.stdout,
        } && q.since.is_none_or(|s| time >= s)
            && q.until.is_none_or(|u| time < u);
        let n = buf.len() - mark;
        if !want {
            buf.truncate(mark);
            return;
        }
        if grow {
            let last = self.batch.last_mut().expect("grow: a last entry");
            if last.stream != stream {
                // another stream: the bytes go to an entry of their own
                let data = last.data.split_off(mark);
                self.batch.push(LogEntry { stream, time, data });
            }
        } else {
            self.batch.push(LogEntry {
                stream,
                time,
                data: fresh,
            });
        }
        self.batch_bytes += n;
        if self.batch_bytes >= BATCH_BYTES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.batch.is_empty() || self.gone {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        if self.tx.blocking_send(batch).is_err() {
            self.gone = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, stream: &str, t: &str) -> String {
        format!(
            "{{\"log\":{},\"stream\":\"{stream}\",\"time\":\"{t}\"}}\n",
            serde_json::to_string(text).unwrap()
        )
    }

    #[test]
    fn parses_the_shims_lines_and_others() {
        let t = "2026-01-02T03:04:05.000000006Z";
        let e = parse_line(
            line("a \"q\" \\ é\u{1F600}\n", "stderr", t)
                .trim_end()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(e.stream, LogStream::Stderr);
        assert_eq!(
            String::from_utf8(e.data).unwrap(),
            "a \"q\" \\ é\u{1F600}\n"
        );
        let want = humantime::parse_rfc3339(t)
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        assert_eq!(e.time, want);
        // another key order goes through serde
        let other = format!("{{\"stream\":\"stdout\",\"time\":\"{t}\",\"log\":\"x\\u0001\\n\"}}");
        let e = parse_line(other.as_bytes()).unwrap();
        assert_eq!(e.data, b"x\x01\n");
        assert!(parse_line(b"{\"log\":\"unterminated").is_none());
        assert_eq!(
            parse_time("1970-01-01T00:00:01.000000002Z"),
            Some(1_000_000_002)
        );
    }

    #[test]
    fn tail_and_rotation_order() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c-json.log");
        let t = "2026-01-02T03:04:05.000000006Z";
        std::fs::write(format!("{}.2", p.display()), line("1\n", "stdout", t)).unwrap();
        std::fs::write(
            format!("{}.1", p.display()),
            line("2\n", "stdout", t) + &line("3\n", "stderr", t),
        )
        .unwrap();
        std::fs::write(&p, line("4\n", "stdout", t) + &line("5\n", "stdout", t)).unwrap();
        let all = |q: LogQuery| {
            let (tx, mut rx) = mpsc::channel(16);
            let (_w, runs) = watch::channel(RunMark::default());
            read(&p, &q, runs, tx);
            let mut out = String::new();
            while let Ok(b) = rx.try_recv() {
                for e in b {
                    out.push_str(&String::from_utf8(e.data).unwrap());
                }
            }
            out
        };
        assert_eq!(all(LogQuery::default()), "1\n2\n3\n4\n5\n");
        let tail = |n| LogQuery {
            tail: Some(n),
            ..Default::default()
        };
        assert_eq!(all(tail(2)), "4\n5\n");
        assert_eq!(all(tail(3)), "3\n4\n5\n");
        assert_eq!(all(tail(5)), "1\n2\n3\n4\n5\n");
        assert_eq!(all(tail(50)), "1\n2\n3\n4\n5\n");
        assert_eq!(all(tail(0)), "");
        let errs = LogQuery {
            stderr: true,
            ..Default::default()
        };
        assert_eq!(all(errs), "3\n");
        // coalesced: one entry per run of a stream, the same bytes
        let (tx, mut rx) = mpsc::channel(16);
        let (_w, runs) = watch::channel(RunMark::default());
        let q = LogQuery {
            coalesce: true,
            ..Default::default()
        };
        read(&p, &q, runs, tx);
        let b = rx.try_recv().unwrap();
        let got: Vec<(LogStream, &[u8])> =
            b.iter().map(|e| (e.stream, e.data.as_slice())).collect();
        assert_eq!(
            got,
            vec![
                (LogStream::Stdout, &b"1\n2\n"[..]),
                (LogStream::Stderr, &b"3\n"[..]),
                (LogStream::Stdout, &b"4\n5\n"[..]),
            ]
        );
    }
}
