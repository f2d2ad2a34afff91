//! `WWW-Authenticate` challenges (RFC 7235), as registries send them on a
//! 401: which scheme they want and, for `Bearer`, where to get a token.
//! Pure (fuzzed by `fuzz_www_authenticate`); used by [`super::source`].

/// One `WWW-Authenticate` challenge: its scheme and parameters.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    /// `Bearer`, `Basic`, ...
    pub scheme: String,
    /// Its parameters, in order.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name` (any case).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The challenges of one `WWW-Authenticate` value (RFC 7235: `scheme
/// k=v, k="quoted", scheme2 ...`). Unparsable rests are dropped.
pub fn parse_challenges(text: &str) -> Vec<Challenge> {
    let s = text.as_bytes();
    let mut i = 0;
    let mut out: Vec<Challenge> = Vec::new();
    let is_token = |c: u8| !matches!(c, b' ' | b'\t' | b',' | b'=' | b'"');
    let skip = |i: &mut usize, seps: &[u8]| {
        while *i < s.len() && seps.contains(&s[*i]) {
            *i += 1;
        }
    };
    loop {
        skip(&mut i, b" \t,");
        if i >= s.len() {
            return out;
        }
        let start = i;
        while i < s.len() && is_token(s[i]) {
            i += 1;
        }
        if start == i {
            return out;
        }
        let word = &text[start..i];
        let mut j = i;
        skip(&mut j, b" \t");
        if j < s.len() && s[j] == b'=' && !out.is_empty() {
            // A parameter of the current challenge.
            j += 1;
            skip(&mut j, b" \t");
            let value = if j < s.len() && s[j] == b'"' {
                j += 1;
                let mut v = Vec::new();
                while j < s.len() && s[j] != b'"' {
                    if s[j] == b'\\' && j + 1 < s.len() {
                        j += 1;
                    }
                    v.push(s[j]);
                    j += 1;
                }
                j += 1;
                String::from_utf8_lossy(&v).into_owned()
            } else {
                let vs = j;
                while j < s.len() && is_token(s[j]) {
                    j += 1;
                }
                text[vs..j].to_string()
            };
            if let Some(c) = out.last_mut() {
                c.params.push((word.to_string(), value));
            }
            i = j;
        } else {
            out.push(Challenge {
                scheme: word.to_string(),
                params: Vec::new(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "Bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example/token"));
        assert_eq!(c[0].param("SERVICE"), Some("registry.example"));
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull"));
        let c =
            parse_challenges(r#"Basic realm="Registry Realm", Bearer realm=x, service = "s\"q""#);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].scheme, "Basic");
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));
        assert_eq!(c[1].param("realm"), Some("x"));
        assert_eq!(c[1].param("service"), Some("s\"q"));
        assert!(parse_challenges("").is_empty());
        assert!(parse_challenges("=x").is_empty());
        // Unterminated quotes and stray parameters do not panic.
        let c = parse_challenges(r#"Bearer realm="open"#);
        assert_eq!(c[0].param("realm"), Some("open"));
    }
}
