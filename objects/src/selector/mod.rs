//! Label selectors: the `meta/v1` `LabelSelector` object (NetworkPolicy
//! peers, Service-style `matchLabels`) and the kubectl `-l` string syntax.
//!
//! Contract:
//! - [`LabelSelector::matches`] is Kubernetes' `LabelSelectorAsSelector(..)
//!   .Matches(..)`: an empty selector matches everything; `In` needs the key
//!   with one of the values; `NotIn` matches when the key is absent or has
//!   another value; an operator Kubernetes does not define matches nothing
//!   (validation refuses it before it is stored).
//! - [`parse`](parse::parse) reads the `-l` syntax (`a=b,c!=d,e in (x,y),f
//!   notin (z),g,!h`, also `==`, `>` and `<`), with Kubernetes' grammar
//!   and checks, and [`Selector`]'s `Display` prints the canonical form
//!   Kubernetes prints (requirements by key, values sorted).
//!
//! Files: `mod.rs` the object form, `parse.rs` the string form.

mod parse;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use parse::{parse, Operator, Requirement, Selector, SelectorError};

use crate::values::SelectorOperator;

/// `metav1.LabelSelector`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// `key: value` pairs, each an `In` with one value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: SelectorOperator,
    /// The values for `In` / `NotIn` (must be empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// A selector of `key=value` pairs.
    pub fn from_labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        LabelSelector {
            match_labels: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            match_expressions: Vec::new(),
        }
    }

    /// Whether the selector has no requirement (it then selects everything).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }

    /// The equivalent string-form selector (for display and `-l`-style
    /// matching); fails on operators or values Kubernetes refuses.
    pub fn to_selector(&self) -> Result<Selector, SelectorError> {
        let mut reqs = Vec::new();
        for (k, v) in &self.match_labels {
            reqs.push(Requirement::new(k, Operator::Equals, vec![v.clone()])?);
        }
        for r in &self.match_expressions {
            let op = match r.operator {
                SelectorOperator::In => Operator::In,
                SelectorOperator::NotIn => Operator::NotIn,
                SelectorOperator::Exists => Operator::Exists,
                SelectorOperator::DoesNotExist => Operator::DoesNotExist,
                SelectorOperator::Other(ref o) => {
                    return Err(SelectorError(format!(
                        "{o:?} is not a valid label selector operator"
                    )))
                }
            };
            reqs.push(Requirement::new(&r.key, op, r.values.clone())?);
        }
        Ok(Selector::from_requirements(reqs))
    }
}

impl LabelSelectorRequirement {
    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            SelectorOperator::In => value.is_some_and(|v| self.values.contains(v)),
            SelectorOperator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
            SelectorOperator::Other(_) => false,
        }
    }
}

/// Whether a Service-style selector map (`spec.selector`) matches `labels`:
/// every pair present. An empty map matches everything; callers decide what
/// an empty selector means for them (a Service without selector gets no
/// endpoints).
pub fn map_matches(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
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

    fn req(key: &str, op: SelectorOperator, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn matching() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(LabelSelector::default().matches(&l));
        assert!(LabelSelector::from_labels([("app", "web")]).matches(&l));
        assert!(!LabelSelector::from_labels([("app", "db")]).matches(&l));
        let expr = |r| LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![r],
        };
        assert!(expr(req("tier", SelectorOperator::In, &["front", "back"])).matches(&l));
        assert!(!expr(req("tier", SelectorOperator::In, &["back"])).matches(&l));
        assert!(!expr(req("zone", SelectorOperator::In, &["a"])).matches(&l));
        assert!(expr(req("zone", SelectorOperator::NotIn, &["a"])).matches(&l));
        assert!(!expr(req("tier", SelectorOperator::NotIn, &["front"])).matches(&l));
        assert!(expr(req("app", SelectorOperator::Exists, &[])).matches(&l));
        assert!(!expr(req("app", SelectorOperator::DoesNotExist, &[])).matches(&l));
        assert!(!expr(req("app", SelectorOperator::Other("Gt".into()), &[])).matches(&l));
    }

    #[test]
    fn object_to_string_form() {
        let s = LabelSelector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: vec![req("env", SelectorOperator::NotIn, &["prod", "dev"])],
        };
        assert_eq!(
            s.to_selector().unwrap().to_string(),
            "app=web,env notin (dev,prod)"
        );
    }
}
