//! Deterministic slice names and the slices' labels.

use std::collections::{BTreeMap, HashSet};

use sha2::{Digest, Sha256};

use crate::types::endpoint_slice::{
    EndpointPort, LABEL_HEADLESS, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, MANAGED_BY_WEFT,
};
use crate::types::service::Service;
use crate::values::AddressType;

/// Kubernetes' generated-name alphabet (no vowels, no look-alikes).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A stable text key of a port list (the grouping key).
pub(crate) fn ports_key(ports: &[EndpointPort]) -> String {
    let parts: Vec<String> = ports
        .iter()
        .map(|p| {
            format!(
                "{}/{}/{}/{}",
                p.name.as_deref().unwrap_or(""),
                p.protocol.as_ref().map(|x| x.as_str()).unwrap_or(""),
                p.port.unwrap_or(0),
                p.app_protocol.as_deref().unwrap_or("")
            )
        })
        .collect();
    parts.join(",")
}

/// The names given to one Service's slices, kept unique.
#[derive(Default)]
pub(crate) struct Names {
    used: HashSet<String>,
}

impl Names {
    /// `<service>-<5 chars>` from a hash of the inputs; on a collision with
    /// a name already given, the hash is salted until it is unique.
    pub(crate) fn allocate(
        &mut self,
        svc: &Service,
        address_type: &AddressType,
        key: &str,
        chunk: usize,
    ) -> String {
        let prefix = format!("{}-", svc.metadata.name);
        for salt in 0u32.. {
            let mut h = Sha256::new();
            for part in [
                svc.metadata.namespace.as_str(),
                svc.metadata.name.as_str(),
                address_type.as_str(),
                key,
            ] {
                h.update(part.as_bytes());
                h.update([0]);
            }
            h.update(chunk.to_be_bytes());
            h.update(salt.to_be_bytes());
            let digest = h.finalize();
            let suffix: String = digest
                .iter()
                .take(5)
                .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
                .collect();
            let name = format!("{prefix}{suffix}");
            if self.used.insert(name.clone()) {
                return name;
            }
        }
        // 2^32 salts all colliding cannot happen with fewer slices than that.
        prefix
    }
}

/// The Service's labels without the reserved ones, plus the slice labels.
pub(crate) fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let reserved = [LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS];
    let mut labels: BTreeMap<String, String> = svc
        .metadata
        .labels
        .iter()
        .filter(|(k, _)| !reserved.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !svc.has_cluster_ip() {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    labels.insert(LABEL_SERVICE_NAME.into(), svc.metadata.name.clone());
    labels.insert(LABEL_MANAGED_BY.into(), MANAGED_BY_WEFT.into());
    labels
}
