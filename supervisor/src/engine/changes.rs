//! `commit --change`: the Dockerfile instructions that only change an
//! image's config (CMD, ENTRYPOINT, ENV, LABEL, EXPOSE, VOLUME, WORKDIR,
//! USER, STOPSIGNAL), applied to the config JSON (Docker's capitalised
//! keys), as Docker's commit does.

use serde_json::{json, Map, Value};

use super::{Error, Result};

/// One change, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Change {
    /// `CMD`: exec or shell form.
    Cmd(Vec<String>),
    /// `ENTRYPOINT`.
    Entrypoint(Vec<String>),
    /// `ENV K=V ...` or `ENV K V`.
    Env(Vec<(String, String)>),
    /// `LABEL K=V ...`.
    Label(Vec<(String, String)>),
    /// `EXPOSE 80/tcp ...`.
    Expose(Vec<String>),
    /// `VOLUME ["/a"]` or `VOLUME /a /b`.
    Volume(Vec<String>),
    /// `WORKDIR /p`.
    Workdir(String),
    /// `USER u[:g]`.
    User(String),
    /// `STOPSIGNAL SIG`.
    StopSignal(String),
}

fn bad(line: &str, why: &str) -> Error {
    Error::InvalidArgument(format!("change {line:?}: {why}"))
}

/// A JSON array of strings (exec form), if the text is one.
fn exec_form(rest: &str) -> Option<Vec<String>> {
    let t = rest.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

/// `K=V K2="v 2"` pairs (quotes removed).
fn pairs(line: &str, rest: &str) -> Result<Vec<(String, String)>> {
    let words = shell_words(rest).ok_or_else(|| bad(line, "unbalanced quotes"))?;
    if words.len() == 2 && !words[0].contains('=') {
        return Ok(vec![(words[0].clone(), words[1].clone())]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(bad(line, "expected KEY=VALUE")),
        })
        .collect()
}

/// Splits on blanks, honouring double and single quotes.
fn shell_words(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return None;
    }
    if in_word {
        out.push(cur);
    }
    Some(out)
}

/// Parses one `--change` line.
pub(super) fn parse(line: &str) -> Result<Change> {
    let t = line.trim();
    let (word, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
    let rest = rest.trim();
    let need = |what: &str| {
        if rest.is_empty() {
            Err(bad(line, &format!("{what} needs an argument")))
        } else {
            Ok(())
        }
    };
    let command = |rest: &str| {
        exec_form(rest).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
    };
    Ok(match word.to_ascii_uppercase().as_str() {
        "CMD" => {
            need("CMD")?;
            Change::Cmd(command(rest))
        }
        "ENTRYPOINT" => {
            need("ENTRYPOINT")?;
            Change::Entrypoint(command(rest))
        }
        "ENV" => {
            need("ENV")?;
            Change::Env(pairs(line, rest)?)
        }
        "LABEL" => {
            need("LABEL")?;
            Change::Label(pairs(line, rest)?)
        }
        "EXPOSE" => {
            need("EXPOSE")?;
            Change::Expose(
                rest.split_whitespace()
                    .map(|p| {
                        if p.contains('/') {
                            p.to_string()
                        } else {
                            format!("{p}/tcp")
                        }
                    })
                    .collect(),
            )
        }
        "VOLUME" => {
            need("VOLUME")?;
            let v = exec_form(rest)
                .unwrap_or_else(|| rest.split_whitespace().map(String::from).collect());
            if v.iter().any(|p| !p.starts_with('/')) {
                return Err(bad(line, "volume paths must be absolute"));
            }
            Change::Volume(v)
        }
        "WORKDIR" => {
            need("WORKDIR")?;
            Change::Workdir(rest.to_string())
        }
        "USER" => {
            need("USER")?;
            Change::User(rest.to_string())
        }
        "STOPSIGNAL" => {
            need("STOPSIGNAL")?;
            Change::StopSignal(rest.to_string())
        }
        _ => {
            return Err(bad(
                line,
                "one of CMD, ENTRYPOINT, ENV, LABEL, EXPOSE, VOLUME, WORKDIR, USER, STOPSIGNAL",
            ))
        }
    })
}

fn object<'a>(cfg: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = cfg.entry(key).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    v.as_object_mut().expect("an object")
}

/// Applies `changes` to an image config's `config` object.
pub(super) fn apply(cfg: &mut Map<String, Value>, changes: &[Change]) {
    for c in changes {
        match c {
            Change::Cmd(v) => {
                cfg.insert("Cmd".into(), json!(v));
            }
            Change::Entrypoint(v) => {
                cfg.insert("Entrypoint".into(), json!(v));
            }
            Change::Env(kv) => {
                let mut env: Vec<String> = cfg
                    .get("Env")
                    .and_then(|e| serde_json::from_value(e.clone()).ok())
                    .unwrap_or_default();
                for (k, v) in kv {
                    env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                    env.push(format!("{k}={v}"));
                }
                cfg.insert("Env".into(), json!(env));
            }
            Change::Label(kv) => {
                let labels = object(cfg, "Labels");
                for (k, v) in kv {
                    labels.insert(k.clone(), json!(v));
                }
            }
            Change::Expose(ports) => {
                let exposed = object(cfg, "ExposedPorts");
                for p in ports {
                    exposed.insert(p.clone(), json!({}));
                }
            }
            Change::Volume(paths) => {
                let vols = object(cfg, "Volumes");
                for p in paths {
                    vols.insert(p.clone(), json!({}));
                }
            }
            Change::Workdir(w) => {
                cfg.insert("WorkingDir".into(), json!(w));
            }
            Change::User(u) => {
                cfg.insert("User".into(), json!(u));
            }
            Change::StopSignal(s) => {
                cfg.insert("StopSignal".into(), json!(s));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_parse_and_apply() {
        let changes: Vec<Change> = [
            r#"CMD ["echo", "hi"]"#,
            "ENTRYPOINT /bin/x -y",
            "ENV A=1 B=\"two words\"",
            "env C 3",
            "LABEL team=a",
            "EXPOSE 80 53/udp",
            "VOLUME /data",
            "WORKDIR /w",
            "USER nobody",
            "STOPSIGNAL SIGINT",
        ]
        .iter()
        .map(|l| parse(l).unwrap())
        .collect();
        let mut cfg = json!({"Env": ["A=0", "PATH=/bin"]})
            .as_object()
            .unwrap()
            .clone();
        apply(&mut cfg, &changes);
        assert_eq!(cfg["Cmd"], json!(["echo", "hi"]));
        assert_eq!(cfg["Entrypoint"], json!(["/bin/sh", "-c", "/bin/x -y"]));
        assert_eq!(
            cfg["Env"],
            json!(["PATH=/bin", "A=1", "B=two words", "C=3"])
        );
        assert_eq!(cfg["Labels"]["team"], "a");
        assert!(cfg["ExposedPorts"]["80/tcp"].is_object());
        assert!(cfg["ExposedPorts"]["53/udp"].is_object());
        assert!(cfg["Volumes"]["/data"].is_object());
        assert_eq!(cfg["WorkingDir"], "/w");
        assert_eq!(cfg["User"], "nobody");
        assert_eq!(cfg["StopSignal"], "SIGINT");
    }

    #[test]
    fn bad_changes_name_the_line() {
        for l in ["RUN echo", "CMD", "ENV =x", "VOLUME rel", "LABEL a=\"b"] {
            let e = parse(l).unwrap_err();
            let word = l.split_whitespace().next().unwrap();
            assert!(e.to_string().contains(word), "{e}");
        }
    }
}
