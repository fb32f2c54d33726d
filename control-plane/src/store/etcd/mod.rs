//! The HA store: an etcd v3 cluster, through the [etcd-client] crate.
//!
//! [etcd-client]: https://docs.rs/etcd-client
//!
//! Every key of the [`Store`] lives under one key prefix (`--etcd-prefix`,
//! default `/weft/`), so several clusters can share one etcd. Mapping onto
//! the [`Store`] contract in [`crate::store`]:
//! - Revisions are etcd's revisions: a write takes the next etcd revision,
//!   so on an etcd shared with other clusters a cluster sees gaps.
//! - [`Store::txn`] is one etcd transaction: `ModRevision` is etcd's
//!   `mod_revision` compare (0 holds for an absent key), `Absent`/`Exists`
//!   compare the key's `version` with 0. etcd refuses more than
//!   `--max-txn-ops` (default 128) compares or ops: see
//!   [`EtcdOptions::max_txn_ops`].
//! - [`Store::range`] reads in pages of [`RANGE_PAGE`] keys, every page at
//!   the first page's revision, so the result is one consistent snapshot.
//! - Reads are linearizable. When etcd has no leader (quorum lost) a read
//!   falls back to a serializable read of the member it reached: possibly
//!   stale, but reads keep working; writes fail with
//!   [`StoreError::Unavailable`].
//! - [`Store::watch`] is an etcd watch from `after + 1` with previous
//!   values; see `watch` for compaction, resumption and errors.
//! - [`Store::compact`]`(r)` is etcd's compaction at `r + 1` (etcd keeps the
//!   compaction revision itself watchable), or at the current revision when
//!   `r` is the current revision.
//! - Durability is etcd's: a write is acknowledged once a quorum has it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, CompactionOptions, Compare as EtcdCompare, CompareOp, ConnectOptions,
    GetOptions, Identity, TlsOptions, Txn as EtcdTxn, TxnOp,
};
use tokio::sync::watch as signal;

use super::{Compare, KeyValue, Op, Revision, Store, StoreError, Txn, TxnOutcome, WatchStream};

pub mod election;
pub mod local;
mod watch;

#[cfg(test)]
mod tests;

/// The pause between attempts at a request that found a member down.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Keys read per page in [`Store::range`].
pub const RANGE_PAGE: i64 = 1000;
/// The prefix keys live under unless `--etcd-prefix` says otherwise.
pub const DEFAULT_PREFIX: &str = "/weft/";
/// The scheme of `--store` values that select etcd.
pub const URL_SCHEME: &str = "etcd://";

/// TLS to etcd: the CA that signed etcd's serving certificates, and a
/// client certificate and key if etcd asks for one (`--client-cert-auth`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// How to reach etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdOptions {
    /// `host:port` of each member's client URL.
    pub endpoints: Vec<String>,
    /// Every key is stored under this prefix (ends with `/`).
    pub prefix: String,
    pub tls: Option<EtcdTls>,
    /// How long one request may take before it fails as unavailable.
    pub request_timeout: Duration,
    /// etcd's `--max-txn-ops` (128 unless the operator raised it).
    pub max_txn_ops: usize,
}

impl EtcdOptions {
    /// Options from a `--store` value `etcd://host:port[,host:port...]`,
    /// with the default prefix, no TLS and default timeouts.
    pub fn from_url(url: &str) -> Result<EtcdOptions, String> {
        let rest = url
            .strip_prefix(URL_SCHEME)
            .ok_or_else(|| format!("expected {URL_SCHEME}host:port[,host:port...]"))?;
        let mut endpoints = Vec::new();
        for ep in rest.split(',').map(str::trim) {
            let (host, port) = ep
                .rsplit_once(':')
                .ok_or_else(|| format!("etcd endpoint {ep:?} is not host:port"))?;
            let host_ok = !host.is_empty()
                && !host.contains('/')
                && host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
            if !host_ok {
                return Err(format!("etcd endpoint {ep:?} has a bad host"));
            }
            match port.parse::<u16>() {
                Ok(p) if p != 0 => {}
                _ => return Err(format!("etcd endpoint {ep:?} has a bad port")),
            }
            endpoints.push(ep.to_string());
        }
        Ok(EtcdOptions::new(endpoints))
    }

    /// Options for these endpoints, with the default prefix, no TLS and
    /// default timeouts.
    pub fn new(endpoints: Vec<String>) -> EtcdOptions {
        EtcdOptions {
            endpoints,
            prefix: DEFAULT_PREFIX.into(),
            tls: None,
            request_timeout: Duration::from_secs(5),
            max_txn_ops: 128,
        }
    }

    /// Check a key prefix: non-empty, printable, ending with `/`.
    pub fn check_prefix(prefix: &str) -> Result<(), String> {
        if prefix.is_empty() || !prefix.ends_with('/') {
            return Err(format!(
                "{prefix:?} must be non-empty and end with '/' (e.g. /weft/prod/)"
            ));
        }
        if prefix.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!("{prefix:?} holds spaces or control characters"));
        }
        Ok(())
    }
}

/// The etcd [`Store`]. Cheap to share behind an `Arc`; dropping it ends
/// every watch stream it opened.
pub struct EtcdStore {
    client: Client,
    /// One client per member, without "require leader": serializable reads
    /// while etcd has no leader, tried member by member.
    leaderless: Vec<Client>,
    options: EtcdOptions,
    /// Dropped with the store: watch streams end when it closes.
    closed: signal::Sender<()>,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.options.endpoints)
            .field("prefix", &self.options.prefix)
            .finish()
    }
}

impl EtcdStore {
    /// Connect, and check that etcd answers (within the request timeout).
    pub async fn connect(options: EtcdOptions) -> Result<EtcdStore, StoreError> {
        let path = describe(&options);
        let open_err = |reason: String| StoreError::Open {
            path: path.clone(),
            reason,
        };
        EtcdOptions::check_prefix(&options.prefix).map_err(|e| open_err(format!("prefix {e}")))?;
        if options.endpoints.is_empty() {
            return Err(open_err("no etcd endpoints".into()));
        }
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(options.request_timeout)
            .with_timeout(options.request_timeout)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if let Some(tls) = &options.tls {
            connect = connect.with_tls(tls_options(tls).map_err(open_err)?);
        }
        let client = Client::connect(&options.endpoints, Some(connect.clone()))
            .await
            .map_err(|e| open_err(e.to_string()))?;
        let mut leaderless = Vec::new();
        for endpoint in &options.endpoints {
            let one = connect.clone().with_require_leader(false);
            leaderless.push(
                Client::connect([endpoint], Some(one))
                    .await
                    .map_err(|e| open_err(e.to_string()))?,
            );
        }
        let (closed, _) = signal::channel(());
        let store = EtcdStore {
            client,
            leaderless,
            options,
            closed,
        };
        // The client connects lazily: ask something to know etcd is there.
        store
            .revision()
            .await
            .map_err(|e| open_err(e.to_string()))?;
        tracing::info!(store = %store.describe(), "store connected");
        Ok(store)
    }

    /// The options this store was connected with.
    pub fn options(&self) -> &EtcdOptions {
        &self.options
    }

    /// The etcd client, for what the store trait does not cover (leader
    /// election on etcd leases).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The full etcd key of a store key.
    pub(crate) fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.options.prefix)
    }

    fn key_value(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
        watch::key_value(&self.options.prefix, kv)
    }

    /// A read: linearizable (retried while it only finds members down), or
    /// serializable, member by member, when etcd has no leader.
    async fn read(
        &self,
        key: impl Into<Vec<u8>>,
        options: GetOptions,
    ) -> Result<etcd_client::GetResponse, StoreError> {
        let key = key.into();
        let mut last = None;
        for _ in 0..self.attempts() {
            match self
                .client
                .kv_client()
                .get(key.clone(), Some(options.clone()))
                .await
            {
                Ok(r) => return Ok(r),
                // That member is down: another one, linearizable still.
                Err(e) if not_sent(&e) => {
                    last = Some(self.error("read", e));
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => match self.error("read", e) {
                    e @ StoreError::Unavailable(_) => {
                        last = Some(e);
                        break;
                    }
                    other => return Err(other),
                },
            }
        }
        if let Some(e) = &last {
            tracing::debug!(reason = %e, "linearizable read failed; reading serializable");
        }
        for member in &self.leaderless {
            match member
                .kv_client()
                .get(key.clone(), Some(options.clone().with_serializable()))
                .await
            {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(self.error("read", e)),
            }
        }
        Err(last.unwrap_or_else(|| StoreError::Unavailable("etcd read failed".into())))
    }

    /// Requests that never reached a member are retried this many times
    /// (the client spreads requests over the members, dead ones included).
    fn attempts(&self) -> usize {
        2 * self.options.endpoints.len().max(1)
    }

    /// An etcd error as a [`StoreError`], naming the endpoints.
    pub(crate) fn error(&self, what: &str, e: etcd_client::Error) -> StoreError {
        error(&self.options, what, e)
    }
}

/// An etcd client error as a [`StoreError`]: unreachable, timed out or
/// leaderless etcd is [`StoreError::Unavailable`].
pub(crate) fn error(options: &EtcdOptions, what: &str, e: etcd_client::Error) -> StoreError {
    let at = options.endpoints.join(",");
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            let msg = s.message();
            let no_leader = msg.contains("no leader") || msg.contains("leader changed");
            // A request on a connection to a member that just died.
            let transport = s.code() == tonic::Code::Unknown && msg.contains("transport error");
            match s.code() {
                _ if no_leader => StoreError::Unavailable(format!(
                    "etcd {what} at {at}: {msg} (etcd has lost quorum, or is electing a leader); writes resume once a majority of etcd members is back"
                )),
                _ if transport => StoreError::Unavailable(format!(
                    "etcd {what} at {at}: the connection to a member broke ({msg}); retry"
                )),
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                    StoreError::Unavailable(format!(
                        "etcd {what} at {at}: {msg} (is a majority of etcd members up?)"
                    ))
                }
                _ => StoreError::Backend(format!("etcd {what} at {at}: {msg}")),
            }
        }
        etcd_client::Error::TransportError(t) => {
            StoreError::Unavailable(format!("etcd {what} at {at}: cannot connect: {t}"))
        }
        etcd_client::Error::IoError(io) => {
            StoreError::Unavailable(format!("etcd {what} at {at}: {io}"))
        }
        other => StoreError::Backend(format!("etcd {what} at {at}: {other}")),
    }
}

fn describe(options: &EtcdOptions) -> String {
    format!(
        "{URL_SCHEME}{}{}",
        options.endpoints.join(","),
        options.prefix
    )
}

/// Whether a request failed before it reached etcd (a refused or failed
/// connection), so that sending it again cannot apply it twice.
fn not_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            let m = s.message();
            m.contains("tcp connect error") || m.contains("Connection refused")
        }
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

/// An etcd revision (never negative) as a store revision.
fn revision(r: i64) -> Revision {
    u64::try_from(r).unwrap_or(0)
}

/// A store revision as an etcd revision.
fn etcd_revision(r: Revision) -> Result<i64, StoreError> {
    i64::try_from(r).map_err(|_| StoreError::Invalid(format!("revision {r} is out of range")))
}

fn tls_options(tls: &EtcdTls) -> Result<TlsOptions, String> {
    let read = |p: &PathBuf, what: &str| {
        std::fs::read(p).map_err(|e| format!("reading the etcd {what} {}: {e}", p.display()))
    };
    let mut out = TlsOptions::new().ca_certificate(Certificate::from_pem(read(&tls.ca, "CA")?));
    match (&tls.cert, &tls.key) {
        (Some(c), Some(k)) => {
            out = out.identity(Identity::from_pem(
                read(c, "client certificate")?,
                read(k, "client key")?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(
                "an etcd client certificate needs its key, and a key its certificate".into(),
            )
        }
    }
    Ok(out)
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let resp = self.read(self.full_key(key), GetOptions::new()).await?;
        resp.kvs().first().map(|kv| self.key_value(kv)).transpose()
    }

    async fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let full = self.full_key(prefix);
        let end = prefix_end(full.as_bytes());
        let mut start = full.into_bytes();
        let mut out = Vec::new();
        let mut at: Option<i64> = None;
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(RANGE_PAGE);
            if let Some(rev) = at {
                options = options.with_revision(rev);
            }
            let resp = self.read(start.clone(), options).await?;
            let rev = resp.header().map_or(0, |h| h.revision());
            let at_rev = *at.get_or_insert(rev);
            for kv in resp.kvs() {
                out.push(self.key_value(kv)?);
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok((out, revision(at_rev))),
            }
        }
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        txn.check(self.max_txn_ops())?;
        let compares: Vec<EtcdCompare> = txn
            .compares
            .iter()
            .map(|c| match c {
                Compare::ModRevision { key, revision } => Ok(EtcdCompare::mod_revision(
                    self.full_key(key),
                    CompareOp::Equal,
                    etcd_revision(*revision)?,
                )),
                Compare::Absent { key } => Ok(EtcdCompare::version(
                    self.full_key(key),
                    CompareOp::Equal,
                    0,
                )),
                Compare::Exists { key } => Ok(EtcdCompare::version(
                    self.full_key(key),
                    CompareOp::Greater,
                    0,
                )),
            })
            .collect::<Result<_, StoreError>>()?;
        let ops: Vec<TxnOp> = txn
            .ops
            .into_iter()
            .map(|op| match op {
                Op::Put { key, value } => TxnOp::put(self.full_key(&key), value, None),
                Op::Delete { key } => TxnOp::delete(self.full_key(&key), None),
            })
            .collect();
        let txn = EtcdTxn::new().when(compares).and_then(ops);
        let mut attempt = 1;
        let resp = loop {
            match self.client.kv_client().txn(txn.clone()).await {
                Ok(r) => break r,
                // Never sent (no connection to that member): safe to retry.
                Err(e) if attempt < self.attempts() && not_sent(&e) => {
                    attempt += 1;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => return Err(self.error("transaction", e)),
            }
        };
        Ok(TxnOutcome {
            succeeded: resp.succeeded(),
            revision: revision(resp.header().map_or(0, |h| h.revision())),
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        watch::open(self, prefix, after).await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        let resp = self
            .read(
                self.options.prefix.clone(),
                GetOptions::new().with_count_only().with_limit(1),
            )
            .await?;
        Ok(revision(resp.header().map_or(0, |h| h.revision())))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let current = self.revision().await?;
        if revision > current {
            return Err(StoreError::Invalid(format!(
                "cannot compact to revision {revision}: the store is at {current}"
            )));
        }
        let target = etcd_revision((revision + 1).min(current))?;
        match self
            .client
            .kv_client()
            .compact(target, Some(CompactionOptions::new()))
            .await
        {
            Ok(_) => Ok(()),
            // Already compacted further: nothing to do.
            Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("compacted") => Ok(()),
            Err(e) => Err(self.error("compaction", e)),
        }
    }

    fn describe(&self) -> String {
        describe(&self.options)
    }

    fn max_txn_ops(&self) -> usize {
        self.options.max_txn_ops
    }
}

/// The smallest key greater than every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): to the end of the keyspace.
    vec![0]
}
