//! Leases as they travel: the gRPC metadata key naming the lease of a
//! call, and the expiry label containerd's clients write (RFC 3339).

use std::time::{Duration, SystemTime};

/// gRPC metadata key carrying the lease of a call.
pub const GRPC_HEADER: &str = "containerd-lease";

/// Label whose RFC 3339 time makes a lease expire.
pub const EXPIRE_LABEL: &str = "containerd.io/gc.expire";

/// `t` as RFC 3339 in UTC, whole seconds (`2024-01-02T03:04:05Z`), as an
/// expiry label's value.
pub fn format_rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Parses an RFC 3339 time (`2024-01-02T03:04:05[.frac](Z|±hh:mm)`) as
/// containerd writes lease expiries (Go's `time.RFC3339`, which carries the
/// writer's zone offset). None when malformed.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let (base, offset_secs) = split_zone(s)?;
    let mut utc = base.as_bytes().to_vec();
    // RFC 3339 allows a lowercase `t` or a space between date and time.
    if let Some(sep @ (b't' | b' ')) = utc.get_mut(10) {
        *sep = b'T';
    }
    utc.push(b'Z');
    let t = humantime::parse_rfc3339(std::str::from_utf8(&utc).ok()?).ok()?;
    let shift = Duration::from_secs(offset_secs.unsigned_abs());
    if offset_secs >= 0 {
        t.checked_sub(shift)
    } else {
        t.checked_add(shift)
    }
}

/// Splits the zone off: `Z` is UTC, `+hh:mm` / `-hh:mm` an offset east.
fn split_zone(s: &str) -> Option<(&str, i64)> {
    if let Some(base) = s.strip_suffix(['Z', 'z']) {
        return Some((base, 0));
    }
    let at = s.len().checked_sub(6)?;
    let (base, zone) = (s.get(..at)?, s.get(at..)?);
    let sign = match zone.as_bytes() {
        [b'+', _, _, b':', _, _] => 1,
        [b'-', _, _, b':', _, _] => -1,
        _ => return None,
    };
    let hours: i64 = zone.get(1..3)?.parse().ok()?;
    let minutes: i64 = zone.get(4..6)?.parse().ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some((base, sign * (hours * 3600 + minutes * 60)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn rfc3339_parses_zones_and_refuses_garbage() {
        let t = |s| parse_rfc3339(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs());
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(t("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(t("2023-11-14T23:13:20+01:00"), Some(1_700_000_000));
        assert_eq!(t("2023-11-14T21:13:20-01:00"), Some(1_700_000_000));
        assert_eq!(t("2023-11-14t22:13:20z"), Some(1_700_000_000));
        assert_eq!(t("2023-11-14T22:13:20.123456789Z"), Some(1_700_000_000));
        assert_eq!(t("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(t("2023-11-14 22:13:20"), None);
        assert_eq!(t("garbage"), None);
        assert_eq!(t("2023-13-14T22:13:20Z"), None);
    }

    #[test]
    fn rfc3339_round_trips() {
        for secs in [0u64, 951_782_400, 1_700_000_000, 4_102_444_800] {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            let s = format_rfc3339(t);
            assert_eq!(parse_rfc3339(&s), Some(t), "{s}");
        }
        assert_eq!(
            format_rfc3339(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
