//! `Admin.LabelObject`: `kubectl label` for any stored object.
//!
//! Contract: `set` labels are added, or changed only with `overwrite`
//! (otherwise FAILED_PRECONDITION with kubectl's wording); `remove` keys
//! are dropped (absent ones ignored); keys and values are validated as
//! Kubernetes validates labels; a Namespace keeps
//! `kubernetes.io/metadata.name` = its name whatever is asked. The write
//! compares the object's revision and retries a lost race.

use std::collections::BTreeMap;

use weft_objects::field::FieldPath;
use weft_objects::types::endpoint_slice::{LABEL_MANAGED_BY, MANAGED_BY_WEFT};
use weft_objects::validation::{invalid_message, validate_labels};
use weft_objects::{defaults, Object};

use super::delete::Target;
use super::{codec, invalid, not_found, Objects, Writes, MAX_ATTEMPTS};
use crate::registry::RegistryError;
use crate::store::Revision;

impl Objects {
    /// Change `target`'s labels. Returns the object after the change and
    /// whether anything changed.
    pub async fn label(
        &self,
        target: &Target,
        set: &BTreeMap<String, String>,
        remove: &[String],
        overwrite: bool,
        dry_run: bool,
    ) -> Result<(Object, bool, Revision), RegistryError> {
        let errs = validate_labels(set, &FieldPath::new("metadata").child("labels"));
        if !errs.is_empty() {
            return Err(invalid(invalid_message(target.kind, &target.name, &errs)));
        }
        for _ in 0..MAX_ATTEMPTS {
            let Some((mut obj, kv)) = self
                .get_typed(target.kind, &target.namespace, &target.name)
                .await?
            else {
                return Err(not_found(target.kind, &target.name));
            };
            if let Object::EndpointSlice(es) = &obj {
                if es.metadata.labels.get(LABEL_MANAGED_BY).map(String::as_str)
                    == Some(MANAGED_BY_WEFT)
                {
                    return Err(RegistryError::FailedPrecondition(
                        "this EndpointSlice's labels are the controller's: label its Service instead".into(),
                    ));
                }
            }
            let labels = &mut obj.meta_mut().labels;
            for (k, v) in set {
                match labels.get(k) {
                    Some(old) if old != v && !overwrite => {
                        return Err(RegistryError::FailedPrecondition(format!(
                            "'{k}' already has a value ({old}), and --overwrite is false"
                        )))
                    }
                    _ => {
                        labels.insert(k.clone(), v.clone());
                    }
                }
            }
            for k in remove {
                labels.remove(k);
            }
            defaults::apply(&mut obj);
            let value = codec::encode(&obj)?;
            if value == kv.value {
                return Ok((obj, false, kv.mod_revision));
            }
            if dry_run {
                return Ok((obj, true, self.store.revision().await?));
            }
            let mut w = Writes::default();
            w.unchanged_since(&kv.key, kv.mod_revision);
            w.put(&kv.key, value);
            if let Some(rev) = self.commit(w).await? {
                obj.meta_mut().resource_version = rev.to_string();
                return Ok((obj, true, rev));
            }
        }
        Err(RegistryError::Conflict(
            "the object kept changing while it was being labelled; retry".into(),
        ))
    }
}
