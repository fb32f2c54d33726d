//! Join tokens: kubeadm-style `<id>.<secret>`, stored with the secret
//! hashed (SHA-256), with a TTL and a usage limit, revocable.
//!
//! A token is checked in this order, so nobody learns a token's state
//! without its secret: unknown id, wrong secret, revoked, expired, used up.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use weft_client::JoinToken;
use weft_proto::v1::Token;

use super::{unix_ms, Registry, RegistryError, MAX_ATTEMPTS};
use crate::model::{self, TokenRecord, TOKENS_PREFIX};
use crate::store::{Compare, KeyValue, Op, Store, Txn};

/// The default token lifetime.
pub(super) const DEFAULT_TTL_SECONDS: u64 = 24 * 3600;

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn decode_token(kv: &KeyValue) -> Result<TokenRecord, RegistryError> {
    serde_json::from_slice(&kv.value)
        .map_err(|e| RegistryError::Corrupt(format!("token record {} is unreadable: {e}", kv.key)))
}

fn token_to_proto(r: &TokenRecord) -> Token {
    Token {
        id: r.id.clone(),
        expires_unix_ms: r.expires_unix_ms,
        usages_left: r.usages_left.unwrap_or(0),
        unlimited: r.usages_left.is_none(),
        revoked: r.revoked,
        description: r.description.clone(),
        created_unix_ms: r.created_unix_ms,
        used: r.used,
    }
}

/// A token that passed the checks, with the stored key/value it was read
/// from (for the compare that makes its use atomic).
pub(super) struct CheckedToken {
    pub kv: KeyValue,
    pub record: TokenRecord,
}

/// Check a presented token's secret against the stored hash, in constant
/// time.
pub(super) fn verify_secret(record: &TokenRecord, token: &JoinToken) -> Result<(), RegistryError> {
    let presented = sha256_hex(token.secret());
    if !bool::from(presented.as_bytes().ct_eq(record.secret_sha256.as_bytes())) {
        return Err(RegistryError::Unauthenticated(format!(
            "join token {}: wrong secret",
            token.id()
        )));
    }
    Ok(())
}

/// Check a token against the store: known, right secret, not revoked, not
/// expired. Usage is checked by [`CheckedToken::use_one`].
pub(super) async fn check_token(
    store: &dyn Store,
    token: &JoinToken,
    now_ms: i64,
) -> Result<CheckedToken, RegistryError> {
    let id = token.id();
    let Some(kv) = store.get(&model::token_key(id)).await? else {
        return Err(RegistryError::Unauthenticated(format!(
            "join token {id} is not known to this cluster; create one with `weftctl token create`"
        )));
    };
    let record = decode_token(&kv)?;
    verify_secret(&record, token)?;
    if record.revoked {
        return Err(RegistryError::Unauthenticated(format!(
            "join token {id} was revoked"
        )));
    }
    if record.expires_unix_ms != 0 && now_ms >= record.expires_unix_ms {
        return Err(RegistryError::Unauthenticated(format!(
            "join token {id} expired {} s ago; create another with `weftctl token create`",
            (now_ms - record.expires_unix_ms) / 1000
        )));
    }
    Ok(CheckedToken { kv, record })
}

impl Registry {
    /// Create a token. `ttl_seconds` 0 means the default (24 h); `usages` 0
    /// means unlimited. Returns the record and the full token string.
    pub async fn create_token(
        &self,
        ttl_seconds: u64,
        usages: u32,
        description: &str,
    ) -> Result<(Token, String), RegistryError> {
        if description.len() > 256 {
            return Err(RegistryError::Invalid(
                "token description is longer than 256 characters".into(),
            ));
        }
        let ttl = if ttl_seconds == 0 {
            DEFAULT_TTL_SECONDS
        } else {
            ttl_seconds
        };
        let ttl_ms = i64::try_from(ttl.saturating_mul(1000)).unwrap_or(i64::MAX);
        for _ in 0..MAX_ATTEMPTS {
            let token = JoinToken::generate();
            let now = unix_ms();
            let record = TokenRecord {
                id: token.id().to_string(),
                secret_sha256: sha256_hex(token.secret()),
                expires_unix_ms: now.saturating_add(ttl_ms),
                usages_left: (usages != 0).then_some(usages),
                revoked: false,
                description: description.to_string(),
                created_unix_ms: now,
                used: 0,
            };
            let key = model::token_key(&record.id);
            let value =
                serde_json::to_vec(&record).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
            let out = self
                .store
                .txn(Txn {
                    compares: vec![Compare::Absent { key: key.clone() }],
                    ops: vec![Op::Put { key, value }],
                })
                .await?;
            if out.succeeded {
                tracing::info!(token = %record.id, ttl_s = ttl, usages, "join token created");
                return Ok((token_to_proto(&record), token.to_string()));
            }
        }
        Err(RegistryError::Conflict(
            "could not find a free token id; retry".into(),
        ))
    }

    /// Every token, sorted by id.
    pub async fn list_tokens(&self) -> Result<Vec<Token>, RegistryError> {
        let (kvs, _) = self.store.range(TOKENS_PREFIX).await?;
        kvs.iter()
            .map(|kv| decode_token(kv).map(|r| token_to_proto(&r)))
            .collect()
    }

    /// Count tokens that can still be used.
    pub async fn active_tokens(&self) -> Result<u32, RegistryError> {
        let now = unix_ms();
        let tokens = self.list_tokens().await?;
        Ok(tokens
            .iter()
            .filter(|t| {
                !t.revoked
                    && (t.expires_unix_ms == 0 || t.expires_unix_ms > now)
                    && (t.unlimited || t.usages_left > 0)
            })
            .count() as u32)
    }

    /// Revoke a token by id.
    pub async fn revoke_token(&self, id: &str) -> Result<Token, RegistryError> {
        for _ in 0..MAX_ATTEMPTS {
            let Some(kv) = self.store.get(&model::token_key(id)).await? else {
                return Err(RegistryError::NotFound(format!(
                    "no join token with id {id:?}; see `weftctl token list`"
                )));
            };
            let mut r = decode_token(&kv)?;
            r.revoked = true;
            let value =
                serde_json::to_vec(&r).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
            let out = self
                .store
                .txn(Txn {
                    compares: vec![Compare::ModRevision {
                        key: kv.key.clone(),
                        revision: kv.mod_revision,
                    }],
                    ops: vec![Op::Put {
                        key: kv.key.clone(),
                        value,
                    }],
                })
                .await?;
            if out.succeeded {
                tracing::info!(token = %id, "join token revoked");
                return Ok(token_to_proto(&r));
            }
        }
        Err(RegistryError::Conflict(format!(
            "token {id} kept changing; retry"
        )))
    }
}
