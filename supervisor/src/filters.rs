//! containerd's filter language for every List call.
//!
//! A request carries several filter strings: a record matches when ANY of
//! them matches (or). Inside one string, `,` separates selectors that must
//! ALL match (and). A selector is a field path, optionally followed by an
//! operator and a value:
//!
//! ```text
//! labels."io.example/a"==b     equality
//! name!=foo                    inequality
//! name~=^ba[rz]$               regular expression
//! topic~=|^/tasks/|            the same, quoted with `|` (or `/`)
//! labels.foo                   presence
//! parent==""                   equality with the empty string
//! ```
//!
//! Field path components are plain words (`[A-Za-z0-9_]`) or double-quoted
//! strings; values are `"`-quoted strings or unquoted runs up to the next
//! `,`. A `~=` value may also be quoted with `|` or `/`, as containerd
//! allows (a regex full of `/` reads better between `|`); any other
//! operator refuses those quotes, as containerd does.
//!
//! Matching follows containerd's selector semantics: a record answers a
//! field path with a value or "absent". `==` needs the field present and
//! equal; `!=` and `~=` compare an absent field as the empty string, so
//! `parent!=""` selects records with a parent and `labels.a!=""` those
//! whose label `a` is set to something non-empty. Which fields are absent
//! when empty is each record's choice and mirrors containerd's adaptors
//! (a snapshot's `parent` is always present, a container's `image` only
//! when set).

use regex::Regex;

/// Why a filter string was refused (the services answer InvalidArgument).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// the string does not follow the grammar
    #[error("filters: {msg} at byte {pos} of {input:?}")]
    Syntax {
        /// what was expected
        msg: &'static str,
        /// where
        pos: usize,
        /// the whole filter
        input: String,
    },
    /// a `~=` value is not a valid regular expression
    #[error("filters: invalid regular expression {0:?}")]
    Regex(String),
}

impl Error {
    /// A filter that cannot be parsed is the caller's malformed request.
    pub fn kind(&self) -> berth_api::ErrorKind {
        berth_api::ErrorKind::InvalidArgument
    }
}

/// A record that can be filtered: returns the value at a field path, or
/// None when the field is absent.
pub trait Fields {
    /// The value of `path` (e.g. `["labels", "a"]`).
    fn field(&self, path: &[String]) -> Option<String>;
}

#[derive(Debug)]
enum Op {
    Present,
    Eq(String),
    Ne(String),
    Match(Regex),
}

#[derive(Debug)]
struct Selector {
    path: Vec<String>,
    op: Op,
}

/// A parsed set of filters; the empty set matches everything.
#[derive(Debug, Default)]
pub struct Filter {
    any_of: Vec<Vec<Selector>>,
}

impl Filter {
    /// Parses the filter strings of a request.
    pub fn parse<S: AsRef<str>>(filters: &[S]) -> Result<Self, Error> {
        let mut any_of = Vec::new();
        for f in filters {
            let f = f.as_ref();
            if f.trim().is_empty() {
                continue;
            }
            any_of.push(Parser { s: f, pos: 0 }.parse_all()?);
        }
        Ok(Self { any_of })
    }

    /// True when `rec` satisfies the filters.
    pub fn matches(&self, rec: &dyn Fields) -> bool {
        self.any_of.is_empty()
            || self
                .any_of
                .iter()
                .any(|all| all.iter().all(|s| s.matches(rec)))
    }
}

impl Selector {
    fn matches(&self, rec: &dyn Fields) -> bool {
        let v = rec.field(&self.path);
        match (&self.op, v) {
            (Op::Present, v) => v.is_some(),
            (Op::Eq(want), v) => v.as_ref() == Some(want),
            (Op::Ne(want), v) => v.as_deref().unwrap_or_default() != want,
            (Op::Match(re), v) => re.is_match(v.as_deref().unwrap_or_default()),
        }
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, msg: &'static str) -> Error {
        Error::Syntax {
            msg,
            pos: self.pos,
            input: self.s.to_string(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn parse_all(mut self) -> Result<Vec<Selector>, Error> {
        let mut out = vec![self.selector()?];
        loop {
            self.skip_ws();
            match self.peek() {
                None => return Ok(out),
                Some(',') => {
                    self.pos += 1;
                    out.push(self.selector()?);
                }
                Some(_) => return Err(self.err("expected ',' or end")),
            }
        }
    }

    fn selector(&mut self) -> Result<Selector, Error> {
        self.skip_ws();
        let mut path = vec![self.field()?];
        while self.peek() == Some('.') {
            self.pos += 1;
            path.push(self.field()?);
        }
        self.skip_ws();
        let rest = &self.s[self.pos..];
        let op = if rest.starts_with("==") {
            self.pos += 2;
            Op::Eq(self.value(false)?)
        } else if rest.starts_with("!=") {
            self.pos += 2;
            Op::Ne(self.value(false)?)
        } else if rest.starts_with("~=") {
            self.pos += 2;
            let v = self.value(true)?;
            Op::Match(Regex::new(&v).map_err(|_| Error::Regex(v))?)
        } else if rest.is_empty() || rest.starts_with(',') {
            Op::Present
        } else {
            return Err(self.err("expected an operator (==, !=, ~=)"));
        };
        Ok(Selector { path, op })
    }

    fn field(&mut self) -> Result<String, Error> {
        self.skip_ws();
        if self.peek() == Some('"') {
            return self.quoted('"');
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.err("expected a field name"));
        }
        Ok(self.s[start..self.pos].to_string())
    }

    /// A value; `regex` allows the alternative quotes `|` and `/`.
    fn value(&mut self, regex: bool) -> Result<String, Error> {
        self.skip_ws();
        match self.peek() {
            Some('"') => self.quoted('"'),
            Some(q @ ('|' | '/')) if regex => self.quoted(q),
            Some('|' | '/') => Err(self.err("'|' and '/' quote only a ~= value")),
            _ => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c != ',') {
                    self.pos += self.peek().map_or(1, char::len_utf8);
                }
                let v = self.s[start..self.pos].trim_end();
                if v.is_empty() {
                    return Err(self.err("expected a value"));
                }
                Ok(v.to_string())
            }
        }
    }

    /// A string between `q` quotes; `\q` and `\\` escape (and for `"`
    /// strings, the usual \n \t too).
    fn quoted(&mut self, q: char) -> Result<String, Error> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let c = self
                .peek()
                .ok_or_else(|| self.err("unterminated quoted string"))?;
            self.pos += c.len_utf8();
            match c {
                c if c == q => return Ok(out),
                '\\' => {
                    let e = self.peek().ok_or_else(|| self.err("unterminated escape"))?;
                    self.pos += e.len_utf8();
                    match (q, e) {
                        ('"', 'n') => out.push('\n'),
                        ('"', 't') => out.push('\t'),
                        (_, e) if e == q || e == '\\' => out.push(e),
                        // In |regex| and /regex/ strings other escapes
                        // belong to the regex.
                        ('/' | '|', e) => {
                            out.push('\\');
                            out.push(e);
                        }
                        _ => return Err(self.err("unknown escape")),
                    }
                }
                c => out.push(c),
            }
        }
    }
}

/// The records of `all` that the filter strings `filters` match, in order.
pub fn select<T: Fields, S: AsRef<str>>(filters: &[S], all: Vec<T>) -> Result<Vec<T>, Error> {
    let filter = Filter::parse(filters)?;
    Ok(all.into_iter().filter(|r| filter.matches(r)).collect())
}

/// A field that is absent when empty (containerd's adaptors answer most
/// string fields this way: `len(v) > 0`).
pub fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// Field lookup helper for records with a label map.
pub fn label_field(
    labels: &std::collections::BTreeMap<String, String>,
    path: &[String],
) -> Option<String> {
    match path {
        [key] => labels.get(key).cloned(),
        [] => None,
        // A label key written unquoted with dots: labels.a.b means "a.b".
        parts => labels.get(&parts.join(".")).cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Rec {
        name: &'static str,
        labels: BTreeMap<String, String>,
    }

    impl Fields for Rec {
        fn field(&self, path: &[String]) -> Option<String> {
            match path.first().map(String::as_str) {
                Some("name") if path.len() == 1 => Some(self.name.to_string()),
                Some("labels") => label_field(&self.labels, &path[1..]),
                _ => None,
            }
        }
    }

    fn rec(name: &'static str, labels: &[(&str, &str)]) -> Rec {
        Rec {
            name,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn m(filters: &[&str], r: &dyn Fields) -> bool {
        Filter::parse(filters).unwrap().matches(r)
    }

    #[test]
    fn operators() {
        let r = rec("bar", &[("io.example/a", "b"), ("x", "1")]);
        assert!(m(&[], &r));
        assert!(m(&["name==bar"], &r));
        assert!(!m(&["name==baz"], &r));
        assert!(m(&["name!=baz"], &r));
        assert!(m(&["name~=^ba[rz]$"], &r));
        assert!(m(&["name~=/^b.r$/"], &r));
        assert!(m(&[r#"labels."io.example/a"==b"#], &r));
        assert!(m(&["labels.x"], &r));
        assert!(!m(&["labels.y"], &r));
        assert!(m(&["labels.y!=1"], &r));
        assert!(m(&[r#"name=="bar""#], &r));
    }

    #[test]
    fn pipe_quoted_regex() {
        let exit = rec("/tasks/exit", &[]);
        let start = rec("/tasks/start", &[]);
        // Unquoted, `|^/tasks/exit|` would be a regex alternation with an
        // empty branch that matches everything.
        assert!(m(&["name~=|^/tasks/exit|"], &exit));
        assert!(!m(&["name~=|^/tasks/exit|"], &start));
        assert!(m(&[r"name~=|^/tasks/(exit\|start)$|"], &start));
        assert!(!m(&[r"name~=|^/tasks/(exit\|start)$|,labels.x==1"], &start));
        assert!(m(&["name~=/^.tasks.start$/"], &start));
        // The alternative quotes belong to regular expressions only.
        assert!(Filter::parse(&["name==|x|"]).is_err());
        assert!(Filter::parse(&["name!=/x/"]).is_err());
        assert!(Filter::parse(&["name~=|x"]).is_err());
    }

    #[test]
    fn empty_string_and_absent_fields() {
        // `parent` as a snapshot answers it: always present, maybe empty.
        struct Snap(&'static str);
        impl Fields for Snap {
            fn field(&self, path: &[String]) -> Option<String> {
                (path == ["parent"]).then(|| self.0.to_string())
            }
        }
        let (base, child) = (Snap(""), Snap("p"));
        assert!(m(&[r#"parent=="""#], &base));
        assert!(!m(&[r#"parent=="""#], &child));
        assert!(!m(&[r#"parent!="""#], &base));
        assert!(m(&[r#"parent!="""#], &child));
        // An absent field compares as "" for != and ~=, and never equals.
        let r = rec("n", &[("set", "v"), ("empty", "")]);
        assert!(!m(&[r#"labels.none!="""#], &r));
        assert!(m(&[r#"labels.set!="""#], &r));
        assert!(!m(&[r#"labels.empty!="""#], &r));
        assert!(m(&[r#"labels.empty=="""#], &r));
        assert!(!m(&[r#"labels.none=="""#], &r));
        assert!(m(&["labels.none~=^$"], &r));
        assert!(m(&["labels.none!=x"], &r));
    }

    #[test]
    fn and_or() {
        let r = rec("bar", &[("x", "1")]);
        assert!(m(&["name==bar,labels.x==1"], &r));
        assert!(!m(&["name==bar,labels.x==2"], &r));
        assert!(m(&["name==nope", "labels.x==1"], &r));
        assert!(!m(&["name==nope", "labels.x==2"], &r));
        assert!(m(&[" name == bar , labels.x==1 "], &r));
    }

    #[test]
    fn dotted_label_keys_and_quoting() {
        let r = rec("n", &[("a.b", "c d"), ("q\"k", "v,w")]);
        assert!(m(&["labels.a.b==c d"], &r));
        assert!(m(&[r#"labels."a.b"=="c d""#], &r));
        assert!(m(&[r#"labels."q\"k"=="v,w""#], &r));
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "==x",
            "name==",
            "name=x",
            "labels.\"open",
            "name~=(",
            "a,,b",
            "name==x y,",
        ] {
            assert!(Filter::parse(&[bad]).is_err(), "{bad}");
        }
    }
}
