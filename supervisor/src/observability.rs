//! The one place logging is set up.

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

/// Transport crates that flood debug logs with per-frame lines.
const NOISY: &[&str] = &[
    "h2",
    "hyper",
    "hyper_util",
    "tower",
    "tonic",
    "rustls",
    "reqwest",
];

/// A plain level (`debug`) applies to berth's own crates while the transport
/// crates stay at `info`; a full filter (with `=` or `,`) is used as given.
fn directives(level: &str) -> String {
    if level.contains('=') || level.contains(',') {
        return level.to_string();
    }
    let mut out = level.to_string();
    for krate in NOISY {
        out.push_str(&format!(",{krate}=info"));
    }
    out
}

/// Installs the global subscriber; `level` is a level or a full filter.
pub fn init(level: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(directives(level))
        .map_err(|e| anyhow::anyhow!("invalid --log-level {level:?}: {e}"))?;
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    }
    .map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}

#[cfg(test)]
mod tests {
    use super::directives;

    #[test]
    fn plain_levels_quiet_transport_crates_full_filters_pass_through() {
        let d = directives("debug");
        assert!(d.starts_with("debug,") && d.contains("h2=info"), "{d}");
        assert_eq!(directives("berth=trace,h2=debug"), "berth=trace,h2=debug");
    }
}
