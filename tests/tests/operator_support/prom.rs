//! A strict reader of the Prometheus text exposition format (0.0.4, and
//! the OpenMetrics `# EOF` line), so a test fails on anything a Prometheus
//! server would refuse: every sample belongs to a family declared once by
//! `# TYPE` (with the suffixes its type allows), names and labels are
//! well formed, values are numbers, no series appears twice, and each
//! histogram's buckets rise to `le="+Inf"`, which equals its `_count`.

use std::collections::{BTreeMap, HashMap};

/// Labels of one series, sorted by name.
pub(crate) type Labels = BTreeMap<String, String>;

/// A parsed exposition: every sample, and each family's type.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    /// (sample name, labels) → value.
    pub(crate) samples: BTreeMap<(String, Labels), f64>,
    /// family name → type.
    pub(crate) types: HashMap<String, String>,
}

impl Exposition {
    /// The value of `name{labels}` (exactly these labels), if present.
    pub(crate) fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let l: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples.get(&(name.to_string(), l)).copied()
    }

    /// The sum of every `name` sample whose labels include `labels`.
    pub(crate) fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Whether any `name` sample exists.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.samples.keys().any(|(n, _)| n == name)
    }
}

fn valid_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(s: &str) -> bool {
    valid_name(s) && !s.contains(':')
}

/// The suffixes a sample of a family of type `ty` may carry.
fn suffixes(ty: &str) -> &'static [&'static str] {
    match ty {
        // 0.0.4 declares a counter by its sample name (`x_total`),
        // OpenMetrics by the family (`x`).
        "counter" => &["", "_total", "_created"],
        "histogram" => &["_bucket", "_sum", "_count", "_created"],
        "summary" => &["", "_sum", "_count", "_created"],
        "info" => &["_info"],
        _ => &[""],
    }
}

fn value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|e| format!("value {s:?}: {e}")),
    }
}

/// `{a="x",b="y"}` (the braces stripped) as labels.
fn labels(mut s: &str) -> Result<Labels, String> {
    let mut out = Labels::new();
    while !s.is_empty() {
        let (name, rest) = s.split_once("=\"").ok_or(format!("label in {s:?}"))?;
        if !valid_label_name(name) {
            return Err(format!("label name {name:?}"));
        }
        let mut val = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated label value in {s:?}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => val.push('\n'),
                    Some((_, '\\')) => val.push('\\'),
                    Some((_, '"')) => val.push('"'),
                    other => return Err(format!("escape {other:?} in {s:?}")),
                },
                Some((_, c)) => val.push(c),
            }
        };
        if out.insert(name.to_string(), val).is_some() {
            return Err(format!("label {name} twice"));
        }
        s = &rest[end + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
    Ok(out)
}

/// Parses `text`, or says what is wrong (with the line).
pub(crate) fn parse(text: &str) -> Result<Exposition, String> {
    let mut e = Exposition::default();
    let mut current: Option<(String, String)> = None;
    let mut eof = false;
    for (n, line) in text.lines().enumerate() {
        let at = |m: String| format!("line {}: {m}: {line:?}", n + 1);
        if eof {
            return Err(at("text after # EOF".into()));
        }
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            let mut w = c.trim_start().splitn(3, ' ');
            match (w.next(), w.next(), w.next()) {
                (Some("EOF"), None, None) => eof = true,
                (Some("TYPE"), Some(name), Some(ty)) => {
                    if !valid_name(name) {
                        return Err(at("family name".into()));
                    }
                    let known = [
                        "counter",
                        "gauge",
                        "histogram",
                        "summary",
                        "info",
                        "untyped",
                        "unknown",
                        "stateset",
                        "gaugehistogram",
                    ];
                    if !known.contains(&ty) {
                        return Err(at(format!("type {ty}")));
                    }
                    if e.types.insert(name.to_string(), ty.to_string()).is_some() {
                        return Err(at("family declared twice".into()));
                    }
                    current = Some((name.to_string(), ty.to_string()));
                }
                (Some("HELP"), Some(name), _) if valid_name(name) => {}
                (Some("UNIT"), Some(name), _) if valid_name(name) => {}
                _ => return Err(at("bad comment line".into())),
            }
            continue;
        }
        let (series, val) = line.rsplit_once(' ').ok_or(at("no value".into()))?;
        let v = value(val).map_err(at)?;
        let (name, l) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest
                    .strip_suffix('}')
                    .ok_or(at("labels not closed".into()))?;
                (name, labels(inner).map_err(at)?)
            }
            None => (series, Labels::new()),
        };
        if !valid_name(name) {
            return Err(at("sample name".into()));
        }
        let (family, ty) = current
            .as_ref()
            .ok_or(at("sample before any # TYPE".into()))?;
        let ok = suffixes(ty)
            .iter()
            .any(|s| name.strip_suffix(s) == Some(family.as_str()));
        if !ok {
            return Err(at(format!("not a sample of {ty} {family}")));
        }
        if ty == "counter" && v < 0.0 {
            return Err(at("negative counter".into()));
        }
        if e.samples.insert((name.to_string(), l), v).is_some() {
            return Err(at("series twice".into()));
        }
    }
    histograms(&e)?;
    Ok(e)
}

/// Each histogram series: buckets non-decreasing by `le`, the `+Inf`
/// bucket present and equal to `_count`.
fn histograms(e: &Exposition) -> Result<(), String> {
    for (family, _) in e.types.iter().filter(|(_, t)| *t == "histogram") {
        let bucket = format!("{family}_bucket");
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for ((name, l), v) in &e.samples {
            if *name != bucket {
                continue;
            }
            let mut rest = l.clone();
            let le = rest.remove("le").ok_or(format!("{bucket} without le"))?;
            series.entry(rest).or_default().push((value(&le)?, *v));
        }
        for (l, mut b) in series {
            b.sort_by(|x, y| x.0.total_cmp(&y.0));
            if b.windows(2).any(|w| w[1].1 < w[0].1) {
                return Err(format!("{bucket}{l:?}: buckets fall: {b:?}"));
            }
            let inf = b.last().filter(|x| x.0.is_infinite()).map(|x| x.1);
            let count = e.samples.get(&(format!("{family}_count"), l.clone()));
            if inf.is_none() || inf != count.copied() {
                return Err(format!(
                    "{bucket}{l:?}: +Inf bucket {inf:?} vs _count {count:?}"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn the_reader_refuses_what_prometheus_would() {
    let good = "# HELP a_total x\n# TYPE a counter\na_total{x=\"1\"} 2\n\
                # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n# EOF\n";
    let e = parse(good).unwrap();
    assert_eq!(e.get("a_total", &[("x", "1")]), Some(2.0));
    for bad in [
        "a 1\n",                                                    // no TYPE
        "# TYPE a counter\na_sum 1\n",                              // not a counter sample
        "# TYPE a gauge\na{x=\"1} 1\n",                             // unterminated
        "# TYPE a gauge\na 1\na 2\n",                               // twice
        "# TYPE a gauge\na one\n",                                  // not a number
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n", // +Inf != count
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        "# TYPE a gauge\n# TYPE a gauge\n",
    ] {
        assert!(parse(bad).is_err(), "accepted: {bad}");
    }
}
