//! Progress of a server-side pull or push as people read it: one line per
//! blob, its state in words (waiting, downloading, already exists,
//! downloaded, unpacking, unpacked, failed) and the rate its bytes moved
//! at, under a line for the whole transfer. Drawn only when stderr is a
//! terminal.
//!
//! A rate counts only the bytes this call moved, over the time they were
//! moving: a blob that already exists, or the part of a resumed blob that
//! was already there, jumps to full without a spike of gigabytes per
//! second, and a finished blob keeps its average instead of decaying while
//! the others unpack. No rate is shown before half a second of movement.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use berth_api::berth_images::v1::{BlobState, RegistryBlob, TransferState};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::human_size;

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// registry to berthd
    Pull,
    /// berthd to registry
    Push,
}

/// A blob's state in words.
fn blob_word(dir: Direction, state: BlobState) -> &'static str {
    match (state, dir) {
        (BlobState::Waiting, _) => "waiting",
        (BlobState::Active, Direction::Pull) => "downloading",
        (BlobState::Active, Direction::Push) => "uploading",
        (BlobState::Exists, _) => "already exists",
        (BlobState::Complete, Direction::Pull) => "downloaded",
        (BlobState::Complete, Direction::Push) => "pushed",
        (BlobState::BlobUnpacking, _) => "unpacking",
        (BlobState::Unpacked, _) => "unpacked",
        (BlobState::Failed, _) => "failed",
    }
}

/// The whole transfer's state in words.
fn transfer_word(dir: Direction, state: TransferState) -> &'static str {
    match (state, dir) {
        (TransferState::Resolving, _) => "resolving",
        (TransferState::Transferring, Direction::Pull) => "downloading",
        (TransferState::Transferring, Direction::Push) => "uploading",
        (TransferState::Unpacking, _) => "unpacking",
        (TransferState::Done, _) => "done",
    }
}

/// Shortest time over which a rate means something.
const MIN_ELAPSED: Duration = Duration::from_millis(500);

/// Bytes moved over the time they were moving.
#[derive(Debug, Default, Clone, Copy)]
struct Meter {
    /// when movement was first seen, and the offset then
    start: Option<(Instant, i64)>,
    /// the latest offset seen while moving
    last: i64,
    /// when movement stopped (the blob finished or failed)
    end: Option<Instant>,
}

impl Meter {
    /// Records `offset` at `now`; `moving` while bytes are in flight.
    fn observe(&mut self, now: Instant, offset: i64, moving: bool) {
        if moving {
            if self.start.is_none() {
                self.start = Some((now, offset));
            }
            self.last = offset;
            self.end = None;
        } else if self.start.is_some() && self.end.is_none() {
            self.last = self.last.max(offset);
            self.end = Some(now);
        }
    }

    /// Bytes this call moved.
    fn moved(&self) -> i64 {
        self.start.map(|(_, o)| (self.last - o).max(0)).unwrap_or(0)
    }

    /// Bytes per second, once it means something.
    fn rate(&self, now: Instant) -> Option<f64> {
        let (t0, _) = self.start?;
        let elapsed = self.end.unwrap_or(now).saturating_duration_since(t0);
        let moved = self.moved();
        (elapsed >= MIN_ELAPSED && moved > 0).then(|| moved as f64 / elapsed.as_secs_f64())
    }
}

/// A rate for people: `12.3 MiB/s`; empty when there is none.
fn rate_text(rate: Option<f64>) -> String {
    rate.map(|r| format!("{}/s", human_size(r as i64)))
        .unwrap_or_default()
}

/// The first 12 hex digits of a digest.
fn short(digest: &str) -> String {
    let hex = digest.split_once(':').map(|(_, h)| h).unwrap_or(digest);
    hex.chars().take(12).collect()
}

fn bar(multi: &MultiProgress, total: Option<u64>) -> ProgressBar {
    let b = multi.add(ProgressBar::with_draw_target(
        total,
        ProgressDrawTarget::stderr(),
    ));
    style(&b, total.is_some());
    b.enable_steady_tick(Duration::from_millis(120));
    b
}

fn style(bar: &ProgressBar, known_total: bool) {
    let template = if known_total {
        "{msg:<34!} [{bar:30.cyan/blue}] {bytes:>10}/{total_bytes:<10} {prefix}"
    } else {
        "{spinner} {msg:<32!} {bytes:>10} {prefix}"
    };
    if let Ok(s) = ProgressStyle::with_template(template) {
        bar.set_style(s.progress_chars("=> "));
    }
}

/// One blob's bar and meter.
struct Blob {
    bar: ProgressBar,
    meter: Meter,
}

/// Per-blob bars under one bar for the whole transfer (only when stderr
/// is a terminal; otherwise every call does nothing).
pub struct Bars {
    dir: Direction,
    multi: Option<MultiProgress>,
    total: Option<ProgressBar>,
    blobs: HashMap<String, Blob>,
}

impl Bars {
    /// Bars for a transfer going `dir`.
    pub fn new(dir: Direction) -> Self {
        let multi = crate::progress::multi();
        let total = multi.as_ref().map(|m| bar(m, None));
        Self {
            dir,
            multi,
            total,
            blobs: HashMap::new(),
        }
    }

    /// Draws one progress message.
    pub fn update(&mut self, state: i32, blobs: &[RegistryBlob], done: i64, total: i64) {
        let Some(multi) = &self.multi else { return };
        let now = Instant::now();
        for b in blobs {
            let entry = self.blobs.entry(b.digest.clone()).or_insert_with(|| Blob {
                bar: bar(multi, (b.total > 0).then_some(b.total as u64)),
                meter: Meter::default(),
            });
            if b.total > 0 && entry.bar.length() != Some(b.total as u64) {
                entry.bar.set_length(b.total as u64);
                style(&entry.bar, true);
            }
            let blob_state = BlobState::try_from(b.state).unwrap_or(BlobState::Waiting);
            entry
                .meter
                .observe(now, b.offset, blob_state == BlobState::Active);
            entry.bar.set_position(b.offset.max(0) as u64);
            entry.bar.set_message(format!(
                "{} {} {}",
                b.kind,
                short(&b.digest),
                blob_word(self.dir, blob_state)
            ));
            entry.bar.set_prefix(rate_text(entry.meter.rate(now)));
        }
        if let Some(t) = &self.total {
            if total > 0 && t.length() != Some(total as u64) {
                t.set_length(total as u64);
                style(t, true);
            }
            t.set_position(done.max(0) as u64);
            let state = TransferState::try_from(state).unwrap_or(TransferState::Resolving);
            t.set_message(format!("total: {}", transfer_word(self.dir, state)));
            t.set_prefix(rate_text(total_rate(
                self.blobs.values().map(|b| &b.meter),
                now,
            )));
        }
    }

    /// Clears the bars.
    pub fn finish(self) {
        for b in self.blobs.values() {
            b.bar.finish_and_clear();
        }
        if let Some(t) = self.total {
            t.finish_and_clear();
        }
    }
}

/// The whole transfer's rate: every blob's moved bytes over the time from
/// the first movement to now (or to the last blob's end, once none moves).
fn total_rate<'a>(meters: impl Iterator<Item = &'a Meter>, now: Instant) -> Option<f64> {
    let mut first: Option<Instant> = None;
    let mut last_end: Option<Instant> = None;
    let mut moving = false;
    let mut moved = 0;
    for m in meters {
        let Some((t0, _)) = m.start else { continue };
        first = Some(first.map_or(t0, |f| f.min(t0)));
        match m.end {
            Some(e) => last_end = Some(last_end.map_or(e, |l| l.max(e))),
            None => moving = true,
        }
        moved += m.moved();
    }
    let end = if moving { now } else { last_end? };
    let elapsed = end.saturating_duration_since(first?);
    (elapsed >= MIN_ELAPSED && moved > 0).then(|| moved as f64 / elapsed.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_as_words() {
        assert_eq!(blob_word(Direction::Pull, BlobState::Active), "downloading");
        assert_eq!(blob_word(Direction::Push, BlobState::Active), "uploading");
        assert_eq!(
            blob_word(Direction::Pull, BlobState::Exists),
            "already exists"
        );
        assert_eq!(
            blob_word(Direction::Pull, BlobState::BlobUnpacking),
            "unpacking"
        );
        assert_eq!(transfer_word(Direction::Push, TransferState::Done), "done");
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
    }

    #[test]
    fn rates_count_moved_bytes_over_moving_time() {
        let t0 = Instant::now();
        let s = |ms| t0 + Duration::from_millis(ms);
        // A blob that already exists never moves: no rate, however fast
        // it jumped to full.
        let mut exists = Meter::default();
        exists.observe(s(0), 0, false);
        exists.observe(s(1), 1 << 30, false);
        assert_eq!(exists.rate(s(2000)), None);

        // Resumed at 8 MiB, moved 2 MiB more in one second.
        let mut m = Meter::default();
        m.observe(s(0), 8 << 20, true);
        assert_eq!(m.rate(s(100)), None, "too early to say");
        m.observe(s(1000), 10 << 20, true);
        assert_eq!(m.rate(s(1000)), Some((2 << 20) as f64));
        // Finished: the average stays while time passes.
        m.observe(s(1000), 10 << 20, false);
        assert_eq!(m.rate(s(60_000)), Some((2 << 20) as f64));
        assert_eq!(rate_text(m.rate(s(60_000))), "2.0 MiB/s");

        // The total: both blobs' moved bytes over the span they moved in.
        let mut other = Meter::default();
        other.observe(s(500), 0, true);
        other.observe(s(2000), 4 << 20, true);
        let r = total_rate([m, other, exists].iter(), s(2000)).unwrap();
        assert_eq!(r, (6 << 20) as f64 / 2.0);
        assert_eq!(total_rate([exists].iter(), s(5000)), None);
    }
}
