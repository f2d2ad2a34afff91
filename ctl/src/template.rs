//! `--format` templates over a JSON document, a small subset of Go's
//! text/template as `docker inspect --format` uses it: text with
//! `{{ ... }}` actions; an action is a field path (`.State.Status`, `.`
//! for the whole document; map keys too: `.NetworkSettings.Networks.bridge`),
//! a function call (`json .Config`, `index .Config.Labels "a.b"`, `upper`,
//! `lower`, `len`) or a pipeline of them (`.Config.Env | json`), whose
//! last stage gets the previous result as its last argument.
//!
//! Values print as Go prints them: strings bare, `true`, numbers, maps as
//! `map[k:v ...]` (sorted keys), lists as `[a b]`, a missing field as
//! `<no value>`.

use serde_json::Value;

use crate::error::{Error, Result};

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Action(Vec<Vec<Token>>),
}

/// One word of an action.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// `.A.B` (empty: `.`)
    Field(Vec<String>),
    /// a function name
    Ident(String),
    /// a quoted string or a number
    Literal(Value),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    pieces: Vec<Piece>,
}

fn bad(t: &str, why: impl std::fmt::Display) -> Error {
    Error::Input(format!("format {t:?}: {why}"))
}

fn tokens(src: &str, action: &str) -> Result<Vec<Vec<Token>>> {
    let mut stages = vec![Vec::new()];
    let mut chars = action.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' | '\n' => {
                chars.next();
            }
            '|' => {
                chars.next();
                stages.push(Vec::new());
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err(bad(src, "unterminated string")),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(o) => s.push(o),
                            None => return Err(bad(src, "unterminated string")),
                        },
                        Some(o) => s.push(o),
                    }
                }
                stages
                    .last_mut()
                    .expect("one stage")
                    .push(Token::Literal(s.into()));
            }
            _ => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == '|' || c == '"' {
                        break;
                    }
                    w.push(c);
                    chars.next();
                }
                let tok = if let Some(path) = w.strip_prefix('.') {
                    Token::Field(
                        path.split('.')
                            .filter(|p| !p.is_empty())
                            .map(str::to_string)
                            .collect(),
                    )
                } else if let Ok(n) = w.parse::<i64>() {
                    Token::Literal(n.into())
                } else if w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    Token::Ident(w)
                } else {
                    return Err(bad(src, format!("unexpected {w:?}")));
                };
                stages.last_mut().expect("one stage").push(tok);
            }
        }
    }
    if stages.iter().any(Vec::is_empty) {
        return Err(bad(src, "an empty action or pipeline stage"));
    }
    Ok(stages)
}

impl Template {
    /// Parses `src`.
    pub fn parse(src: &str) -> Result<Self> {
        let mut pieces = Vec::new();
        let mut rest = src;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| bad(src, "unclosed {{"))?;
            let inner = after[..close].trim_start_matches('-').trim_end_matches('-');
            pieces.push(Piece::Action(tokens(src, inner)?));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Self { pieces })
    }

    /// Renders the template over `doc`.
    pub fn render(&self, doc: &Value) -> Result<String> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Action(stages) => {
                    let mut prev: Option<Value> = None;
                    for stage in stages {
                        prev = Some(eval(stage, doc, prev)?);
                    }
                    out.push_str(&show(prev.as_ref().unwrap_or(&Value::Null)));
                }
            }
        }
        Ok(out)
    }
}

fn field(doc: &Value, path: &[String]) -> Value {
    let mut v = doc;
    for p in path {
        match v.get(p) {
            Some(x) => v = x,
            None => return Value::Null,
        }
    }
    v.clone()
}

fn arg(t: &Token, doc: &Value) -> Result<Value> {
    match t {
        Token::Field(p) => Ok(field(doc, p)),
        Token::Literal(v) => Ok(v.clone()),
        Token::Ident(f) => Err(Error::Input(format!(
            "format: {f} is a function; call it in its own action or stage"
        ))),
    }
}

fn eval(stage: &[Token], doc: &Value, prev: Option<Value>) -> Result<Value> {
    let (head, rest) = stage.split_first().expect("stages are not empty");
    let mut args = rest
        .iter()
        .map(|t| arg(t, doc))
        .collect::<Result<Vec<_>>>()?;
    args.extend(prev);
    let name = match head {
        Token::Ident(f) => f.as_str(),
        other => {
            if !args.is_empty() {
                return Err(Error::Input(
                    "format: only a function takes arguments".into(),
                ));
            }
            return arg(other, doc);
        }
    };
    let one = |args: &[Value]| -> Result<Value> {
        match args {
            [v] => Ok(v.clone()),
            _ => Err(Error::Input(format!("format: {name} takes one argument"))),
        }
    };
    Ok(match name {
        "json" => Value::String(serde_json::to_string(&one(&args)?).unwrap_or_default()),
        "upper" => Value::String(show(&one(&args)?).to_uppercase()),
        "lower" => Value::String(show(&one(&args)?).to_lowercase()),
        "len" => match one(&args)? {
            Value::Array(a) => a.len().into(),
            Value::Object(o) => o.len().into(),
            Value::String(s) => s.len().into(),
            other => return Err(Error::Input(format!("format: len of {}", show(&other)))),
        },
        "index" => {
            let (base, keys) = args
                .split_first()
                .ok_or_else(|| Error::Input("format: index takes a value and keys".into()))?;
            let mut v = base.clone();
            for k in keys {
                v = match (&v, k) {
                    (Value::Object(o), Value::String(s)) => {
                        o.get(s).cloned().unwrap_or(Value::Null)
                    }
                    (Value::Array(a), Value::Number(n)) => n
                        .as_u64()
                        .and_then(|i| a.get(i as usize).cloned())
                        .unwrap_or(Value::Null),
                    _ => Value::Null,
                };
            }
            v
        }
        other => return Err(Error::Input(format!("format: unknown function {other:?}"))),
    })
}

/// A value as Go's template prints it.
fn show(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(show).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", show(&o[*k])))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, doc: &Value) -> String {
        Template::parse(t).unwrap().render(doc).unwrap()
    }

    #[test]
    fn docker_inspect_formats() {
        let doc = json!({
            "Id": "abc",
            "State": {"Status": "running", "Running": true, "Pid": 42},
            "Config": {"Env": ["A=1", "B=2"], "Labels": {"a.b": "x"}},
            "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "10.0.0.2"}}},
        });
        assert_eq!(r("{{.State.Status}}", &doc), "running");
        assert_eq!(r("{{ .State.Pid }} {{.State.Running}}", &doc), "42 true");
        assert_eq!(r("{{json .Config.Env}}", &doc), r#"["A=1","B=2"]"#);
        assert_eq!(r("{{.Config.Env | json}}", &doc), r#"["A=1","B=2"]"#);
        assert_eq!(r("{{.Config.Env}}", &doc), "[A=1 B=2]");
        assert_eq!(r(r#"{{index .Config.Labels "a.b"}}"#, &doc), "x");
        assert_eq!(
            r("ip={{.NetworkSettings.Networks.bridge.IPAddress}}\n", &doc),
            "ip=10.0.0.2\n"
        );
        assert_eq!(r("{{.Nope.Deeper}}", &doc), "<no value>");
        assert_eq!(r("{{.Config.Labels}}", &doc), "map[a.b:x]");
        assert_eq!(
            r("{{upper .State.Status}} {{len .Config.Env}}", &doc),
            "RUNNING 2"
        );
        assert_eq!(r("{{json .}}", &json!({"a": 1})), r#"{"a":1}"#);
        assert!(Template::parse("{{.A").is_err());
        assert!(Template::parse("{{ }}").is_err());
        assert!(Template::parse("{{nosuch .A}}")
            .unwrap()
            .render(&doc)
            .is_err());
    }
}
