//! The label selector string syntax of `kubectl -l` and of Kubernetes'
//! `labels.Parse`.
//!
//! Grammar: requirements separated by `,`; each is `key` (exists), `!key`
//! (does not exist), `key=value` / `key==value` / `key!=value` (the value
//! may be empty), `key in (v1,v2)` / `key notin (v1,v2)` (`in`/`notin` are
//! keywords only in operator position), or `key>N` / `key<N` (integers).
//! Whitespace separates tokens; `=`, `!`, `(`, `)`, `,`, `<`, `>` end an
//! identifier. Keys must be label keys and values label values.
//!
//! Contract: parsing never panics; it returns the first error met, with a
//! message naming what was found and what was expected.

use std::collections::BTreeMap;
use std::fmt;

use crate::names::{is_label_key, is_label_value};

/// A selector that did not parse or holds an invalid key or value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

/// A requirement's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operator {
    /// `key=value`.
    Equals,
    /// `key==value`.
    DoubleEquals,
    /// `key!=value`.
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)`.
    NotIn,
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
    /// `key>N`.
    GreaterThan,
    /// `key<N`.
    LessThan,
}

/// One requirement of a [`Selector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    op: Operator,
    /// Sorted, without duplicates.
    values: Vec<String>,
}

impl Requirement {
    /// A requirement, checked as Kubernetes' `NewRequirement` checks it.
    pub fn new(key: &str, op: Operator, mut values: Vec<String>) -> Result<Self, SelectorError> {
        let key_errs = is_label_key(key);
        if !key_errs.is_empty() {
            return Err(SelectorError(format!(
                "invalid label key {key:?}: {}",
                key_errs.join("; ")
            )));
        }
        values.sort();
        values.dedup();
        let count_err = match op {
            Operator::In | Operator::NotIn if values.is_empty() => {
                Some("for 'in', 'notin' operators, values set can't be empty")
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                Some("exact-match compatibility requires one single value")
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                Some("values set must be empty for exists and does not exist")
            }
            Operator::GreaterThan | Operator::LessThan if values.len() != 1 => {
                Some("for 'Gt', 'Lt' operators, exactly one value is required")
            }
            _ => None,
        };
        if let Some(msg) = count_err {
            return Err(SelectorError(format!("key {key:?}: {msg}")));
        }
        for v in &values {
            if matches!(op, Operator::GreaterThan | Operator::LessThan) && v.parse::<i64>().is_err()
            {
                return Err(SelectorError(format!(
                    "key {key:?}: for 'Gt', 'Lt' operators, the value must be an integer, not {v:?}"
                )));
            }
            let errs = is_label_value(v);
            if !errs.is_empty() {
                return Err(SelectorError(format!(
                    "invalid label value {v:?} for key {key:?}: {}",
                    errs.join("; ")
                )));
            }
        }
        Ok(Requirement {
            key: key.to_string(),
            op,
            values,
        })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.op
    }

    /// The values, sorted.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether `labels` satisfy this requirement (Kubernetes' semantics:
    /// `!=` and `notin` match an absent key; `>`/`<` need an integer label).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.op {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                value.is_some_and(|v| self.values.contains(v))
            }
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(have), Some(want)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.op == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined = self.values.join(",");
        match self.op {
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::Equals => write!(f, "{}={joined}", self.key),
            Operator::DoubleEquals => write!(f, "{}=={joined}", self.key),
            Operator::NotEquals => write!(f, "{}!={joined}", self.key),
            Operator::GreaterThan => write!(f, "{}>{joined}", self.key),
            Operator::LessThan => write!(f, "{}<{joined}", self.key),
            Operator::In => write!(f, "{} in ({joined})", self.key),
            Operator::NotIn => write!(f, "{} notin ({joined})", self.key),
        }
    }
}

/// A parsed selector: requirements (all must hold), ordered by key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// A selector of these requirements (stably ordered by key, as
    /// Kubernetes orders them).
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Selector { requirements }
    }

    /// The requirements.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether the selector has no requirement (it then matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    End,
    Ident(String),
    Comma,
    Open,
    Close,
    Bang,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    In,
    NotIn,
}

impl Token {
    fn text(&self) -> String {
        match self {
            Token::End => String::new(),
            Token::Ident(s) => s.clone(),
            Token::Comma => ",".into(),
            Token::Open => "(".into(),
            Token::Close => ")".into(),
            Token::Bang => "!".into(),
            Token::Eq => "=".into(),
            Token::DoubleEq => "==".into(),
            Token::NotEq => "!=".into(),
            Token::Gt => ">".into(),
            Token::Lt => "<".into(),
            Token::In => "in".into(),
            Token::NotIn => "notin".into(),
        }
    }

    /// In value position the keywords are plain identifiers.
    fn into_value(self) -> Token {
        match self {
            Token::In => Token::Ident("in".into()),
            Token::NotIn => Token::Ident("notin".into()),
            t => t,
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn lex(input: &str) -> Vec<Token> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, ' ' | '\t' | '\r' | '\n') {
            i += 1;
            continue;
        }
        if is_special(c) {
            let next = chars.get(i + 1).copied();
            let (tok, len) = match (c, next) {
                ('!', Some('=')) => (Token::NotEq, 2),
                ('=', Some('=')) => (Token::DoubleEq, 2),
                ('!', _) => (Token::Bang, 1),
                ('=', _) => (Token::Eq, 1),
                ('(', _) => (Token::Open, 1),
                (')', _) => (Token::Close, 1),
                (',', _) => (Token::Comma, 1),
                ('>', _) => (Token::Gt, 1),
                _ => (Token::Lt, 1),
            };
            tokens.push(tok);
            i += len;
            continue;
        }
        let start = i;
        while i < chars.len()
            && !is_special(chars[i])
            && !matches!(chars[i], ' ' | '\t' | '\r' | '\n')
        {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        tokens.push(match word.as_str() {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Ident(word),
        });
    }
    tokens.push(Token::End);
    tokens
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Token {
        self.tokens.get(self.pos).cloned().unwrap_or(Token::End)
    }

    fn next(&mut self) -> Token {
        let t = self.peek();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let mut first = self.next().into_value();
        let negated = first == Token::Bang;
        if negated {
            first = self.next().into_value();
        }
        let Token::Ident(key) = first else {
            return Err(found(&first, "identifier"));
        };
        let key_errs = is_label_key(&key);
        if !key_errs.is_empty() {
            return Err(SelectorError(format!(
                "invalid label key {key:?}: {}",
                key_errs.join("; ")
            )));
        }
        if negated || matches!(self.peek(), Token::End | Token::Comma) {
            let op = if negated {
                Operator::DoesNotExist
            } else {
                Operator::Exists
            };
            return Requirement::new(&key, op, Vec::new());
        }
        let op = match self.next() {
            Token::Eq => Operator::Equals,
            Token::DoubleEq => Operator::DoubleEquals,
            Token::NotEq => Operator::NotEquals,
            Token::Gt => Operator::GreaterThan,
            Token::Lt => Operator::LessThan,
            Token::In => Operator::In,
            Token::NotIn => Operator::NotIn,
            other => return Err(found(&other, "=, ==, !=, in, notin, >, <")),
        };
        let values = if matches!(op, Operator::In | Operator::NotIn) {
            self.value_list()?
        } else {
            self.exact_value()?
        };
        Requirement::new(&key, op, values)
    }

    fn exact_value(&mut self) -> Result<Vec<String>, SelectorError> {
        match self.peek().into_value() {
            Token::End | Token::Comma => Ok(vec![String::new()]),
            Token::Ident(v) => {
                self.next();
                Ok(vec![v])
            }
            other => Err(found(&other, "identifier")),
        }
    }

    fn value_list(&mut self) -> Result<Vec<String>, SelectorError> {
        let open = self.next();
        if open != Token::Open {
            return Err(found(&open, "'('"));
        }
        let mut values = Vec::new();
        let mut expect_value = true;
        loop {
            match self.next().into_value() {
                Token::Ident(v) if expect_value => {
                    values.push(v);
                    expect_value = false;
                }
                Token::Comma => {
                    if expect_value {
                        values.push(String::new());
                    }
                    expect_value = true;
                }
                Token::Close => {
                    if expect_value {
                        values.push(String::new());
                    }
                    return Ok(values);
                }
                other if expect_value => return Err(found(&other, "',', ')' or identifier")),
                other => return Err(found(&other, "',' or ')'")),
            }
        }
    }
}

fn found(tok: &Token, expected: &str) -> SelectorError {
    if *tok == Token::End {
        SelectorError(format!("found end of string, expected: {expected}"))
    } else {
        SelectorError(format!("found '{}', expected: {expected}", tok.text()))
    }
}

/// Parses a selector in the `-l` syntax. The empty string (or only
/// whitespace) is the empty selector, which matches everything.
pub fn parse(input: &str) -> Result<Selector, SelectorError> {
    let mut p = Parser {
        tokens: lex(input),
        pos: 0,
    };
    let mut requirements = Vec::new();
    if p.peek() == Token::End {
        return Ok(Selector::default());
    }
    loop {
        let r = p
            .requirement()
            .map_err(|e| SelectorError(format!("unable to parse requirement: {}", e.0)))?;
        requirements.push(r);
        match p.next() {
            Token::End => break,
            Token::Comma => {
                if !matches!(p.peek().into_value(), Token::Ident(_) | Token::Bang) {
                    return Err(found(&p.peek(), "identifier after ','"));
                }
            }
            other => return Err(found(&other, "',' or end of string")),
        }
    }
    Ok(Selector::from_requirements(requirements))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_form() {
        let s = parse("a=b,c!=d,e in (x,y),f notin (z),g,!h").unwrap();
        assert_eq!(s.to_string(), "a=b,c!=d,e in (x,y),f notin (z),g,!h");
        let l = labels(&[("a", "b"), ("e", "y"), ("g", "1")]);
        assert!(s.matches(&l));
        assert!(
            !s.matches(&labels(&[("a", "b"), ("e", "y")])),
            "g must exist"
        );
        assert!(
            !s.matches(&labels(&[("a", "b"), ("e", "y"), ("g", ""), ("h", "")])),
            "h must not exist"
        );
        let s = parse(" z == 1 , a in (in, notin) ").unwrap();
        assert_eq!(s.to_string(), "a in (in,notin),z==1");
        let s = parse("n>5,m<3").unwrap();
        assert!(s.matches(&labels(&[("n", "6"), ("m", "2")])));
        assert!(!s.matches(&labels(&[("n", "5"), ("m", "2")])));
        assert_eq!(parse("a=").unwrap().to_string(), "a=");
        assert_eq!(parse("a in ()").unwrap().requirements()[0].values(), [""]);
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn refuses_with_a_reason() {
        let err = |s: &str| parse(s).unwrap_err().to_string();
        assert_eq!(
            err("a,"),
            "found end of string, expected: identifier after ','"
        );
        assert_eq!(
            err("a b"),
            "unable to parse requirement: found 'b', expected: =, ==, !=, in, notin, >, <"
        );
        assert_eq!(err("a=b c"), "found 'c', expected: ',' or end of string");
        assert_eq!(
            err("=a"),
            "unable to parse requirement: found '=', expected: identifier"
        );
        assert_eq!(
            err("a in x"),
            "unable to parse requirement: found 'x', expected: '('"
        );
        assert_eq!(
            err("a in (x y)"),
            "unable to parse requirement: found 'y', expected: ',' or ')'"
        );
        assert_eq!(
            err("a in (x"),
            "unable to parse requirement: found end of string, expected: ',' or ')'"
        );
        assert!(err("a>x").contains("must be an integer"));
        assert!(err("-a=b").starts_with("unable to parse requirement: invalid label key \"-a\""));
        assert!(err("a=-b").contains("invalid label value \"-b\""));
        assert!(err("!a=b").contains("found '=', expected: ',' or end of string"));
    }
}
