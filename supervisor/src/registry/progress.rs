//! What a pull or push reports while it runs: a snapshot of every blob's
//! state and bytes, shared through a `tokio::sync::watch` channel so late
//! joiners see the current state at once.

use std::sync::Arc;

use super::Error;

/// Where a whole pull or push is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Fetching manifests, choosing the platform.
    #[default]
    Resolving,
    /// Moving blobs.
    Transferring,
    /// Applying layers into snapshots.
    Unpacking,
    /// Finished: `Progress::image` holds the result.
    Done,
    /// Failed: `Progress::error` says why.
    Failed,
}

/// What kind of blob a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// An index (manifest list).
    Index,
    /// An image manifest.
    Manifest,
    /// The image config.
    Config,
    /// A layer.
    Layer,
}

/// Where one blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobState {
    /// Not started.
    Waiting,
    /// Bytes are moving.
    Transferring,
    /// Already present (locally for a pull, remotely for a push): skipped.
    Exists,
    /// All bytes moved and verified.
    Done,
    /// Being unpacked into a snapshot.
    Unpacking,
    /// Unpacked.
    Unpacked,
    /// Failed.
    Failed,
}

/// One blob's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobProgress {
    /// Its digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// What it is.
    pub kind: BlobKind,
    /// Where it is.
    pub state: BlobState,
    /// Bytes present so far (including those resumed).
    pub offset: u64,
    /// Its size.
    pub total: u64,
    /// Where this transfer started (non-zero: resumed an interrupted one).
    pub resumed_from: u64,
}

/// The result of a finished pull or push.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Finished {
    /// The image name recorded (pull) or the remote reference (push).
    pub name: String,
    /// Digest of the image's target (index or manifest).
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its size.
    pub size: u64,
    /// Digest of the platform manifest used.
    pub manifest_digest: String,
    /// The platform chosen.
    pub platform: String,
    /// Chain ID of the top layer once unpacked (empty when not unpacked).
    pub chain_id: String,
}

/// A snapshot of one pull or push.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Where it is.
    pub phase: Phase,
    /// Every blob known so far, in discovery order.
    pub blobs: Vec<BlobProgress>,
    /// Set when `phase` is Done.
    pub finished: Option<Finished>,
    /// Set when `phase` is Failed.
    pub error: Option<Arc<Error>>,
}

impl Progress {
    /// Whether nothing more will change.
    pub fn is_terminal(&self) -> bool {
        matches!(self.phase, Phase::Done | Phase::Failed)
    }

    /// Bytes present over bytes expected, over all blobs.
    pub fn totals(&self) -> (u64, u64) {
        self.blobs
            .iter()
            .fold((0, 0), |(d, t), b| (d + b.offset.min(b.total), t + b.total))
    }
}

/// The writing end, cheap to clone.
#[derive(Clone)]
pub struct Reporter {
    tx: Arc<tokio::sync::watch::Sender<Progress>>,
}

impl Reporter {
    /// A reporter and its first receiver.
    pub fn new() -> (Self, tokio::sync::watch::Receiver<Progress>) {
        let (tx, rx) = tokio::sync::watch::channel(Progress::default());
        (Self { tx: Arc::new(tx) }, rx)
    }

    /// Another receiver, seeing the current state at once.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Progress> {
        self.tx.subscribe()
    }

    /// Sets the phase.
    pub fn phase(&self, phase: Phase) {
        self.tx.send_modify(|p| p.phase = phase);
    }

    /// Adds a blob row unless one with that digest exists.
    pub fn add(&self, digest: &str, media_type: &str, kind: BlobKind, total: u64) {
        self.tx.send_modify(|p| {
            if !p.blobs.iter().any(|b| b.digest == digest) {
                p.blobs.push(BlobProgress {
                    digest: digest.to_string(),
                    media_type: media_type.to_string(),
                    kind,
                    state: BlobState::Waiting,
                    offset: 0,
                    total,
                    resumed_from: 0,
                });
            }
        });
    }

    /// Updates a blob row.
    pub fn update(&self, digest: &str, f: impl FnOnce(&mut BlobProgress)) {
        self.tx.send_modify(|p| {
            if let Some(b) = p.blobs.iter_mut().find(|b| b.digest == digest) {
                f(b);
            }
        });
    }

    /// Sets a blob's state.
    pub fn state(&self, digest: &str, state: BlobState) {
        self.update(digest, |b| {
            b.state = state;
            if matches!(state, BlobState::Done | BlobState::Exists) {
                b.offset = b.total;
            }
        });
    }

    /// Ends with a result.
    pub fn finish(&self, result: Result<Finished, Error>) {
        self.tx.send_modify(|p| match result {
            Ok(f) => {
                p.phase = Phase::Done;
                p.finished = Some(f);
            }
            Err(e) => {
                p.phase = Phase::Failed;
                p.error = Some(Arc::new(e));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_subscribers_see_the_current_state_and_the_end() {
        let (r, _first) = Reporter::new();
        r.add("sha256:a", "m", BlobKind::Layer, 10);
        r.add("sha256:a", "m", BlobKind::Layer, 10); // no duplicate rows
        r.add("sha256:b", "m", BlobKind::Layer, 5);
        r.update("sha256:a", |b| b.offset = 4);
        let late = r.subscribe();
        assert_eq!(late.borrow().blobs.len(), 2);
        assert_eq!(late.borrow().totals(), (4, 15));
        r.state("sha256:b", BlobState::Exists);
        assert_eq!(late.borrow().totals(), (9, 15));
        assert!(!late.borrow().is_terminal());
        r.finish(Err(Error::NotFound("x".into())));
        let p = late.borrow().clone();
        assert_eq!(p.phase, Phase::Failed);
        assert!(p.is_terminal() && p.error.is_some());
    }
}
