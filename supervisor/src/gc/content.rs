//! What collection reads from its neighbours: content records, container
//! records, and lease expiry times.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Error, Node};
use crate::services::Context;
use crate::store::labels::Labels;

/// Every content record of every namespace: (namespace, digest, labels).
pub(super) async fn list_all(ctx: &Context) -> Result<Vec<(String, String, Labels)>, Error> {
    let content = ctx.content.clone();
    let all = tokio::task::spawn_blocking(move || content.list_all())
        .await
        .map_err(|e| Error::Content(e.to_string()))?
        .map_err(|e| Error::Content(e.to_string()))?;
    Ok(all
        .into_iter()
        .map(|(ns, i)| (ns, i.digest.to_string(), i.labels))
        .collect())
}

/// Removes the content record `digest` of `ns` (and the blob when no
/// namespace holds it any more). False when it was already gone.
pub(super) async fn delete(ctx: &Context, ns: &str, digest: &str) -> Result<bool, Error> {
    let Ok(d) = digest.parse::<berth_api::Digest>() else {
        return Ok(false);
    };
    match ctx.content.delete(ns, &d).await {
        Ok(()) => Ok(true),
        Err(crate::content::Error::NotFound(_)) => Ok(false),
        Err(e) => Err(Error::Content(e.to_string())),
    }
}

/// The snapshots container records name.
pub(super) fn container_roots(ctx: &Context) -> Result<Vec<Node>, Error> {
    let mut out = Vec::new();
    for ns in crate::store::namespaces::list(&ctx.store)? {
        for c in crate::store::containers::list(&ctx.store, &ns.name)? {
            if !c.snapshotter.is_empty() && !c.snapshot_key.is_empty() {
                out.push(Node::snapshot(&ns.name, &c.snapshotter, &c.snapshot_key));
            }
            out.extend(super::mark::label_refs(&ns.name, &c.labels));
        }
    }
    Ok(out)
}

/// Parses an RFC 3339 time (`2024-01-02T03:04:05[.frac](Z|±hh:mm)`), as
/// containerd writes lease expiries. None when malformed.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = s.get(start..i)?;
        if frac.is_empty() {
            return None;
        }
        let mut digits: String = frac.chars().take(9).collect();
        while digits.len() < 9 {
            digits.push('0');
        }
        nanos = digits.parse().ok()?;
    }
    let offset = match s.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) => {
            let oh: i64 = tz.get(1..3)?.parse().ok()?;
            let om: i64 = tz.get(4..6)?.parse().ok()?;
            let o = oh * 3600 + om * 60;
            if tz.starts_with('-') {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        let t = |s| parse_rfc3339(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs());
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(t("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(t("2023-11-14T23:13:20+01:00"), Some(1_700_000_000));
        assert_eq!(t("2023-11-14T22:13:20.123456789Z"), Some(1_700_000_000));
        assert_eq!(t("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(t("2023-11-14 22:13:20"), None);
        assert_eq!(t("garbage"), None);
        assert_eq!(t("2023-13-14T22:13:20Z"), None);
    }
}
