//! `weftctl apply -f` and `weftctl delete`: kubectl's apply and delete
//! against the control plane's `Admin.Apply` / `Admin.DeleteObjects`.
//!
//! Contract: manifests are sent as they are (the control plane parses,
//! defaults and validates them, all or nothing) and its refusals are
//! printed with `documents[i]` replaced by the file they came from.
//! `delete -f` reads the files here only for each object's kind, namespace
//! and name. Output lines are kubectl's: `service/web created`,
//! `service "web" deleted`.

use std::path::Path;

use anyhow::{bail, Result};
use clap::Args;
use weft_objects::Kind;
use weft_proto::v1::{ApplyAction, ApplyRequest, DeleteObjectsRequest, ObjectRef};

use super::admin::{admin_client, status_error};
use super::manifests::{self, name_documents};

/// `weftctl apply`.
#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    #[command(flatten)]
    pub admin: super::admin::AdminConfig,
    /// A manifest file (YAML or JSON, several documents allowed), a
    /// directory of them, or `-` for standard input. Repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<String>,
    /// The namespace of objects that name none (default: "default").
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Validate and allocate on the control plane, but store nothing.
    #[arg(long)]
    dry_run: bool,
}

/// `weftctl delete`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    #[command(flatten)]
    pub admin: super::admin::AdminConfig,
    /// What to delete: `KIND NAME...` or `KIND/NAME...` (omit with -f).
    targets: Vec<String>,
    /// Delete the objects these manifests describe (file, directory or -).
    #[arg(short = 'f', long = "filename")]
    files: Vec<String>,
    /// The namespace (default: "default").
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Objects that do not exist are not an error.
    #[arg(long)]
    ignore_not_found: bool,
    /// Check, but delete nothing.
    #[arg(long)]
    dry_run: bool,
}

fn suffix(dry_run: bool) -> &'static str {
    if dry_run {
        " (server dry run)"
    } else {
        ""
    }
}

/// `weftctl apply -f ...`
pub(crate) async fn apply(config: &Path, args: ApplyArgs) -> Result<()> {
    let files = manifests::read_all(&args.files)?;
    let (mut admin, _) = admin_client(config).await?;
    let request = ApplyRequest {
        documents: files.iter().map(|f| f.bytes.clone().into()).collect(),
        dry_run: args.dry_run,
        namespace: args.namespace.unwrap_or_default(),
    };
    let r = admin
        .apply(request)
        .await
        .map_err(|e| {
            status_error(tonic::Status::new(
                e.code(),
                name_documents(e.message(), &files),
            ))
        })?
        .into_inner();
    let mut out = String::new();
    for a in &r.objects {
        let Some(o) = &a.object else { continue };
        let action = match ApplyAction::try_from(a.action) {
            Ok(ApplyAction::Created) => "created",
            Ok(ApplyAction::Configured) => "configured",
            Ok(ApplyAction::Unchanged) => "unchanged",
            _ => "applied",
        };
        out.push_str(&format!(
            "{}/{} {action}{}\n",
            resource(&o.kind),
            o.name,
            suffix(args.dry_run)
        ));
    }
    crate::output::print_out(&out);
    Ok(())
}

/// kubectl's lower-case resource name of a `kind` (`service`).
pub(crate) fn resource(kind: &str) -> String {
    kind.parse::<Kind>()
        .map(|k| k.resource().to_string())
        .unwrap_or_else(|_| kind.to_ascii_lowercase())
}

/// `weftctl delete ...`
pub(crate) async fn delete(config: &Path, args: DeleteArgs) -> Result<()> {
    let namespace = args.namespace.clone().unwrap_or_default();
    let refs = if !args.files.is_empty() {
        if !args.targets.is_empty() {
            bail!("give either -f FILE or KIND NAME, not both");
        }
        refs_from_files(&args.files, &namespace)?
    } else {
        refs_from_args(&args.targets, &namespace)?
    };
    let (mut admin, _) = admin_client(config).await?;
    let r = admin
        .delete_objects(DeleteObjectsRequest {
            objects: refs,
            ignore_not_found: args.ignore_not_found,
            dry_run: args.dry_run,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let mut out = String::new();
    for o in &r.deleted {
        out.push_str(&format!(
            "{} \"{}\" deleted{}\n",
            resource(&o.kind),
            o.name,
            suffix(args.dry_run)
        ));
    }
    crate::output::print_out(&out);
    Ok(())
}

/// `KIND NAME...`, `KIND/NAME...`.
fn refs_from_args(targets: &[String], namespace: &str) -> Result<Vec<ObjectRef>> {
    let Some(first) = targets.first() else {
        bail!("say what to delete: weftctl delete KIND NAME, or weftctl delete -f FILE");
    };
    let mut out = Vec::new();
    if first.contains('/') {
        for t in targets {
            let Some((kind, name)) = t.split_once('/') else {
                bail!("{t:?}: expected KIND/NAME like the arguments before it");
            };
            out.push(object_ref(kind, name, namespace)?);
        }
    } else {
        if targets.len() < 2 {
            bail!("give the name of the {first} to delete: weftctl delete {first} NAME");
        }
        for name in &targets[1..] {
            out.push(object_ref(first, name, namespace)?);
        }
    }
    Ok(out)
}

fn object_ref(kind: &str, name: &str, namespace: &str) -> Result<ObjectRef> {
    let k: Kind = kind.parse()?;
    if k == Kind::Node {
        bail!("nodes are removed with: weftctl node remove NAME");
    }
    Ok(ObjectRef {
        kind: k.kind_name().into(),
        namespace: namespace.into(),
        name: name.into(),
    })
}

/// The objects the manifests describe (in the namespace they name, or
/// `namespace`).
fn refs_from_files(files: &[String], namespace: &str) -> Result<Vec<ObjectRef>> {
    let mut out = Vec::new();
    for f in manifests::read_all(files)? {
        let text = std::str::from_utf8(&f.bytes)
            .map_err(|e| anyhow::anyhow!("{}: not UTF-8 text: {e}", f.source))?;
        let objects = weft_objects::parse_manifests(text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", f.source))?;
        for o in objects {
            out.push(ObjectRef {
                kind: o.kind().kind_name().into(),
                namespace: if o.namespace().is_empty() {
                    namespace.into()
                } else {
                    o.namespace().into()
                },
                name: o.name().into(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_arguments() {
        let r = refs_from_args(&["svc".into(), "a".into(), "b".into()], "shop").unwrap();
        assert_eq!(
            r.iter()
                .map(|r| (r.kind.as_str(), r.name.as_str(), r.namespace.as_str()))
                .collect::<Vec<_>>(),
            [("Service", "a", "shop"), ("Service", "b", "shop")]
        );
        let r = refs_from_args(&["netpol/x".into(), "ns/y".into()], "").unwrap();
        assert_eq!(r[0].kind, "NetworkPolicy");
        assert_eq!(r[1].kind, "Namespace");
        assert!(refs_from_args(&["svc".into()], "").is_err());
        assert!(refs_from_args(&[], "").is_err());
        let err = refs_from_args(&["deployments".into(), "x".into()], "").unwrap_err();
        assert!(err.to_string().contains("deployments"), "{err}");
        assert!(refs_from_args(&["node".into(), "n1".into()], "").is_err());
    }
}
