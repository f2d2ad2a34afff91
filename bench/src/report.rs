//! Output: a terminal table, the same as JSON, and an SVG chart of the
//! berthd/containerd ratios (plain SVG written by hand).

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::daemon::SideError;
use crate::stats::Stats;
use crate::workloads::{Metric, Side};

/// One metric measured on both daemons.
pub(crate) struct Row {
    pub(crate) metric: Metric,
    pub(crate) berthd: Side,
    pub(crate) containerd: Side,
}

impl Row {
    /// berthd / containerd, in the metric's own unit.
    pub(crate) fn ratio(&self) -> Option<f64> {
        match (&self.berthd, &self.containerd) {
            (Ok(b), Ok(c)) if c.median > 0.0 => Some(b.median / c.median),
            _ => None,
        }
    }

    /// How many times better berthd is (>1 better, <1 worse).
    pub(crate) fn advantage(&self) -> Option<f64> {
        let r = self.ratio()?;
        Some(if self.metric.higher_is_better {
            r
        } else {
            1.0 / r
        })
    }

    pub(crate) fn meets_target(&self) -> Option<bool> {
        let (r, t) = (self.ratio()?, self.metric.target_ratio?);
        Some(if self.metric.higher_is_better {
            r >= t
        } else {
            r <= t
        })
    }

    fn target_text(&self) -> String {
        match self.metric.target_ratio {
            Some(t) if self.metric.higher_is_better => format!(">= {t}x"),
            Some(t) => format!("<= {t}x"),
            None => "-".into(),
        }
    }
}

/// A number with about three significant digits.
pub(crate) fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A table cell; a skip or failure becomes a numbered note (identical
/// messages share one number).
fn cell(side: &Side, notes: &mut Vec<String>, who: &str) -> String {
    match side {
        Ok(s) => format!(
            "{} ({}-{}, ±{:.0}%)",
            num(s.median),
            num(s.min),
            num(s.max),
            s.spread_pct() / 2.0
        ),
        Err(e) => {
            let note = format!("{who}: {e}");
            let n = match notes.iter().position(|x| *x == note) {
                Some(i) => i + 1,
                None => {
                    notes.push(note);
                    notes.len()
                }
            };
            let tag = match e {
                SideError::Skipped(_) => "skipped",
                SideError::Failed(_) => "FAILED",
            };
            format!("{tag} [{n}]")
        }
    }
}

/// The terminal table, with numbered notes for skipped and failed cells.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut notes = Vec::new();
    let mut lines = vec![[
        "workload".to_string(),
        "unit".into(),
        "berthd".into(),
        "containerd".into(),
        "ratio b/c".into(),
        "target".into(),
    ]];
    for r in rows {
        let b = cell(&r.berthd, &mut notes, "berthd");
        let c = cell(&r.containerd, &mut notes, "containerd");
        let ratio = match (r.ratio(), r.meets_target()) {
            (Some(x), Some(true)) => format!("{}x ok", num(x)),
            (Some(x), Some(false)) => format!("{}x MISS", num(x)),
            (Some(x), None) => format!("{}x", num(x)),
            (None, _) => "-".into(),
        };
        let better = if r.metric.higher_is_better {
            "higher better"
        } else {
            "lower better"
        };
        lines.push([
            r.metric.title.clone(),
            format!("{} ({better})", r.metric.unit),
            b,
            c,
            ratio,
            r.target_text(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (n, l) in lines.iter().enumerate() {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join(" | ").trim_end());
        if n == 0 {
            let _ = writeln!(
                out,
                "{}",
                widths
                    .iter()
                    .map(|w| "-".repeat(*w))
                    .collect::<Vec<_>>()
                    .join("-|-")
            );
        }
    }
    out.push_str("cells: median (min-max, ±half the spread as % of the median)\n");
    for (i, n) in notes.iter().enumerate() {
        let _ = writeln!(out, "[{}] {n}", i + 1);
    }
    out
}

fn side_json(side: &Side) -> Value {
    match side {
        Ok(s) => {
            json!({"status": "ok", "median": s.median, "min": s.min, "p95": s.p95, "max": s.max, "spread_pct": s.spread_pct(), "samples": s.samples})
        }
        Err(SideError::Skipped(m)) => json!({"status": "skipped", "reason": m}),
        Err(SideError::Failed(m)) => json!({"status": "failed", "reason": m}),
    }
}

/// The rows as JSON (the rest of the results file is assembled by main).
pub(crate) fn rows_json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                json!({
                    "id": r.metric.id,
                    "title": r.metric.title,
                    "unit": r.metric.unit,
                    "higher_is_better": r.metric.higher_is_better,
                    "method": r.metric.method,
                    "target_ratio": r.metric.target_ratio,
                    "berthd": side_json(&r.berthd),
                    "containerd": side_json(&r.containerd),
                    "ratio": r.ratio(),
                    "advantage": r.advantage(),
                    "meets_target": r.meets_target(),
                })
            })
            .collect(),
    )
}

/// Stats as JSON (for the floor figures).
pub(crate) fn stats_json(s: &Stats) -> Value {
    side_json(&Ok(s.clone()))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A horizontal bar per metric: how many times better (right, green) or
/// worse (left, red) berthd is than containerd, on a log2 scale from 1/8x
/// to 8x; a black tick marks the target.
pub(crate) fn svg(rows: &[Row], subtitle: &str) -> String {
    let (label_w, chart_w, row_h, top) = (330.0, 480.0, 30.0, 70.0);
    let width = label_w + chart_w + 330.0;
    let height = top + row_h * rows.len() as f64 + 50.0;
    let center = label_w + chart_w / 2.0;
    let x = |adv: f64| center + adv.log2().clamp(-3.0, 3.0) / 3.0 * (chart_w / 2.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="13">"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="10" y="24" font-size="17" font-weight="bold">berthd vs containerd: how many times better (log scale)</text>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="10" y="44" fill="#555">{}</text>"##,
        esc(subtitle)
    );
    for (k, label) in [
        (-3, "1/8x"),
        (-2, "1/4x"),
        (-1, "1/2x"),
        (0, "1x"),
        (1, "2x"),
        (2, "4x"),
        (3, "8x"),
    ] {
        let gx = x(2f64.powi(k));
        let stroke = if k == 0 { "#000" } else { "#ddd" };
        let _ = writeln!(
            s,
            r##"<line x1="{gx}" y1="{}" x2="{gx}" y2="{}" stroke="{stroke}"/>"##,
            top - 8.0,
            top + row_h * rows.len() as f64
        );
        let _ = writeln!(
            s,
            r##"<text x="{gx}" y="{}" text-anchor="middle" fill="#555">{label}</text>"##,
            top - 12.0
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end">{}</text>"##,
            label_w - 10.0,
            y + 19.0,
            esc(&r.metric.title)
        );
        match r.advantage() {
            Some(adv) => {
                let (x0, x1) = (center.min(x(adv)), center.max(x(adv)));
                let color = if adv >= 1.0 { "#2e9e4f" } else { "#d0453a" };
                let _ = writeln!(
                    s,
                    r##"<rect x="{x0}" y="{}" width="{}" height="{}" fill="{color}"/>"##,
                    y + 6.0,
                    (x1 - x0).max(1.0),
                    row_h - 12.0
                );
                if let Some(t) = r.metric.target_ratio {
                    let tadv = if r.metric.higher_is_better {
                        t
                    } else {
                        1.0 / t
                    };
                    let _ = writeln!(
                        s,
                        r##"<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="#000" stroke-width="2"/>"##,
                        x(tadv),
                        y + 3.0,
                        y + row_h - 3.0
                    );
                }
                let verdict = if adv >= 1.0 {
                    format!("{}x better", num(adv))
                } else {
                    format!("{}x worse", num(1.0 / adv))
                };
                let _ = writeln!(
                    s,
                    r##"<text x="{}" y="{}">{verdict} (b/c {}, target {})</text>"##,
                    label_w + chart_w + 10.0,
                    y + 19.0,
                    num(r.ratio().unwrap_or(0.0)),
                    esc(&r.target_text())
                );
            }
            None => {
                let why = match (&r.berthd, &r.containerd) {
                    (Err(SideError::Skipped(_)), _) => "berthd: not yet measurable",
                    (Err(_), _) => "berthd: failed",
                    (_, Err(_)) => "containerd: failed or skipped",
                    _ => "no ratio",
                };
                let _ = writeln!(
                    s,
                    r##"<text x="{}" y="{}" fill="#888">{why}</text>"##,
                    center + 8.0,
                    y + 19.0
                );
            }
        }
    }
    let _ = writeln!(
        s,
        r##"<text x="10" y="{}" fill="#555">green: berthd better, red: worse; black tick: target from the issues</text>"##,
        height - 15.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(higher: bool) -> Metric {
        Metric {
            id: "m",
            title: "m <x>".into(),
            unit: "ms",
            higher_is_better: higher,
            target_ratio: Some(0.5),
            method: String::new(),
        }
    }

    fn ok(v: f64) -> Side {
        Ok(Stats::of(&[v]).unwrap())
    }

    #[test]
    fn ratio_and_advantage_follow_direction() {
        let r = Row {
            metric: metric(false),
            berthd: ok(50.0),
            containerd: ok(100.0),
        };
        assert_eq!(r.ratio(), Some(0.5));
        assert_eq!(r.advantage(), Some(2.0));
        assert_eq!(r.meets_target(), Some(true));
        let r = Row {
            metric: metric(true),
            berthd: ok(50.0),
            containerd: ok(100.0),
        };
        assert_eq!(r.advantage(), Some(0.5));
    }

    #[test]
    fn table_and_svg_mention_skips() {
        let rows = vec![
            Row {
                metric: metric(false),
                berthd: Err(SideError::Skipped("no tasks service".into())),
                containerd: ok(100.0),
            },
            Row {
                metric: metric(false),
                berthd: Err(SideError::Skipped("no tasks service".into())),
                containerd: ok(100.0),
            },
            Row {
                metric: metric(false),
                berthd: ok(40.0),
                containerd: ok(100.0),
            },
        ];
        let t = table(&rows);
        assert_eq!(t.matches("skipped [1]").count(), 2, "{t}");
        assert!(!t.contains("[2]"), "{t}");
        assert!(t.contains("no tasks service"));
        assert!(t.contains("0.40x ok"));
        let svg = svg(&rows, "test");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("m &lt;x&gt;"));
        assert!(svg.contains("not yet measurable"));
        assert_eq!(rows_json(&rows)[0]["berthd"]["status"], "skipped");
    }
}
