//! One cluster CA and one serving certificate for every replica on an etcd
//! store, kept in etcd with their private keys encrypted.
//!
//! Why in etcd, encrypted, rather than copied from a first replica: a
//! replica can be added while any other is down (it needs etcd and the
//! secret file, not a peer), and an etcd snapshot alone does not hold a
//! usable CA key. The secret (32 random bytes, base64, in
//! `--cluster-secret`, default `<state-dir>/cluster-secret`) is created by
//! the first replica and copied by the operator to every other one.
//!
//! Contract, run at start before the PKI is loaded from the state dir:
//! - Each replica registers its certificate names (`replicas/<advertise>`
//!   = its SAN list, JSON) and serves a certificate for the union of every
//!   registered replica's names, so each replica's certificate carries
//!   every replica's address known when it started.
//! - The first replica publishes its CA (`pki/ca.crt`, `pki/ca.key`
//!   sealed) with a create-only transaction; the others (and later starts)
//!   write etcd's CA into their state dir. A state dir holding another CA
//!   is refused: it belongs to another cluster.
//! - The serving pair (`pki/server.crt`, `pki/server.key` sealed) is reused
//!   when it covers the union; otherwise a replica issues a new one and
//!   publishes it (compare-and-swap; a lost race keeps the local one, which
//!   carries this replica's own names).
//! - Sealing is ChaCha20-Poly1305 with a random nonce and the key's store
//!   name as associated data: a blob moved to another key does not open.

use std::collections::BTreeSet;
use std::path::Path;

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom as _, SystemRandom};

use crate::config::Settings;
use crate::pki::Pki;
use crate::store::{Compare, KeyValue, Op, Store, Txn};

const CA_CRT: &str = "pki/ca.crt";
const CA_KEY: &str = "pki/ca.key";
const SERVER_CRT: &str = "pki/server.crt";
const SERVER_KEY: &str = "pki/server.key";
const REPLICAS_PREFIX: &str = "replicas/";
/// Attempts at publishing the CA when replicas start at once.
const ATTEMPTS: usize = 5;

/// Why the shared PKI could not be set up (a configuration problem).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SharedPkiError(String);

fn err(s: impl Into<String>) -> SharedPkiError {
    SharedPkiError(s.into())
}

/// The key that seals private keys stored in etcd.
pub struct ClusterSecret(LessSafeKey);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl ClusterSecret {
    /// Read the secret file.
    pub fn load(path: &Path) -> Result<ClusterSecret, SharedPkiError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(format!("--cluster-secret {}: {e}", path.display())))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| err(format!("--cluster-secret {}: not base64", path.display())))?;
        Self::from_bytes(&bytes)
            .map_err(|e| err(format!("--cluster-secret {}: {e}", path.display())))
    }

    /// Create a new secret file (mode 0600).
    pub fn create(path: &Path) -> Result<ClusterSecret, SharedPkiError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| err("no randomness for the cluster secret"))?;
        let text = base64::engine::general_purpose::STANDARD.encode(bytes) + "\n";
        weft_files::write_atomic(path, text.as_bytes(), 0o600)
            .map_err(|e| err(format!("writing --cluster-secret {}: {e}", path.display())))?;
        tracing::info!(path = %path.display(), "created the cluster secret: copy it to every other replica");
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<ClusterSecret, SharedPkiError> {
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .map_err(|_| err(format!("a cluster secret is 32 bytes, not {}", bytes.len())))?;
        Ok(ClusterSecret(LessSafeKey::new(key)))
    }

    /// Seal `plain` for the store key `name`: nonce, then ciphertext and tag.
    pub fn seal(&self, name: &str, plain: &[u8]) -> Result<Vec<u8>, SharedPkiError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| err("no randomness for a nonce"))?;
        let mut data = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut data,
            )
            .map_err(|_| err("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(out)
    }

    /// Open what [`ClusterSecret::seal`] sealed for `name`.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, SharedPkiError> {
        let wrong = || {
            err(format!(
                "{name} in etcd does not open with this --cluster-secret: copy the secret file of the replica that created the cluster"
            ))
        };
        if sealed.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, data) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let mut data = data.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut data)
            .map_err(|_| wrong())?;
        Ok(plain.to_vec())
    }
}

/// Set up the state dir's CA and serving pair from etcd (publishing them if
/// this is the first replica), then load the PKI from it.
pub async fn load(store: &dyn Store, settings: &Settings) -> Result<Shared, SharedPkiError> {
    let dir = &settings.state_dir;
    let (sans, replicas) = register(store, settings).await?;
    let mut secret = None;
    for _ in 0..ATTEMPTS {
        let stored = (get(store, CA_CRT).await?, get(store, CA_KEY).await?);
        match stored {
            (Some(crt), Some(key)) => {
                let secret = match secret.take() {
                    Some(s) => s,
                    None => ClusterSecret::load(&settings.cluster_secret).map_err(|e| {
                        err(format!("{e} (the cluster's CA is in etcd, sealed with the first replica's secret: copy that file here)"))
                    })?,
                };
                let key = secret.open(CA_KEY, &key.value)?;
                adopt_ca(dir, &crt.value, &key)?;
                use_stored_serving(store, &secret, dir).await?;
                let pki = Pki::load_or_create(dir, &sans).map_err(|e| err(e.to_string()))?;
                publish_serving(store, &secret, dir).await?;
                return Ok(Shared { pki, replicas });
            }
            (None, None) => {
                let s = match secret.take() {
                    Some(s) => s,
                    None if settings.cluster_secret.exists() => {
                        ClusterSecret::load(&settings.cluster_secret)?
                    }
                    None => ClusterSecret::create(&settings.cluster_secret)?,
                };
                let had_ca = dir.join("ca.crt").exists();
                Pki::load_or_create(dir, &sans).map_err(|e| err(e.to_string()))?;
                let crt = read(&dir.join("ca.crt"))?;
                let key = read(&dir.join("ca.key"))?;
                let out = store
                    .txn(Txn {
                        compares: vec![Compare::Absent { key: CA_CRT.into() }],
                        ops: vec![
                            Op::Put {
                                key: CA_CRT.into(),
                                value: crt,
                            },
                            Op::Put {
                                key: CA_KEY.into(),
                                value: s.seal(CA_KEY, &key)?,
                            },
                        ],
                    })
                    .await
                    .map_err(|e| err(format!("publishing the cluster CA: {e}")))?;
                if out.succeeded {
                    tracing::info!("published the cluster CA to etcd");
                } else if !had_ca {
                    // Another replica was first: take its CA instead.
                    for f in ["ca.crt", "ca.key", "server.crt", "server.key", "admin.conf"] {
                        let _ = std::fs::remove_file(dir.join(f));
                    }
                }
                secret = Some(s);
            }
            _ => return Err(err("etcd holds half of the cluster CA (pki/ca.crt or pki/ca.key is missing); restore it from a backup")),
        }
    }
    Err(err(
        "could not agree on the cluster CA with the other replicas; retry",
    ))
}

/// The PKI, and every registered replica's advertise address (this one's
/// first), for admin.conf.
#[derive(Debug)]
pub struct Shared {
    pub pki: Pki,
    pub replicas: Vec<String>,
}

/// Register this replica's names; return the union of every replica's, and
/// every replica's advertise address (this one's first).
async fn register(
    store: &dyn Store,
    settings: &Settings,
) -> Result<(Vec<String>, Vec<String>), SharedPkiError> {
    let mine = serde_json::to_vec(&settings.tls_sans).map_err(|e| err(e.to_string()))?;
    store
        .txn(Txn {
            compares: vec![],
            ops: vec![Op::Put {
                key: format!("{REPLICAS_PREFIX}{}", settings.advertise),
                value: mine,
            }],
        })
        .await
        .map_err(|e| err(format!("registering this replica: {e}")))?;
    let (kvs, _) = store
        .range(REPLICAS_PREFIX)
        .await
        .map_err(|e| err(format!("reading the replicas: {e}")))?;
    let mut all: BTreeSet<String> = settings.tls_sans.iter().cloned().collect();
    let mut replicas = vec![settings.advertise.clone()];
    for kv in kvs {
        let advertise = &kv.key[REPLICAS_PREFIX.len()..];
        if advertise != settings.advertise {
            replicas.push(advertise.to_string());
        }
        match serde_json::from_slice::<Vec<String>>(&kv.value) {
            Ok(names) => all.extend(names),
            Err(_) => tracing::warn!(key = %kv.key, "ignoring an unreadable replica record"),
        }
    }
    Ok((all.into_iter().collect(), replicas))
}

/// Write etcd's CA into the state dir, refusing a state dir with another.
fn adopt_ca(dir: &Path, crt: &[u8], key: &[u8]) -> Result<(), SharedPkiError> {
    let local = dir.join("ca.crt");
    if local.exists() {
        if read(&local)? == crt {
            return Ok(());
        }
        return Err(err(format!(
            "{} holds another CA than the cluster's in etcd: this state dir belongs to another cluster (use an empty --state-dir for a new replica)",
            local.display()
        )));
    }
    write(&dir.join("ca.key"), key, 0o600)?;
    write(&local, crt, 0o644)
}

/// Put etcd's serving pair into the state dir (the PKI reuses it if it
/// covers this replica's names, and re-issues it otherwise).
async fn use_stored_serving(
    store: &dyn Store,
    secret: &ClusterSecret,
    dir: &Path,
) -> Result<(), SharedPkiError> {
    if let (Some(crt), Some(key)) = (get(store, SERVER_CRT).await?, get(store, SERVER_KEY).await?) {
        let key = secret.open(SERVER_KEY, &key.value)?;
        write(&dir.join("server.key"), &key, 0o600)?;
        write(&dir.join("server.crt"), &crt.value, 0o644)?;
    }
    Ok(())
}

/// Publish the state dir's serving pair if it differs from etcd's.
async fn publish_serving(
    store: &dyn Store,
    secret: &ClusterSecret,
    dir: &Path,
) -> Result<(), SharedPkiError> {
    let crt = read(&dir.join("server.crt"))?;
    let stored = get(store, SERVER_CRT).await?;
    if stored.as_ref().is_some_and(|kv| kv.value == crt) {
        return Ok(());
    }
    let key = read(&dir.join("server.key"))?;
    let compares = vec![match &stored {
        Some(kv) => Compare::ModRevision {
            key: SERVER_CRT.into(),
            revision: kv.mod_revision,
        },
        None => Compare::Absent {
            key: SERVER_CRT.into(),
        },
    }];
    let out = store
        .txn(Txn {
            compares,
            ops: vec![
                Op::Put {
                    key: SERVER_CRT.into(),
                    value: crt,
                },
                Op::Put {
                    key: SERVER_KEY.into(),
                    value: secret.seal(SERVER_KEY, &key)?,
                },
            ],
        })
        .await
        .map_err(|e| err(format!("publishing the serving certificate: {e}")))?;
    if out.succeeded {
        tracing::info!("published the serving certificate to etcd");
    }
    Ok(())
}

async fn get(store: &dyn Store, key: &str) -> Result<Option<KeyValue>, SharedPkiError> {
    store
        .get(key)
        .await
        .map_err(|e| err(format!("reading {key} from the store: {e}")))
}

fn read(path: &Path) -> Result<Vec<u8>, SharedPkiError> {
    std::fs::read(path).map_err(|e| err(format!("reading {}: {e}", path.display())))
}

fn write(path: &Path, data: &[u8], mode: u32) -> Result<(), SharedPkiError> {
    weft_files::write_atomic(path, data, mode)
        .map_err(|e| err(format!("writing {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_their_secret_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster-secret");
        let a = ClusterSecret::create(&path).unwrap();
        let again = ClusterSecret::load(&path).unwrap();
        let sealed = a.seal(CA_KEY, b"private").unwrap();
        assert_eq!(again.open(CA_KEY, &sealed).unwrap(), b"private");
        assert!(a.open(SERVER_KEY, &sealed).is_err(), "bound to its name");
        let other = ClusterSecret::create(&dir.path().join("other")).unwrap();
        let e = other.open(CA_KEY, &sealed).unwrap_err();
        assert!(e.to_string().contains("--cluster-secret"), "{e}");
        assert!(a.open(CA_KEY, &sealed[..5]).is_err());
        std::fs::write(&path, "bm90IDMyIGJ5dGVz\n").unwrap();
        assert!(ClusterSecret::load(&path).is_err());
    }
}
