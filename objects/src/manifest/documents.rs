//! Splitting manifest text into documents, each as a JSON value.
//!
//! Contract: text starting with `{` (after whitespace) is a stream of JSON
//! values; anything else is YAML, possibly several documents separated by
//! `---`. YAML is turned into JSON as Kubernetes' `sigs.k8s.io/yaml` does:
//! scalar map keys become strings (`80: x` -> `"80"`), tags and non-finite
//! numbers are refused. Parsing never panics; nesting deeper than the
//! parsers' limits (128 levels) is an error.

use serde::Deserialize;
use serde_json::{Map, Number, Value};
use yaml_serde::Value as Yaml;

/// One document: its index in the stream and its value (`Null` when empty).
pub(crate) type Document = (usize, Result<Value, String>);

/// The documents of `text`, in order. A syntax error ends the stream: the
/// documents before it are returned, then the error.
pub(crate) fn documents(text: &str) -> Vec<Document> {
    if text.trim_start().starts_with('{') {
        json_documents(text)
    } else {
        yaml_documents(text)
    }
}

fn json_documents(text: &str) -> Vec<Document> {
    let mut out = Vec::new();
    for (i, v) in serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .enumerate()
    {
        match v {
            Ok(v) => out.push((i, Ok(v))),
            Err(e) => {
                out.push((i, Err(format!("invalid JSON: {e}"))));
                break;
            }
        }
    }
    out
}

/// The deepest nesting of flow collections (`[`, `{`) in `text`, counting
/// outside quoted scalars and comments. An over-estimate is harmless: a
/// manifest never nests 128 flow levels.
fn flow_depth(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut prev = '\n';
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some('"') if c == '\\' => {
                chars.next();
            }
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' if prev.is_whitespace() || matches!(prev, '[' | '{' | ',' | ':') => {
                    quote = Some(c)
                }
                '#' if prev.is_whitespace() => {
                    for c in chars.by_ref() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                '[' | '{' => {
                    depth += 1;
                    max = max.max(depth);
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        prev = c;
    }
    max
}

fn yaml_documents(text: &str) -> Vec<Document> {
    let mut out = Vec::new();
    // libyaml's scanner is quadratic in flow nesting depth: refuse deep
    // nesting before it runs, so hostile input costs linear time.
    if flow_depth(text) > MAX_DEPTH {
        out.push((
            0,
            Err(format!(
                "invalid YAML: nested deeper than {MAX_DEPTH} levels"
            )),
        ));
        return out;
    }
    for (i, doc) in yaml_serde::Deserializer::from_str(text).enumerate() {
        match Yaml::deserialize(doc) {
            Ok(y) => out.push((i, yaml_to_json(y, 0))),
            Err(e) => {
                out.push((i, Err(format!("invalid YAML: {e}"))));
                break;
            }
        }
    }
    out
}

const MAX_DEPTH: usize = 128;

fn yaml_to_json(y: Yaml, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "invalid YAML: nested deeper than {MAX_DEPTH} levels"
        ));
    }
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(n) => number(&n)?,
        Yaml::String(s) => Value::String(s),
        Yaml::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(|i| yaml_to_json(i, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = key_string(k)?;
                if out.contains_key(&key) {
                    return Err(format!("invalid YAML: duplicate key {key:?}"));
                }
                out.insert(key, yaml_to_json(v, depth + 1)?);
            }
            Value::Object(out)
        }
        Yaml::Tagged(t) => {
            return Err(format!(
                "invalid YAML: tags are not supported (found !{})",
                t.tag
            ))
        }
    })
}

fn number(n: &yaml_serde::Number) -> Result<Value, String> {
    if let Some(i) = n.as_i64() {
        return Ok(Value::Number(i.into()));
    }
    if let Some(u) = n.as_u64() {
        return Ok(Value::Number(u.into()));
    }
    n.as_f64()
        .and_then(Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| format!("invalid YAML: the number {n} has no JSON form"))
}

fn key_string(k: Yaml) -> Result<String, String> {
    match k {
        Yaml::String(s) => Ok(s),
        Yaml::Bool(b) => Ok(b.to_string()),
        Yaml::Number(n) => Ok(n.to_string()),
        Yaml::Null => Ok("null".to_string()),
        _ => Err("invalid YAML: a map key must be a string, a number or a boolean".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_streams() {
        let docs = documents("a: 1\n---\n---\nb: [x]\n80: y\n");
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].1.as_ref().unwrap()["a"], 1);
        assert!(docs[1].1.as_ref().unwrap().is_null());
        assert_eq!(docs[2].1.as_ref().unwrap()["80"], "y");
    }

    #[test]
    fn json_streams() {
        let docs = documents(" {\"a\": 1}\n{\"b\": 2}");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].1.as_ref().unwrap()["b"], 2);
        let docs = documents("{\"a\": 1} {");
        assert!(docs[1].1.is_err());
    }

    #[test]
    fn flow_depth_ignores_quotes_and_comments() {
        assert_eq!(flow_depth("a: [1, [2]]\nb: {c: [3]}\n"), 2);
        assert_eq!(flow_depth("a: \"[[[[\"\nb: '{{{'\n# [[[[\nc: d[e\n"), 1);
        assert_eq!(flow_depth(r#"a: "x\"[[""#), 0);
        assert_eq!(flow_depth(&"[".repeat(200)), 200);
    }

    #[test]
    fn refusals() {
        assert!(documents("a: !foo 1\n")[0].1.is_err());
        assert!(documents("a: .nan\n")[0].1.is_err());
        assert!(documents("a: 1\na: 2\n")[0].1.is_err());
        assert!(documents("a: [1\n")[0].1.is_err());
        let deep = "[".repeat(10_000);
        assert!(documents(&deep)[0].1.is_err());
        let deep = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
        assert!(documents(&deep)[0].1.is_err());
    }
}
