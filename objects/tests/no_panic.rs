//! No input makes the parsers panic: arbitrary text, YAML-shaped text, and
//! real manifests with random bytes changed; whatever parses also goes
//! through defaulting, validation, derivation and printing without panic.

use proptest::prelude::*;
use weft_objects::endpoints::derive_endpoint_slices;
use weft_objects::manifest::{to_json, to_json_value, to_yaml};
use weft_objects::validation::{errors, update_errors, ValidationContext};
use weft_objects::{defaults, parse_manifests, selector, Object};

const SEEDS: [&str; 4] = [
    include_str!("fixtures/web-service.yaml"),
    include_str!("fixtures/netpol-docs.yaml"),
    include_str!("fixtures/list.yaml"),
    include_str!("fixtures/services.json"),
];

fn exercise(text: &str) {
    let Ok(objs) = parse_manifests(text) else {
        return;
    };
    let ctx = ValidationContext::default();
    let mut defaulted = Vec::new();
    for mut o in objs {
        let _ = errors(&o, &ctx);
        defaults::apply(&mut o);
        let _ = errors(&o, &ctx);
        let _ = to_json_value(&o).map(|v| (to_json(&v), to_yaml(&v)));
        defaulted.push(o);
    }
    for pair in defaulted.windows(2) {
        let mut new = pair[1].clone();
        defaults::prepare_update(&mut new, &pair[0]);
        let _ = update_errors(&new, &pair[0], &ctx);
    }
    let pods: Vec<_> = defaulted
        .iter()
        .filter_map(|o| {
            if let Object::Pod(p) = o {
                Some(p)
            } else {
                None
            }
        })
        .collect();
    for o in &defaulted {
        if let Object::Service(s) = o {
            let _ = derive_endpoint_slices(s, pods.iter().copied(), |_| true);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text(text in ".{0,400}") {
        exercise(&text);
        let _ = selector::parse(&text);
    }

    #[test]
    fn yaml_shaped_text(text in "[-a-zA-Z0-9:{}\\[\\],\" \n.!&*#|>'/]{0,300}") {
        exercise(&format!("apiVersion: v1\nkind: Service\n{text}"));
        exercise(&text);
        let _ = selector::parse(&text);
    }

    #[test]
    fn mutated_manifests(seed in 0usize..4, edits in proptest::collection::vec((any::<usize>(), any::<char>()), 1..6)) {
        let mut chars: Vec<char> = SEEDS[seed].chars().collect();
        for (at, c) in edits {
            let i = at % chars.len();
            chars[i] = c;
        }
        exercise(&chars.into_iter().collect::<String>());
    }

    #[test]
    fn selector_shaped_text(text in "[a-z!=(), ]{0,60}") {
        let _ = selector::parse(&text);
    }
}

#[test]
fn hostile_inputs() {
    let deep_yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {}\n",
        "[".repeat(100_000)
    );
    assert!(parse_manifests(&deep_yaml).is_err());
    let deep_json = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    assert!(parse_manifests(&deep_json).is_err());
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
    assert!(parse_manifests(bomb).is_err(), "alias expansion is bounded");
    exercise("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: x}\nspec: {ports: [{port: 2147483647, nodePort: -2147483648, targetPort: -2147483648}], sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: -2147483648}}}\n");
    exercise("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: x, generation: -9223372036854775808}\nstatus: {podIPs: [{ip: \"::ffff:1.2.3.4\"}, {ip: x}, {ip: \"1.2.3.4\"}]}\n");
}
