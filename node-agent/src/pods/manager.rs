//! [`PodManager`]: the pod records, and the kernel and data-plane steps
//! that make each one real. See the module contract in `pods/mod.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use tokio::sync::{watch, Mutex};
use tracing::{debug, info, info_span, warn, Instrument};

use super::alloc::AddressPool;
use super::record::{validate_add, validate_id, AddPod, PodRecord};
use super::resolv::{self, PodDns};
use super::sink::PortSink;
use super::store;
use super::PodError;
use crate::engine::{Dataplane, PodPort};
use crate::kernel::netns::{NetNs, NetNsError};
use crate::kernel::tun::{
    attach_existing_pod_tun, create_pod_tun, delete_pod_tun, KernelError, PortSpec, TunError,
    TunOptions,
};

/// Manages this node's pods.
pub struct PodManager {
    state_path: PathBuf,
    pool: AddressPool,
    mtu: u32,
    sink: Arc<dyn PortSink>,
    /// The records by id; held across each whole operation, which
    /// serialises them.
    table: Mutex<BTreeMap<String, PodRecord>>,
    /// How many records the table held when it was last written: read
    /// without the lock (by `status`, which must not wait on an operation).
    count: AtomicUsize,
    /// Bumped after every change of the table (a pod added, deleted,
    /// attached): what the pod registrations follow.
    changes: watch::Sender<u64>,
    /// What the pods' `/etc/netns` resolv.conf says, if anything.
    dns: Option<PodDns>,
}

impl fmt::Debug for PodManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodManager")
            .field("state_path", &self.state_path)
            .field("node_cidr", &self.pool.cidr())
            .field("mtu", &self.mtu)
            .finish_non_exhaustive()
    }
}

/// Why a recorded pod could not be re-attached.
enum Reattach {
    /// Its namespace or interface is gone: the pod is gone.
    Gone(String),
    /// Something else failed: keep the record, unattached.
    Failed(PodError),
}

/// The pod's address as an interface address: a /32 or /128.
fn host_net(addr: IpAddr) -> IpNet {
    IpNet::from(addr)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether a namespace error means the namespace is not there (any more).
fn netns_gone(e: &NetNsError) -> bool {
    matches!(
        e,
        NetNsError::NotFound { .. } | NetNsError::NotANetNs { .. }
    )
}

impl PodManager {
    /// Load the pod records from `state_dir`, re-attach every pod whose
    /// namespace and TUN still exist, and drop the records of the others.
    pub async fn open(
        state_dir: &Path,
        node_cidr: IpNet,
        host_address: IpAddr,
        mtu: u32,
        dataplane: Arc<Dataplane>,
    ) -> Result<PodManager, PodError> {
        Self::open_with(state_dir, node_cidr, host_address, mtu, dataplane).await
    }

    /// [`PodManager::open`] with any [`PortSink`] in place of the data plane.
    pub async fn open_with(
        state_dir: &Path,
        node_cidr: IpNet,
        host_address: IpAddr,
        mtu: u32,
        sink: Arc<dyn PortSink>,
    ) -> Result<PodManager, PodError> {
        let pool = AddressPool::new(node_cidr, host_address).map_err(PodError::Config)?;
        let min_mtu = if node_cidr.addr().is_ipv4() { 68 } else { 1280 };
        if !(min_mtu..=65535).contains(&mtu) {
            return Err(PodError::Config(format!(
                "MTU {mtu} is out of range ({min_mtu} to 65535)"
            )));
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|e| PodError::State {
                path: state_dir.to_owned(),
                reason: format!("cannot create the state directory: {e}"),
            })?;
        let state_path = state_dir.join(store::FILE_NAME);
        let state = store::load(&state_path).map_err(|reason| PodError::State {
            path: state_path.clone(),
            reason: format!("{reason}; move it away to start with no pods"),
        })?;
        let manager = PodManager {
            state_path,
            pool,
            mtu,
            sink,
            table: Mutex::new(BTreeMap::new()),
            count: AtomicUsize::new(0),
            changes: watch::channel(0).0,
            dns: None,
        };
        if let Some(old) = state.node_cidr.filter(|old| *old != pool.cidr()) {
            warn!(old = %old, new = %pool.cidr(), "the node CIDR changed; pods outside it are removed");
        }
        let mut table = manager.table.lock().await;
        let mut changed = state.node_cidr != Some(pool.cidr());
        for mut record in state.pods {
            let span = info_span!("pod", id = %record.id);
            let kept = manager.restore(&mut record).instrument(span).await;
            if kept {
                table.insert(record.id.clone(), record);
            } else {
                changed = true;
            }
        }
        if changed {
            manager.persist(&table).await?;
        }
        let attached = table.values().filter(|r| r.attached).count();
        manager.count.store(table.len(), Ordering::Relaxed);
        manager.changed();
        info!(pods = table.len(), attached, cidr = %pool.cidr(), "pods loaded");
        drop(table);
        Ok(manager)
    }

    /// Writes `/etc/netns/<pod>/resolv.conf` (cluster DNS) for every pod
    /// added from now on in a namespace the agent creates, and removes it
    /// with the pod.
    pub fn with_dns(mut self, dns: PodDns) -> Self {
        self.dns = Some(dns);
        self
    }

    /// Re-attaches one recorded pod at start; false if its record is dropped.
    async fn restore(&self, record: &mut PodRecord) -> bool {
        if let Err(why) = self.pool.check(record.address) {
            warn!(%why, "dropping the pod and its interface: its address is not this node's");
            if let Err(e) = self.unplumb(record).await {
                warn!(error = %e, "could not remove the dropped pod's interface");
            }
            return false;
        }
        match self.reattach(record).await {
            Ok(()) => {
                record.attached = true;
                debug!(address = %record.address, "pod re-attached");
                true
            }
            Err(Reattach::Gone(why)) => {
                info!(address = %record.address, "dropping the pod: {why}");
                if let Err(e) = self.unplumb(record).await {
                    warn!(error = %e, "could not clean up after the dropped pod");
                }
                false
            }
            Err(Reattach::Failed(e)) => {
                warn!(error = %e, "pod kept, but not attached; delete it or add it again");
                true
            }
        }
    }

    /// The node CIDR pods get their addresses from.
    pub fn node_cidr(&self) -> IpNet {
        self.pool.cidr()
    }

    /// The state file.
    pub fn state_path(&self) -> &Path {
        &self.state_path
    }

    /// Every pod, by id.
    pub async fn list(&self) -> Vec<PodRecord> {
        self.table.lock().await.values().cloned().collect()
    }

    /// How many pods there are, without waiting for an operation in
    /// progress (it counts the records as last written).
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// A counter bumped after every change of the pods (added, deleted,
    /// attached): wakes whoever follows them (the pod registrations).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// One pod by id.
    pub async fn get(&self, id: &str) -> Option<PodRecord> {
        self.table.lock().await.get(id).cloned()
    }

    /// Adds a pod; see the module contract for idempotency and rollback.
    pub async fn add(&self, req: AddPod) -> Result<PodRecord, PodError> {
        validate_add(&req).map_err(PodError::Invalid)?;
        let netns = match &req.netns {
            Some(path) => path.clone(),
            None => NetNs::named_path(&req.id).map_err(|e| {
                PodError::Invalid(format!(
                    "pod id {:?}: the agent names the network namespace it creates after the \
                     pod ({e}); give the pod an existing namespace (a netns path) or an id \
                     without '/'",
                    req.id
                ))
            })?,
        };
        let span = info_span!("pod", id = %req.id);
        self.add_locked(req, netns).instrument(span).await
    }

    async fn add_locked(&self, req: AddPod, netns: PathBuf) -> Result<PodRecord, PodError> {
        let ifname = req.ifname().to_owned();
        let mut table = self.table.lock().await;
        if let Some(existing) = table.get(&req.id).cloned() {
            let identical = existing.netns == netns
                && existing.ifname == ifname
                && existing.created_netns == req.create_netns
                && existing.pod_namespace == req.pod_namespace
                && existing.pod_name == req.pod_name
                && existing.labels == req.labels
                && existing.ports == req.ports;
            if !identical {
                return Err(PodError::AlreadyExists(format!(
                    "pod {} already exists ({} on {} in {}); delete it first to change it",
                    existing.id,
                    existing.address,
                    existing.ifname,
                    existing.netns.display()
                )));
            }
            if existing.attached {
                debug!("identical pod exists: nothing to do");
                return Ok(existing);
            }
            match self.reattach(&existing).await {
                Ok(()) => {
                    let record = table.get_mut(&req.id).map(|r| {
                        r.attached = true;
                        r.clone()
                    });
                    self.changed();
                    info!("pod re-attached");
                    return record.ok_or_else(|| PodError::Invalid("pod vanished".into()));
                }
                Err(Reattach::Failed(e)) => return Err(e),
                Err(Reattach::Gone(why)) => {
                    info!("re-adding the pod: {why}");
                    self.unplumb(&existing).await?;
                    table.remove(&req.id);
                    self.persist(&table).await?;
                }
            }
        }
        if let Some(other) = table
            .values()
            .find(|r| r.netns == netns && r.ifname == ifname)
        {
            return Err(PodError::AlreadyExists(format!(
                "interface {ifname} in {} belongs to pod {} already",
                netns.display(),
                other.id
            )));
        }
        // An existing namespace must be there before anything is allocated.
        let ns = if req.create_netns {
            None
        } else {
            Some(NetNs::open(&netns)?)
        };
        let used: BTreeSet<IpAddr> = table.values().map(|r| r.address).collect();
        let address = self
            .pool
            .lowest_free(&used)
            .ok_or_else(|| PodError::Exhausted {
                cidr: self.pool.cidr(),
                capacity: self.pool.capacity(),
            })?;
        let mut record = PodRecord {
            id: req.id.clone(),
            netns,
            ifname,
            address,
            created_netns: req.create_netns,
            pod_namespace: req.pod_namespace,
            pod_name: req.pod_name,
            labels: req.labels,
            ports: req.ports,
            created_unix: now_unix(),
            attached: false,
        };
        // Persisted before any interface exists: a crash never loses it.
        table.insert(record.id.clone(), record.clone());
        if let Err(e) = self.persist(&table).await {
            table.remove(&record.id);
            return Err(e);
        }
        if let Err(e) = self.plumb(&record, ns).await {
            table.remove(&record.id);
            if let Err(persist) = self.persist(&table).await {
                warn!(error = %persist, "could not record the rollback; the next start drops the record");
            }
            warn!(error = %e, "pod add failed and was rolled back");
            return Err(e);
        }
        record.attached = true;
        if let (true, Some(dns)) = (record.created_netns, &self.dns) {
            let namespace = record.pod_namespace.as_deref().unwrap_or("default");
            resolv::write(dns, &record.id, namespace);
        }
        table.insert(record.id.clone(), record.clone());
        self.changed();
        info!(address = %record.address, netns = %record.netns.display(), ifname = %record.ifname, "pod added");
        Ok(record)
    }

    /// Namespace (if asked), TUN, data plane; undoes its own steps on failure.
    async fn plumb(&self, record: &PodRecord, ns: Option<NetNs>) -> Result<(), PodError> {
        let (ns, created) = match ns {
            Some(ns) => (ns, false),
            None => (NetNs::create_named(&record.id)?, true),
        };
        let spec = PortSpec::pod(
            record.ifname.clone(),
            vec![host_net(record.address)],
            self.mtu,
        );
        // Only what this call made is undone: an interface of that name
        // that was there before (create fails) is not ours to delete.
        let mut made_tun = false;
        let result = match create_pod_tun(&ns, &spec).await {
            // create_pod_tun removes a half-made device itself.
            Err(e) => Err(PodError::from(e)),
            Ok(tun) => {
                made_tun = true;
                let port = PodPort {
                    id: record.id.clone(),
                    tun,
                    addresses: vec![record.address],
                };
                let attached = self.sink.attach(port).await;
                attached.map_err(|cause| PodError::Dataplane {
                    id: record.id.clone(),
                    cause,
                })
            }
        };
        if result.is_err() {
            if made_tun {
                if let Err(e) = delete_pod_tun(&ns, &record.ifname).await {
                    warn!(error = %e, "rollback: could not delete the pod's interface");
                }
            }
            drop(ns);
            if created {
                if let Err(e) = NetNs::delete_named(&record.id) {
                    warn!(error = %e, "rollback: could not delete the pod's namespace");
                }
            }
        }
        result
    }

    /// Re-attaches an existing pod's TUN to the data plane.
    async fn reattach(&self, record: &PodRecord) -> Result<(), Reattach> {
        let ns = match NetNs::open(&record.netns) {
            Ok(ns) => ns,
            Err(e) if netns_gone(&e) => {
                return Err(Reattach::Gone(format!(
                    "its network namespace {} is gone",
                    record.netns.display()
                )))
            }
            Err(e) => return Err(Reattach::Failed(e.into())),
        };
        let tun =
            match attach_existing_pod_tun(&ns, &record.ifname, &TunOptions::persistent()).await {
                Ok(tun) => tun,
                Err(KernelError::Tun(TunError::NotFound { .. })) => {
                    return Err(Reattach::Gone(format!(
                        "its interface {} in {} is gone",
                        record.ifname,
                        record.netns.display()
                    )))
                }
                Err(e) => return Err(Reattach::Failed(e.into())),
            };
        let port = PodPort {
            id: record.id.clone(),
            tun,
            addresses: vec![record.address],
        };
        self.sink.attach(port).await.map_err(|cause| {
            Reattach::Failed(PodError::Dataplane {
                id: record.id.clone(),
                cause,
            })
        })
    }

    /// Deletes a pod; `Ok(None)` if there is none. An id that `add` would
    /// refuse is refused the same way. See the module contract.
    pub async fn del(&self, id: &str) -> Result<Option<PodRecord>, PodError> {
        validate_id(id).map_err(PodError::Invalid)?;
        let span = info_span!("pod", id = %id);
        async {
            let mut table = self.table.lock().await;
            let Some(record) = table.get(id).cloned() else {
                debug!("no such pod: nothing to delete");
                return Ok(None);
            };
            match self.sink.detach(id).await {
                Ok(tun) => drop(tun),
                // A data plane that is down holds no port: go on.
                Err(e) => warn!(error = %e, "could not detach the pod from the data plane"),
            }
            if let Some(r) = table.get_mut(id) {
                r.attached = false;
            }
            self.unplumb(&record).await?;
            table.remove(id);
            self.persist(&table).await?;
            info!(address = %record.address, "pod deleted");
            Ok(Some(PodRecord {
                attached: false,
                ..record
            }))
        }
        .instrument(span)
        .await
    }

    /// Deletes the pod's TUN (if its namespace is still there) and the
    /// namespace if the agent created it.
    async fn unplumb(&self, record: &PodRecord) -> Result<(), PodError> {
        match NetNs::open(&record.netns) {
            Ok(ns) => {
                delete_pod_tun(&ns, &record.ifname).await?;
            }
            Err(e) if netns_gone(&e) => debug!("the pod's namespace is gone already"),
            Err(e) => return Err(e.into()),
        }
        if record.created_netns {
            resolv::remove(&record.id);
            match NetNs::named_path(&record.id) {
                Ok(path) if path == record.netns => match NetNs::delete_named(&record.id) {
                    Ok(()) | Err(NetNsError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                },
                _ => warn!(
                    netns = %record.netns.display(),
                    "not deleting a namespace the agent did not name"
                ),
            }
        }
        Ok(())
    }

    /// Writes the table to the state file.
    async fn persist(&self, table: &BTreeMap<String, PodRecord>) -> Result<(), PodError> {
        let records: Vec<PodRecord> = table.values().cloned().collect();
        self.count.store(records.len(), Ordering::Relaxed);
        self.changed();
        let bytes = store::encode(self.pool.cidr(), &records);
        let path = self.state_path.clone();
        let written = tokio::task::spawn_blocking(move || store::save(&path, &bytes)).await;
        let result = match written {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(join.to_string())),
        };
        result.map_err(|e| PodError::State {
            path: self.state_path.clone(),
            reason: format!("cannot write it: {e}"),
        })
    }
}
