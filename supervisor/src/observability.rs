//! The one place logging is set up.
//!
//! A plain level (`--log-level debug`) is berth's own: it applies to
//! berthd's crates while everything else (h2, hyper, tonic, tower, sled,
//! rustls, the registry client) stays at `info`, so a debug log is about
//! berthd rather than its transport and storage. A full filter (anything
//! with `=` or `,`, e.g. `info,berth_supervisor=debug,sled=debug`) is used
//! exactly as given. Text lines carry ANSI colour only when stderr is a
//! terminal (and `NO_COLOR` is unset), never in a file or a pipe.

use std::io::IsTerminal;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

/// The tracing targets a plain level applies to: berthd's own crates.
const OWN: &[&str] = &[
    "berthd",
    "berth_supervisor",
    "berth_snapshotter",
    "berth_api",
];

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--log-level` / `log_level` is neither a level nor a filter.
    #[error("log_level {level:?}: {reason}")]
    Filter {
        /// what was given
        level: String,
        /// the parser's complaint
        reason: String,
    },
    /// A global subscriber was already installed.
    #[error("installing the log subscriber: {0}")]
    Install(String),
}

/// The filter directives for `level` (see the module doc).
fn directives(level: &str) -> String {
    let level = level.trim();
    let Ok(plain) = level.parse::<LevelFilter>() else {
        return level.to_string();
    };
    if plain <= LevelFilter::INFO {
        // info, warn, error, off: the same for every crate.
        return plain.to_string().to_lowercase();
    }
    let plain = plain.to_string().to_lowercase();
    let mut out = String::from("info");
    for krate in OWN {
        out.push_str(&format!(",{krate}={plain}"));
    }
    out
}

/// The filter for `level`, or why it is not one.
pub fn filter(level: &str) -> Result<EnvFilter, Error> {
    EnvFilter::builder()
        .parse(directives(level))
        .map_err(|e| Error::Filter {
            level: level.to_string(),
            reason: e.to_string(),
        })
}

/// Installs the global subscriber; `level` is a level or a full filter.
pub fn init(level: &str, format: LogFormat) -> Result<(), Error> {
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = fmt()
        .with_env_filter(filter(level)?)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    }
    .map_err(|e| Error::Install(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_levels_are_berths_own_full_filters_pass_through() {
        let d = directives("debug");
        assert_eq!(
            d,
            "info,berthd=debug,berth_supervisor=debug,berth_snapshotter=debug,berth_api=debug"
        );
        assert_eq!(directives("TRACE"), d.replace("debug", "trace"));
        assert_eq!(directives("warn"), "warn");
        assert_eq!(directives("info"), "info");
        assert_eq!(directives("berth=trace,h2=debug"), "berth=trace,h2=debug");
        assert!(filter("debug").is_ok());
        assert!(filter("info,sled=debug").is_ok());
        let e = filter("berth=loud").unwrap_err().to_string();
        assert!(e.starts_with("log_level \"berth=loud\": "), "{e}");
    }
}
