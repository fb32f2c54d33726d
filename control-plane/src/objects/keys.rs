//! Where objects live in the store.
//!
//! Contract: one prefix per kind, `objects/<plural>/`; a namespaced object
//! is `objects/<plural>/<namespace>/<name>`, a Namespace
//! `objects/namespaces/<name>`. Names and namespaces never hold `/` (they
//! are DNS-1123 names, checked before a key is built), so [`parse`] inverts
//! [`object_key`]. `podsets/<node>` lists a node's pods (see `pods.rs`).

use weft_objects::Kind;

/// Prefix of every object key.
pub const OBJECTS_PREFIX: &str = "objects/";
/// Prefix of the per-node pod lists.
pub const PODSETS_PREFIX: &str = "podsets/";

/// The kinds stored as objects (every [`Kind`] but `Node`).
pub const STORED_KINDS: [Kind; 5] = [
    Kind::Namespace,
    Kind::Pod,
    Kind::Service,
    Kind::EndpointSlice,
    Kind::NetworkPolicy,
];

/// `objects/<plural>/`.
pub fn kind_prefix(kind: Kind) -> String {
    format!("{OBJECTS_PREFIX}{}/", kind.plural())
}

/// `objects/<plural>/<namespace>/` (a namespaced kind).
pub fn namespace_prefix(kind: Kind, namespace: &str) -> String {
    format!("{OBJECTS_PREFIX}{}/{namespace}/", kind.plural())
}

/// The key of one object.
pub fn object_key(kind: Kind, namespace: &str, name: &str) -> String {
    if kind.namespaced() {
        format!("{OBJECTS_PREFIX}{}/{namespace}/{name}", kind.plural())
    } else {
        format!("{OBJECTS_PREFIX}{}/{name}", kind.plural())
    }
}

/// The key of a namespace.
pub fn namespace_key(name: &str) -> String {
    object_key(Kind::Namespace, "", name)
}

/// `podsets/<node>`.
pub fn podset_key(node: &str) -> String {
    format!("{PODSETS_PREFIX}{node}")
}

/// (kind, namespace, name) of an object key.
pub fn parse(key: &str) -> Option<(Kind, &str, &str)> {
    let rest = key.strip_prefix(OBJECTS_PREFIX)?;
    let (plural, rest) = rest.split_once('/')?;
    let kind = STORED_KINDS.into_iter().find(|k| k.plural() == plural)?;
    if kind.namespaced() {
        let (ns, name) = rest.split_once('/')?;
        (!ns.is_empty() && !name.is_empty() && !name.contains('/')).then_some((kind, ns, name))
    } else {
        (!rest.is_empty() && !rest.contains('/')).then_some((kind, "", rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for (kind, ns, name) in [
            (Kind::Service, "shop", "web"),
            (Kind::Pod, "default", "p-1"),
            (Kind::Namespace, "", "shop"),
            (Kind::EndpointSlice, "shop", "web-abcde"),
            (Kind::NetworkPolicy, "x", "deny.all"),
        ] {
            let key = object_key(kind, ns, name);
            assert_eq!(parse(&key), Some((kind, ns, name)), "{key}");
        }
        assert_eq!(
            object_key(Kind::Service, "shop", "web"),
            "objects/services/shop/web"
        );
        assert_eq!(namespace_key("shop"), "objects/namespaces/shop");
        assert_eq!(parse("objects/services/shop"), None);
        assert_eq!(parse("objects/nodes/x"), None);
        assert_eq!(parse("nodes/x"), None);
    }
}
