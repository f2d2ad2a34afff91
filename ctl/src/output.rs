//! Output for people (aligned plain-text tables) and for scripts (JSON:
//! arrays of objects with stable snake_case field names).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::SystemTime;

use serde::Serialize;

use crate::error::{Error, Result};

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// aligned columns for people
    Table,
    /// JSON for scripts
    Json,
}

/// One row of a listing: serialised as-is for JSON, cells for tables.
pub trait Row: Serialize {
    /// Column headers, in order.
    fn headers() -> &'static [&'static str];
    /// The cells of this row, one per header.
    fn cells(&self) -> Vec<String>;
}

/// Writes command output to stdout in the chosen format.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// the chosen format
    pub format: Format,
}

impl Printer {
    /// A printer for `format`.
    pub fn new(format: Format) -> Self {
        Self { format }
    }

    /// True for `--output json`.
    pub fn json(&self) -> bool {
        self.format == Format::Json
    }

    /// Prints a listing: a table with headers, or a JSON array.
    pub fn list<R: Row>(&self, rows: &[R]) -> Result<()> {
        match self.format {
            Format::Json => self.json_value(&rows),
            Format::Table => {
                let cells: Vec<Vec<String>> = rows.iter().map(Row::cells).collect();
                write_stdout(&render_table(R::headers(), &cells))
            }
        }
    }

    /// Prints one object: JSON, or `key: value` lines via `table`.
    pub fn object<T: Serialize>(&self, value: &T, table: impl FnOnce(&T) -> String) -> Result<()> {
        match self.format {
            Format::Json => self.json_value(value),
            Format::Table => write_stdout(&table(value)),
        }
    }

    /// Prints any serialisable value as pretty JSON plus a newline.
    pub fn json_value<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let mut s = serde_json::to_string_pretty(value)
            .map_err(|e| Error::Protocol(format!("encode json output: {e}")))?;
        s.push('\n');
        write_stdout(&s)
    }

    /// Prints plain lines (for `-q` style output), whatever the format.
    pub fn lines<I: IntoIterator<Item = S>, S: AsRef<str>>(&self, lines: I) -> Result<()> {
        let mut s = String::new();
        for l in lines {
            s.push_str(l.as_ref());
            s.push('\n');
        }
        write_stdout(&s)
    }
}

/// Writes `s` to stdout and flushes.
pub fn write_stdout(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("write to stdout", e))
}

/// Renders rows under headers in columns separated by at least two spaces;
/// the last column is not padded.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cols = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, cell) in cells.enumerate().take(cols) {
            l.push_str(cell);
            if i + 1 < cols {
                let pad = widths[i] - cell.chars().count() + 2;
                l.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// Labels as `k=v,k2=v2` (sorted), or `-` when there are none.
pub fn labels_cell(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A label map from the wire, sorted for stable output.
pub fn sorted_labels(m: std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

/// A protobuf timestamp as a SystemTime (None when absent or invalid).
pub fn system_time(t: Option<&prost_types::Timestamp>) -> Option<SystemTime> {
    SystemTime::try_from(*t?).ok()
}

/// A protobuf timestamp as RFC 3339 (UTC, seconds), or None when absent.
pub fn rfc3339(t: Option<&prost_types::Timestamp>) -> Option<String> {
    system_time(t).map(berth_api::lease::format_rfc3339)
}

/// How long ago `t` was, coarsely: `12s`, `5m`, `3h`, `2d`; `-` if unknown.
pub fn age(t: Option<&prost_types::Timestamp>) -> String {
    let Some(t) = system_time(t) else {
        return "-".into();
    };
    let secs = SystemTime::now()
        .duration_since(t)
        .unwrap_or_default()
        .as_secs();
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// A byte count for people: `512 B`, `1.5 KiB`, `64.0 MiB`.
pub fn human_size(n: i64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = render_table(
            &["NAME", "LABELS"],
            &[
                vec!["default".into(), "-".into()],
                vec!["x".into(), "a=b".into()],
            ],
        );
        assert_eq!(t, "NAME     LABELS\ndefault  -\nx        a=b\n");
    }

    #[test]
    fn sizes_and_labels() {
        assert_eq!(human_size(10), "10 B");
        assert_eq!(human_size(64 << 20), "64.0 MiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        let mut l = BTreeMap::new();
        assert_eq!(labels_cell(&l), "-");
        l.insert("b".into(), "2".into());
        l.insert("a".into(), "1".into());
        assert_eq!(labels_cell(&l), "a=1,b=2");
    }

    #[test]
    fn timestamps() {
        let t = prost_types::Timestamp {
            seconds: 0,
            nanos: 0,
        };
        assert_eq!(rfc3339(Some(&t)).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(None), None);
    }
}
