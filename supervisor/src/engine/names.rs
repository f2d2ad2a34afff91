//! Container names and IDs: Docker's rule for names, generated
//! `adjective_noun` names when none is given, 64-hex-digit IDs.

use super::{Error, Result};

const ADJECTIVES: &[&str] = &[
    "agile", "amber", "brave", "bright", "calm", "clever", "cosmic", "crisp", "daring", "eager",
    "fancy", "fearless", "gentle", "glad", "happy", "hardy", "jolly", "keen", "kind", "lively",
    "lucid", "merry", "modest", "nimble", "noble", "patient", "plucky", "polite", "proud", "quiet",
    "quick", "rapid", "sharp", "shiny", "silent", "smart", "snug", "steady", "sturdy", "sunny",
    "swift", "tidy", "vivid", "warm", "wise", "witty", "zealous", "zen",
];

const NOUNS: &[&str] = &[
    "anchor",
    "bay",
    "beacon",
    "buoy",
    "cable",
    "canal",
    "cargo",
    "cove",
    "crane",
    "current",
    "deck",
    "delta",
    "dock",
    "ferry",
    "fjord",
    "harbor",
    "hull",
    "inlet",
    "isle",
    "jetty",
    "keel",
    "lagoon",
    "lantern",
    "lighthouse",
    "mast",
    "mooring",
    "oar",
    "pier",
    "pilot",
    "port",
    "quay",
    "reef",
    "rudder",
    "sail",
    "schooner",
    "shoal",
    "skiff",
    "sloop",
    "sound",
    "strait",
    "tide",
    "tug",
    "wharf",
    "wave",
    "yawl",
];

/// A fresh container ID: 64 hex digits.
pub(super) fn new_id() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, at most 128 characters
/// (one character is allowed too).
pub(super) fn validate(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(Error::InvalidArgument(format!(
            "container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    Ok(())
}

/// A generated name none of `taken` holds: `adjective_noun`, with a
/// number appended when every plain one is taken.
pub(super) fn generate(taken: &dyn Fn(&str) -> bool) -> String {
    let seed = uuid::Uuid::new_v4().as_u128();
    let (a, n) = (ADJECTIVES.len() as u128, NOUNS.len() as u128);
    for i in 0..(a * n) {
        let k = (seed + i * 7919) % (a * n);
        let name = format!(
            "{}_{}",
            ADJECTIVES[(k / n) as usize],
            NOUNS[(k % n) as usize]
        );
        if !taken(&name) {
            return name;
        }
    }
    let mut i = 2u64;
    loop {
        let name = format!("{}_{}{i}", ADJECTIVES[0], NOUNS[0]);
        if !taken(&name) {
            return name;
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["web", "a", "web-1.x_y", "0abc"] {
            validate(ok).unwrap();
        }
        for bad in ["", "-web", "we b", "a/b", "é", &"x".repeat(129)] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
        let id = new_id();
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn generated_names_avoid_taken_ones() {
        let first = generate(&|_| false);
        assert!(first.contains('_'));
        validate(&first).unwrap();
        let other = generate(&|n| n == first);
        assert_ne!(other, first);
        // everything taken but numbered ones
        let n = generate(&|n| !n.ends_with(|c: char| c.is_ascii_digit()));
        assert!(n.ends_with('2'), "{n}");
    }
}
