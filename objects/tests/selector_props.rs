//! Property tests of label selectors: printing then parsing gives the same
//! selector, and the object form, the string form and the reparsed string
//! form agree on every label set.

use std::collections::BTreeMap;

use proptest::prelude::*;
use weft_objects::selector::{
    parse, LabelSelector, LabelSelectorRequirement, Operator, Requirement, Selector,
};
use weft_objects::values::SelectorOperator;

fn name_part() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9]",
        "[a-zA-Z0-9][-a-zA-Z0-9_.]{0,10}[a-zA-Z0-9]",
        Just("in".to_string()),
        Just("notin".to_string()),
    ]
}

fn key() -> impl Strategy<Value = String> {
    (
        proptest::option::of("[a-z0-9]{1,5}(\\.[a-z0-9]{1,5}){0,2}"),
        name_part(),
    )
        .prop_map(|(prefix, name)| match prefix {
            Some(p) => format!("{p}/{name}"),
            None => name,
        })
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), name_part()]
}

fn requirement() -> impl Strategy<Value = Requirement> {
    let op = prop_oneof![
        Just(Operator::Equals),
        Just(Operator::DoubleEquals),
        Just(Operator::NotEquals),
        Just(Operator::In),
        Just(Operator::NotIn),
        Just(Operator::Exists),
        Just(Operator::DoesNotExist),
        Just(Operator::GreaterThan),
        Just(Operator::LessThan),
    ];
    (
        key(),
        op,
        proptest::collection::vec(value(), 1..4),
        0u32..100_000,
    )
        .prop_map(|(k, op, vals, n)| {
            let values = match op {
                Operator::In | Operator::NotIn => vals,
                Operator::Exists | Operator::DoesNotExist => vec![],
                Operator::GreaterThan | Operator::LessThan => vec![n.to_string()],
                _ => vec![vals[0].clone()],
            };
            Requirement::new(&k, op, values).expect("generated requirements are valid")
        })
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    let k = prop_oneof![key(), Just("app".to_string()), Just("in".to_string())];
    let v = prop_oneof![value(), Just("web".to_string()), "[0-9]{1,6}"];
    proptest::collection::btree_map(k, v, 0..6)
}

fn label_selector() -> impl Strategy<Value = LabelSelector> {
    let op = prop_oneof![
        Just(SelectorOperator::In),
        Just(SelectorOperator::NotIn),
        Just(SelectorOperator::Exists),
        Just(SelectorOperator::DoesNotExist),
    ];
    let expr = (key(), op, proptest::collection::vec(value(), 1..4)).prop_map(
        |(key, operator, values)| {
            let values = match operator {
                SelectorOperator::In | SelectorOperator::NotIn => values,
                _ => vec![],
            };
            LabelSelectorRequirement {
                key,
                operator,
                values,
            }
        },
    );
    (
        proptest::collection::btree_map(key(), value(), 0..3),
        proptest::collection::vec(expr, 0..3),
    )
        .prop_map(|(match_labels, match_expressions)| LabelSelector {
            match_labels,
            match_expressions,
        })
}

proptest! {
    #[test]
    fn print_then_parse_is_identity(reqs in proptest::collection::vec(requirement(), 0..6)) {
        let sel = Selector::from_requirements(reqs);
        let text = sel.to_string();
        let back = parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(&back, &sel, "{}", text);
        prop_assert_eq!(back.to_string(), text);
    }

    #[test]
    fn string_and_object_forms_agree(sel in label_selector(), l in labels()) {
        let string_form = sel.to_selector().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(sel.matches(&l), string_form.matches(&l));
        let reparsed = parse(&string_form.to_string()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(reparsed.matches(&l), sel.matches(&l));
    }

    #[test]
    fn whitespace_is_insignificant(reqs in proptest::collection::vec(requirement(), 1..4)) {
        let sel = Selector::from_requirements(reqs);
        let spaced = sel.to_string().replace(',', " ,\t").replace('=', " = ").replace(" = =", " ==").replace("! =", "!=");
        let spaced = spaced.replace("! = ", "!= ");
        if let Ok(back) = parse(&spaced) {
            prop_assert_eq!(back, sel);
        }
    }
}
