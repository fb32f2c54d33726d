//! The objects half of `weft.v1.Admin`: Apply, GetObjects, DeleteObjects,
//! LabelObject, as thin adapters onto [`crate::objects`].

use weft_objects::Kind;
use weft_proto::v1::{
    AppliedObject, ApplyAction, ApplyRequest, ApplyResponse, DeleteObjectsRequest,
    DeleteObjectsResponse, GetObjectsRequest, GetObjectsResponse, LabelObjectRequest,
    LabelObjectResponse, ObjectRef,
};

use crate::objects::{codec, invalid, Action, Applied, Objects, Selection, Target};
use crate::registry::RegistryError;

/// A kind by any name kubectl accepts.
pub(super) fn kind(name: &str) -> Result<Kind, RegistryError> {
    name.parse::<Kind>().map_err(|e| invalid(e.to_string()))
}

fn target(r: &ObjectRef) -> Result<Target, RegistryError> {
    Target::new(kind(&r.kind)?, &r.namespace, &r.name)
}

/// An outcome as sent.
pub(super) fn applied(a: &Applied) -> Result<AppliedObject, RegistryError> {
    let action = match a.action {
        Action::Created => ApplyAction::Created,
        Action::Configured => ApplyAction::Configured,
        Action::Unchanged => ApplyAction::Unchanged,
    };
    Ok(AppliedObject {
        action: action as i32,
        object: Some(codec::typed_to_proto(&a.object)?),
    })
}

pub(super) async fn apply(
    objects: &Objects,
    r: ApplyRequest,
) -> Result<ApplyResponse, RegistryError> {
    let (results, revision) = objects.apply(&r.documents, &r.namespace, r.dry_run).await?;
    Ok(ApplyResponse {
        objects: results.iter().map(applied).collect::<Result<_, _>>()?,
        revision,
    })
}

pub(super) async fn get(
    objects: &Objects,
    r: GetObjectsRequest,
) -> Result<GetObjectsResponse, RegistryError> {
    let kind = kind(&r.kind)?;
    let sel = Selection::from_request(&r.namespace, r.all_namespaces, &r.name, &r.label_selector)?;
    let (objects, revision) = objects.get(kind, &sel).await?;
    Ok(GetObjectsResponse { objects, revision })
}

pub(super) async fn delete(
    objects: &Objects,
    r: DeleteObjectsRequest,
) -> Result<DeleteObjectsResponse, RegistryError> {
    let targets = r
        .objects
        .iter()
        .map(target)
        .collect::<Result<Vec<_>, _>>()?;
    let (deleted, revision) = objects
        .delete(&targets, r.ignore_not_found, r.dry_run)
        .await?;
    Ok(DeleteObjectsResponse { deleted, revision })
}

pub(super) async fn label(
    objects: &Objects,
    r: LabelObjectRequest,
) -> Result<LabelObjectResponse, RegistryError> {
    let Some(obj) = &r.object else {
        return Err(invalid("object: required"));
    };
    let t = target(obj)?;
    let (obj, changed, _) = objects
        .label(&t, &r.set, &r.remove, r.overwrite, r.dry_run)
        .await?;
    Ok(LabelObjectResponse {
        object: Some(codec::typed_to_proto(&obj)?),
        changed,
    })
}
