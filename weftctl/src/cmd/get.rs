//! `weftctl get` and `weftctl label`: kubectl's get and label against
//! `Admin.GetObjects` / `Admin.LabelObject` (and `ListNodes` for nodes).
//!
//! Contract: `-o json` / `-o yaml` print the Kubernetes shape (one object
//! when one name is asked for, else a `v1` `List`), so `weftctl get svc web
//! -o json | jq .spec.clusterIP` works; `-o table` (the default) and `-o
//! wide` print kubectl's columns; `-o name` prints `service/web`. An empty
//! result prints kubectl's "No resources found" line to standard error.

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;
use weft_objects::manifest::{to_json, to_yaml};
use weft_objects::Kind;
use weft_proto::v1::{self, GetObjectsRequest, LabelObjectRequest, ListNodesRequest, ObjectRef};

use super::admin::{admin_client, node_table, status_error};
use super::apply::resource;
use crate::output::print_out;
use crate::render::objects::objects_table;

/// How `get` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum GetFormat {
    /// kubectl's columns.
    Table,
    /// More columns (pods: IP and node; services: selector).
    Wide,
    /// The Kubernetes JSON.
    Json,
    /// The Kubernetes YAML.
    Yaml,
    /// `kind/name` per line.
    Name,
}

/// `weftctl get`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    #[command(flatten)]
    pub admin: super::admin::AdminConfig,
    /// namespaces (ns), pods (po), services (svc), endpointslices,
    /// networkpolicies (netpol), nodes (no).
    kind: String,
    /// Only these objects.
    names: Vec<String>,
    /// The namespace (default: "default").
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Only objects whose labels match (`app=web,tier!=db`, `env in (a,b)`).
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = GetFormat::Table)]
    output: GetFormat,
}

/// `weftctl label`.
#[derive(Debug, Args)]
pub(crate) struct LabelArgs {
    #[command(flatten)]
    pub admin: super::admin::AdminConfig,
    /// The object's kind (pods, services, namespaces, ...), or KIND/NAME.
    kind: String,
    /// The object's name, then the changes: `key=value` sets, `key-`
    /// removes.
    #[arg(required = true)]
    rest: Vec<String>,
    /// The namespace (default: "default").
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Allow changing a label that already has a value.
    #[arg(long)]
    overwrite: bool,
    /// Check, but change nothing.
    #[arg(long)]
    dry_run: bool,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `weftctl get ...`
pub(crate) async fn get(config: &Path, args: GetArgs) -> Result<()> {
    let kind: Kind = args.kind.parse()?;
    if args.all_namespaces && !args.names.is_empty() {
        bail!("a name cannot be combined with -A (--all-namespaces)");
    }
    let (mut admin, _) = admin_client(config).await?;
    if kind == Kind::Node {
        let nodes = admin
            .list_nodes(ListNodesRequest {})
            .await
            .map_err(status_error)?
            .into_inner()
            .nodes;
        return print_nodes(nodes, &args);
    }
    let namespace = args.namespace.clone().unwrap_or_default();
    let mut objects = Vec::new();
    let names: Vec<String> = if args.names.is_empty() {
        vec![String::new()]
    } else {
        args.names.clone()
    };
    for name in &names {
        let r = admin
            .get_objects(GetObjectsRequest {
                kind: kind.kind_name().into(),
                namespace: namespace.clone(),
                all_namespaces: args.all_namespaces,
                name: name.clone(),
                label_selector: args.selector.clone().unwrap_or_default(),
            })
            .await
            .map_err(status_error)?
            .into_inner();
        objects.extend(r.objects);
    }
    if objects.is_empty() && args.output != GetFormat::Json && args.output != GetFormat::Yaml {
        eprintln!("{}", no_resources(kind, &namespace, args.all_namespaces));
        return Ok(());
    }
    let single = args.names.len() == 1;
    let text = match args.output {
        GetFormat::Table | GetFormat::Wide => objects_table(
            kind,
            &objects,
            args.output == GetFormat::Wide,
            args.all_namespaces,
            now_unix(),
        ),
        GetFormat::Name => objects
            .iter()
            .map(|o| format!("{}/{}\n", kind.resource(), o.name))
            .collect(),
        GetFormat::Json | GetFormat::Yaml => {
            let value = document(&objects, single)?;
            let mut s = if args.output == GetFormat::Json {
                to_json(&value)?
            } else {
                to_yaml(&value)?
            };
            if !s.ends_with('\n') {
                s.push('\n');
            }
            s
        }
    };
    print_out(&text);
    Ok(())
}

/// kubectl's empty-result line.
fn no_resources(kind: Kind, namespace: &str, all: bool) -> String {
    if all || !kind.namespaced() {
        "No resources found".into()
    } else {
        let ns = if namespace.is_empty() {
            "default"
        } else {
            namespace
        };
        format!("No resources found in {ns} namespace.")
    }
}

/// One object, or a `v1` `List` of them.
fn document(objects: &[v1::Object], single: bool) -> Result<serde_json::Value> {
    let mut values = objects
        .iter()
        .map(|o| {
            serde_json::from_slice(&o.json)
                .with_context(|| format!("the control plane sent unreadable JSON for {}", o.name))
        })
        .collect::<Result<Vec<serde_json::Value>>>()?;
    if single && values.len() == 1 {
        return Ok(values.remove(0));
    }
    Ok(serde_json::json!({
        "apiVersion": "v1",
        "items": values,
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    }))
}

fn print_nodes(mut nodes: Vec<v1::Node>, args: &GetArgs) -> Result<()> {
    if !args.names.is_empty() {
        for n in &args.names {
            if !nodes.iter().any(|x| &x.name == n) {
                bail!("nodes \"{n}\" not found");
            }
        }
        nodes.retain(|n| args.names.contains(&n.name));
    }
    if let Some(sel) = &args.selector {
        let sel = weft_objects::selector::parse(sel)?;
        nodes.retain(|n| sel.matches(&n.labels));
    }
    if nodes.is_empty() {
        eprintln!("No resources found");
        return Ok(());
    }
    let text = match args.output {
        GetFormat::Table | GetFormat::Wide => node_table(&nodes),
        GetFormat::Name => nodes.iter().map(|n| format!("node/{}\n", n.name)).collect(),
        GetFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&super::admin::nodes_json(&nodes))?
        ),
        GetFormat::Yaml => to_yaml(&super::admin::nodes_json(&nodes))?,
    };
    print_out(&text);
    Ok(())
}

/// `key=value` sets, `key-` removes.
fn label_changes(
    items: &[String],
) -> Result<(std::collections::BTreeMap<String, String>, Vec<String>)> {
    let mut set = std::collections::BTreeMap::new();
    let mut remove = Vec::new();
    for item in items {
        if let Some((k, v)) = item.split_once('=') {
            if set.insert(k.to_string(), v.to_string()).is_some() {
                bail!("label {k:?} is given twice");
            }
        } else if let Some(k) = item.strip_suffix('-') {
            remove.push(k.to_string());
        } else {
            bail!("{item:?}: a label change is key=value (set) or key- (remove)");
        }
    }
    if set.keys().any(|k| remove.contains(k)) {
        bail!("a label cannot be both set and removed");
    }
    if set.is_empty() && remove.is_empty() {
        bail!("give at least one label change: key=value or key-");
    }
    Ok((set, remove))
}

/// `weftctl label ...`
pub(crate) async fn label(config: &Path, args: LabelArgs) -> Result<()> {
    let (kind, name, changes) = match args.kind.split_once('/') {
        Some((k, n)) => (k, n.to_string(), &args.rest[..]),
        None => match args.rest.split_first() {
            Some((name, changes)) => (args.kind.as_str(), name.clone(), changes),
            None => bail!("give the object's name: weftctl label KIND NAME key=value..."),
        },
    };
    let kind: Kind = kind.parse()?;
    if kind == Kind::Node {
        bail!("node labels are set when a node joins (weft-agent --label)");
    }
    let (set, remove) = label_changes(changes)?;
    let (mut admin, _) = admin_client(config).await?;
    let r = admin
        .label_object(LabelObjectRequest {
            object: Some(ObjectRef {
                kind: kind.kind_name().into(),
                namespace: args.namespace.clone().unwrap_or_default(),
                name: name.clone(),
            }),
            set,
            remove,
            overwrite: args.overwrite,
            dry_run: args.dry_run,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let what = if r.changed { "labeled" } else { "not labeled" };
    let dry = if args.dry_run {
        " (server dry run)"
    } else {
        ""
    };
    print_out(&format!(
        "{}/{name} {what}{dry}\n",
        resource(kind.kind_name())
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_change_syntax() {
        let (set, remove) = label_changes(&["a=1".into(), "b-".into(), "c=".into()]).unwrap();
        assert_eq!(set.get("a").map(String::as_str), Some("1"));
        assert_eq!(set.get("c").map(String::as_str), Some(""));
        assert_eq!(remove, ["b"]);
        assert!(label_changes(&["a".into()]).is_err());
        assert!(label_changes(&["a=1".into(), "a-".into()]).is_err());
        assert!(label_changes(&[]).is_err());
    }

    #[test]
    fn empty_results_read_as_kubectl() {
        assert_eq!(
            no_resources(Kind::Service, "", false),
            "No resources found in default namespace."
        );
        assert_eq!(
            no_resources(Kind::Namespace, "x", false),
            "No resources found"
        );
    }
}
