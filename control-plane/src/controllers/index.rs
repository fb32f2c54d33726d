//! Label indexes of the controllers' view, so that a pod change finds the
//! Services that select it, and a Service finds its candidate pods,
//! without looking at every pod or every Service of the namespace.
//!
//! Contract: [`LabelIndex`] maps `(namespace, key, value)` to the names
//! holding that label (pods) or that selector term (Services). A lookup
//! returns a superset of the matches (callers still match the whole
//! selector); it is exact for everything inserted and not removed.

use std::collections::{BTreeMap, BTreeSet};

/// `(namespace, key, value)` -> names.
#[derive(Debug, Default)]
pub struct LabelIndex {
    map: BTreeMap<(String, String, String), BTreeSet<String>>,
}

impl LabelIndex {
    /// Note `name` in `ns` under each pair of `labels`.
    pub fn insert(&mut self, ns: &str, name: &str, labels: &BTreeMap<String, String>) {
        for (k, v) in labels {
            self.map
                .entry((ns.to_string(), k.clone(), v.clone()))
                .or_default()
                .insert(name.to_string());
        }
    }

    /// Forget `name` in `ns` under each pair of `labels`.
    pub fn remove(&mut self, ns: &str, name: &str, labels: &BTreeMap<String, String>) {
        for (k, v) in labels {
            let key = (ns.to_string(), k.clone(), v.clone());
            if let Some(names) = self.map.get_mut(&key) {
                names.remove(name);
                if names.is_empty() {
                    self.map.remove(&key);
                }
            }
        }
    }

    fn names(&self, ns: &str, k: &str, v: &str) -> Option<&BTreeSet<String>> {
        self.map
            .get(&(ns.to_string(), k.to_string(), v.to_string()))
    }

    /// The names in `ns` that hold every pair of `selector` are among
    /// these: the names under its rarest pair. `None` when none can match
    /// (an empty selector, or a pair nobody holds).
    pub fn candidates<'a>(
        &'a self,
        ns: &str,
        selector: &BTreeMap<String, String>,
    ) -> Option<&'a BTreeSet<String>> {
        let mut best: Option<&BTreeSet<String>> = None;
        for (k, v) in selector {
            let names = self.names(ns, k, v)?;
            if best.is_none_or(|b| names.len() < b.len()) {
                best = Some(names);
            }
        }
        best
    }

    /// The names in `ns` under any pair of `labels` (each once).
    pub fn any_of(&self, ns: &str, labels: &BTreeMap<String, String>) -> BTreeSet<String> {
        labels
            .iter()
            .filter_map(|(k, v)| self.names(ns, k, v))
            .flatten()
            .cloned()
            .collect()
    }
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
    fn candidates_come_from_the_rarest_pair_and_follow_removal() {
        let mut ix = LabelIndex::default();
        ix.insert("a", "p1", &labels(&[("app", "web"), ("tier", "fe")]));
        ix.insert("a", "p2", &labels(&[("app", "web"), ("tier", "be")]));
        ix.insert("a", "p3", &labels(&[("app", "db"), ("tier", "be")]));
        ix.insert("b", "p4", &labels(&[("app", "web")]));
        let got = |ix: &LabelIndex, ns: &str, sel: &[(&str, &str)]| -> Vec<String> {
            ix.candidates(ns, &labels(sel))
                .into_iter()
                .flatten()
                .cloned()
                .collect()
        };
        assert_eq!(got(&ix, "a", &[("app", "web"), ("tier", "fe")]), ["p1"]);
        assert_eq!(got(&ix, "a", &[("app", "web")]), ["p1", "p2"]);
        assert_eq!(got(&ix, "b", &[("app", "web")]), ["p4"]);
        assert!(got(&ix, "a", &[("app", "web"), ("tier", "x")]).is_empty());
        assert!(got(&ix, "a", &[]).is_empty());
        ix.remove("a", "p1", &labels(&[("app", "web"), ("tier", "fe")]));
        assert_eq!(got(&ix, "a", &[("app", "web")]), ["p2"]);
        assert!(got(&ix, "a", &[("tier", "fe")]).is_empty());
        assert_eq!(
            ix.any_of("a", &labels(&[("app", "db"), ("tier", "be")])),
            BTreeSet::from(["p2".to_string(), "p3".to_string()])
        );
    }
}
