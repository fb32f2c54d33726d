//! The three-way merge of `kubectl apply` (client-side apply), done by the
//! control plane for `Admin.Apply`.
//!
//! Contract: an applied object records the manifest it was applied from in
//! the annotation [`LAST_APPLIED`] (compact JSON, that annotation left
//! out). The next apply of the same object merges, field by field:
//! - a field the new manifest sets is set (maps are merged key by key, at
//!   any depth; lists and scalars are replaced as a whole);
//! - a field the last manifest set and the new one leaves out is removed
//!   (and returns to its default), as is a field the manifest sets to
//!   `null`;
//! - every other field stays as it is: labels added by `weftctl label`,
//!   values the control plane filled in (an allocated ClusterIP).
//!
//! An object without the annotation (created before, or by a registration)
//! is merged as if the last manifest were empty: nothing is removed.
//! Unlike kubectl's strategic merge, lists of objects (Service ports,
//! policy rules) are not merged by key: the manifest's list replaces the
//! live one.

use serde_json::{Map, Value};

/// The annotation holding the manifest of the last apply.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The manifest an apply records: `manifest` without the [`LAST_APPLIED`]
/// annotation, as compact JSON ending in a newline (as kubectl writes it).
pub fn recorded(manifest: &Value) -> String {
    let mut m = manifest.clone();
    if let Some(annotations) = m
        .get_mut("metadata")
        .and_then(|md| md.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED);
    }
    let mut text = m.to_string();
    text.push('\n');
    text
}

/// The manifest recorded on `live` (its [`LAST_APPLIED`] annotation), if
/// it has one that reads as a JSON object.
pub fn last_applied(live: &Value) -> Option<Value> {
    let text = live
        .get("metadata")?
        .get("annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(Value::is_object)
}

/// Merge `new` into `live`, removing what `last` set and `new` does not.
pub fn three_way(live: &Value, last: Option<&Value>, new: &Value) -> Value {
    match (live, new) {
        (Value::Object(live), Value::Object(new)) => {
            let last = last.and_then(Value::as_object);
            Value::Object(merge_maps(live, last, new))
        }
        _ => new.clone(),
    }
}

fn merge_maps(
    live: &Map<String, Value>,
    last: Option<&Map<String, Value>>,
    new: &Map<String, Value>,
) -> Map<String, Value> {
    let mut out = live.clone();
    if let Some(last) = last {
        for key in last.keys() {
            if !new.contains_key(key) {
                out.remove(key);
            }
        }
    }
    for (key, value) in new {
        if value.is_null() {
            out.remove(key);
            continue;
        }
        let merged = match (live.get(key), value) {
            (Some(Value::Object(l)), Value::Object(n)) => {
                let last = last.and_then(|m| m.get(key)).and_then(Value::as_object);
                Value::Object(merge_maps(l, last, n))
            }
            _ => strip_nulls(value),
        };
        out.insert(key.clone(), merged);
    }
    out
}

/// A new value without its `null` map entries (nothing to remove there).
fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn removed_fields_go_and_fields_set_by_others_stay() {
        let last = json!({"metadata": {"name": "web", "labels": {"app": "web", "tier": "fe"}},
                          "spec": {"selector": {"app": "web"}, "type": "NodePort"}});
        let live = json!({"metadata": {"name": "web", "uid": "u1",
                                       "labels": {"app": "web", "tier": "fe", "team": "a"}},
                          "spec": {"selector": {"app": "web"}, "type": "NodePort",
                                   "clusterIP": "10.96.0.7"}});
        let new = json!({"metadata": {"name": "web", "labels": {"app": "web"}},
                         "spec": {"selector": {"app": "web"}}});
        let got = three_way(&live, Some(&last), &new);
        assert_eq!(
            got,
            json!({"metadata": {"name": "web", "uid": "u1", "labels": {"app": "web", "team": "a"}},
                   "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.7"}})
        );
    }

    #[test]
    fn lists_are_replaced_and_null_removes() {
        let live = json!({"spec": {"ports": [{"port": 80}, {"port": 443}],
                                   "externalIPs": ["192.0.2.1"], "sessionAffinity": "ClientIP"}});
        let new = json!({"spec": {"ports": [{"port": 8080, "name": null}],
                                  "sessionAffinity": null}});
        let got = three_way(&live, None, &new);
        assert_eq!(
            got,
            json!({"spec": {"ports": [{"port": 8080}], "externalIPs": ["192.0.2.1"]}})
        );
    }

    #[test]
    fn without_a_last_manifest_nothing_is_removed() {
        let live = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let new = json!({"metadata": {"labels": {"a": "3"}}});
        assert_eq!(
            three_way(&live, None, &new),
            json!({"metadata": {"labels": {"a": "3", "b": "2"}}})
        );
    }

    #[test]
    fn the_recorded_manifest_leaves_out_its_own_annotation() {
        let m = json!({"metadata": {"name": "x", "annotations": {LAST_APPLIED: "old", "k": "v"}}});
        let text = recorded(&m);
        assert!(text.ends_with('\n'));
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back,
            json!({"metadata": {"name": "x", "annotations": {"k": "v"}}})
        );
        let live = json!({"metadata": {"annotations": {LAST_APPLIED: text}}});
        assert_eq!(last_applied(&live), Some(back));
        let broken = json!({"metadata": {"annotations": {LAST_APPLIED: "[1"}}});
        assert_eq!(last_applied(&broken), None);
    }
}
