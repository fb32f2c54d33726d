//! weft's NetworkPolicy conformance scenarios (`weft_objects::policy::
//! conformance`), run without a cluster: after every step the objects are
//! resolved into PolicySpecs per node, compiled into one `PolicyTable` per
//! node as the agents compile them, and every pod probes every pod on
//! 80/81 TCP/UDP: egress judged on the source's node AND ingress on the
//! destination's node. The observed 9×9 table must equal the scenario's
//! table, and `PolicyView::explain` must agree with every cell.

use std::collections::BTreeMap;

use weft_objects::policy::conformance::{
    scenarios, Model, ModelState, Probe, Reachability, Scenario, NODES,
};
use weft_objects::policy::{PolicyView, Target};
use weft_objects::Pod;
use weft_switch::policy::{Direction, PolicyTable};

/// Reachability of every pair for `probe`, through per-node tables.
fn observe(view: &PolicyView<'_>, pods: &[&Pod], probe: Probe) -> Reachability {
    let tables: BTreeMap<&str, PolicyTable> = NODES
        .iter()
        .map(|n| (*n, PolicyTable::compile(&view.specs_for_node(n))))
        .collect();
    let mut table = Reachability::new(Model::pod_names(), false);
    let proto = probe.protocol.number();
    for (f, from) in pods.iter().enumerate() {
        for (t, to) in pods.iter().enumerate() {
            if f == t {
                // A pod reaching its own address stays on its loopback.
                table.set(f, t, true);
                continue;
            }
            let (src, dst) = (from.ips()[0], to.ips()[0]);
            let egress = tables[from.spec.node_name.as_str()]
                .evaluate(Direction::Egress, src, dst, proto, probe.port)
                .allows();
            let ingress = tables[to.spec.node_name.as_str()]
                .evaluate(Direction::Ingress, dst, src, proto, probe.port)
                .allows();
            table.set(f, t, egress && ingress);
        }
    }
    table
}

/// The nine pods in table order.
fn model_pods<'a>(view: &PolicyView<'a>) -> Vec<&'a Pod> {
    Model::pod_names()
        .iter()
        .map(|n| {
            let (ns, name) = n.split_once('/').unwrap();
            view.pod(ns, name).expect("every model pod takes part")
        })
        .collect()
}

/// Runs one scenario; returns a readable report of every failure.
fn run(file: &str, text: &str) -> Vec<String> {
    let scenario = match Scenario::parse(text) {
        Ok(s) => s,
        Err(e) => return vec![format!("{file}: {e}")],
    };
    let mut failures = Vec::new();
    let mut state = ModelState::new();
    let names = Model::pod_names();
    for (i, step) in scenario.steps.iter().enumerate() {
        for action in &step.actions {
            if let Err(e) = state.apply(action) {
                return vec![format!("{file} step {i}: {e}")];
            }
        }
        let view = state.view();
        let pods = model_pods(&view);
        for expectation in &step.expect {
            for probe in &expectation.probes {
                let observed = observe(&view, &pods, *probe);
                let mut report = String::new();
                if observed != expectation.table {
                    report += &expectation.table.comparison(&observed);
                    for (f, t) in expectation.table.mismatches(&observed) {
                        let e = view.explain(
                            (&pods[f].metadata.namespace, &pods[f].metadata.name),
                            &Target::Pod {
                                namespace: pods[t].metadata.namespace.clone(),
                                name: pods[t].metadata.name.clone(),
                            },
                            probe.port,
                            probe.protocol,
                        );
                        match e {
                            Ok(e) => report += &e.to_string(),
                            Err(e) => report += &format!("{} -> {}: {e}\n", names[f], names[t]),
                        }
                    }
                }
                // explain must agree with the compiled tables, cell by cell.
                for (f, from) in pods.iter().enumerate() {
                    for (t, to) in pods.iter().enumerate() {
                        if f == t {
                            continue;
                        }
                        let target = Target::Pod {
                            namespace: to.metadata.namespace.clone(),
                            name: to.metadata.name.clone(),
                        };
                        match view.explain(
                            (&from.metadata.namespace, &from.metadata.name),
                            &target,
                            probe.port,
                            probe.protocol,
                        ) {
                            Ok(e) if e.allowed() == observed.get(f, t) => {}
                            other => {
                                report += &format!(
                                    "explain disagrees for {} -> {}: {other:?}\n",
                                    names[f], names[t]
                                )
                            }
                        }
                    }
                }
                if !report.is_empty() {
                    failures.push(format!(
                        "=== {file} ({}) step {i}, probe {probe}\n{report}",
                        scenario.name
                    ));
                }
            }
        }
    }
    failures
}

#[test]
fn every_scenario_matches_its_truth_tables() {
    let all = scenarios();
    assert!(all.len() >= 16, "the suite lost scenarios: {}", all.len());
    let failures: Vec<String> = all.iter().flat_map(|(f, t)| run(f, t)).collect();
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_scenario_file_is_listed() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/policy/conformance/scenarios");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = scenarios().iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

#[test]
fn a_wrong_expectation_fails_with_a_readable_table() {
    // The deny-all-ingress scenario with one cell flipped must fail, and
    // the report must show both tables and the differing cell.
    let (_, text) = scenarios()
        .into_iter()
        .find(|(f, _)| *f == "deny-all-ingress.yaml")
        .unwrap();
    let flipped = text.replacen("y/a X   X   X", "y/a .   X   X", 1);
    assert_ne!(flipped, text);
    let failures = run("flipped", &flipped);
    assert_eq!(failures.len(), 4, "{failures:?}");
    let f = &failures[0];
    assert!(f.contains("1 of 81 wrong"), "{f}");
    assert!(
        f.contains("y/a (10.244.2.13) -> x/a (10.244.1.10) port 80/TCP: denied"),
        "{f}"
    );
    assert!(f.contains("deny-ingress"), "{f}");
}

#[test]
fn incomplete_scenarios_are_refused() {
    let (_, text) = scenarios()
        .into_iter()
        .find(|(f, _)| *f == "deny-all-ingress.yaml")
        .unwrap();
    let missing = text.replace(
        "[80/TCP, 81/TCP, 80/UDP, 81/UDP]",
        "[80/TCP, 81/TCP, 80/UDP]",
    );
    let e = Scenario::parse(&missing).unwrap_err();
    assert_eq!(e.to_string(), "step 0: no table for probe 81/UDP");
    let e = Scenario::parse("name: x\nsteps: []\nextra: 1\n").unwrap_err();
    assert!(e.to_string().contains("unknown field"), "{e}");
}
