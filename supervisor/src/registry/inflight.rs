//! Pulls in flight: a second caller asking for the same pull (same
//! namespace, reference, platform, options and credentials) joins the
//! running one and follows its progress instead of downloading again.
//! A pull runs in its own task, so it completes (and commits) even when
//! every caller has gone away.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::progress::{Progress, Reporter};
use super::pull::{self, Deps, Request};
use super::push;

/// Starts pulls and pushes, sharing identical pulls.
#[derive(Clone)]
pub struct Transfers {
    deps: Deps,
    pulls: Arc<Mutex<HashMap<String, Reporter>>>,
}

fn key(ns: &str, req: &Request) -> String {
    format!(
        "{ns}\n{}\n{}\n{}\n{}\n{}\n{}",
        req.reference,
        req.platform,
        req.plain_http,
        req.unpack,
        req.snapshotter,
        req.credentials.fingerprint()
    )
}

impl Transfers {
    /// Transfers over `deps`.
    pub fn new(deps: Deps) -> Self {
        Self {
            deps,
            pulls: Arc::default(),
        }
    }

    /// How many distinct pulls are running.
    pub fn pulls_in_flight(&self) -> usize {
        self.pulls.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Starts `req` in `ns`, or joins the identical pull already running.
    /// Returns its progress (ending in Done or Failed) and whether it was
    /// joined.
    pub fn pull(&self, ns: &str, req: Request) -> (watch::Receiver<Progress>, bool) {
        let k = key(ns, &req);
        let mut map = match self.pulls.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(r) = map.get(&k) {
            tracing::debug!(namespace = ns, reference = %req.reference, "joining pull in flight");
            return (r.subscribe(), true);
        }
        let (reporter, rx) = Reporter::new();
        map.insert(k.clone(), reporter.clone());
        drop(map);
        let (deps, pulls, ns) = (self.deps.clone(), self.pulls.clone(), ns.to_string());
        tokio::spawn(async move {
            let result = pull::pull(&deps, &ns, &req, &reporter).await;
            // Leave the map first: a caller arriving after this starts a
            // new pull instead of joining a finished one.
            if let Ok(mut m) = pulls.lock() {
                m.remove(&k);
            }
            reporter.finish(result);
        });
        (rx, false)
    }

    /// Starts a push of `req` in `ns`.
    pub fn push(&self, ns: &str, req: push::Request) -> watch::Receiver<Progress> {
        let (reporter, rx) = Reporter::new();
        let (deps, ns) = (self.deps.clone(), ns.to_string());
        tokio::spawn(async move {
            let result = push::push(&deps, &ns, &req, &reporter).await;
            reporter.finish(result);
        });
        rx
    }
}
