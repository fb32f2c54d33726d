//! Building one store transaction out of many objects' writes.
//!
//! Contract: [`Writes`] names each key at most once among its ops (the
//! store refuses a transaction that writes a key twice) and at most once
//! among its compares; a later write to a key replaces the earlier one, a
//! later compare on a key is dropped (the first one read the state the
//! change was planned on).

use std::collections::HashMap;

use crate::store::{Compare, Op, Revision, Txn};

/// The compares and ops of one transaction.
#[derive(Debug, Default, Clone)]
pub struct Writes {
    compares: Vec<Compare>,
    compared: HashMap<String, usize>,
    ops: Vec<Op>,
    written: HashMap<String, usize>,
}

fn compare_key(c: &Compare) -> &str {
    match c {
        Compare::ModRevision { key, .. } | Compare::Absent { key } | Compare::Exists { key } => key,
    }
}

impl Writes {
    /// Add a compare (the first one per key wins).
    pub fn compare(&mut self, c: Compare) {
        let key = compare_key(&c).to_string();
        if self.compared.contains_key(&key) {
            return;
        }
        self.compared.insert(key, self.compares.len());
        self.compares.push(c);
    }

    /// The key is still at `revision` (0: absent).
    pub fn unchanged_since(&mut self, key: &str, revision: Revision) {
        if revision == 0 {
            self.compare(Compare::Absent { key: key.into() });
        } else {
            self.compare(Compare::ModRevision {
                key: key.into(),
                revision,
            });
        }
    }

    /// The key exists.
    pub fn exists(&mut self, key: &str) {
        self.compare(Compare::Exists { key: key.into() });
    }

    fn op(&mut self, key: &str, op: Op) {
        match self.written.get(key) {
            Some(&i) => self.ops[i] = op,
            None => {
                self.written.insert(key.to_string(), self.ops.len());
                self.ops.push(op);
            }
        }
    }

    /// Write `value` to `key`.
    pub fn put(&mut self, key: &str, value: Vec<u8>) {
        self.op(
            key,
            Op::Put {
                key: key.into(),
                value,
            },
        );
    }

    /// Create `key` (it must be absent).
    pub fn create(&mut self, key: &str, value: Vec<u8>) {
        self.compare(Compare::Absent { key: key.into() });
        self.put(key, value);
    }

    /// Delete `key`.
    pub fn delete(&mut self, key: &str) {
        self.op(key, Op::Delete { key: key.into() });
    }

    /// Whether an op writes `key`.
    pub fn writes(&self, key: &str) -> bool {
        self.written.contains_key(key)
    }

    /// Number of ops.
    pub fn ops_len(&self) -> usize {
        self.ops.len()
    }

    /// The larger of the compare and op counts (what a store limits).
    pub fn size(&self) -> usize {
        self.ops.len().max(self.compares.len())
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Add every compare and op of `other`.
    pub fn extend(&mut self, other: Writes) {
        for c in other.compares {
            self.compare(c);
        }
        for op in other.ops {
            let key = match &op {
                Op::Put { key, .. } | Op::Delete { key } => key.clone(),
            };
            self.op(&key, op);
        }
    }

    /// The transaction.
    pub fn into_txn(self) -> Txn {
        Txn {
            compares: self.compares,
            ops: self.ops,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_op_and_one_compare_per_key() {
        let mut w = Writes::default();
        w.create("a", b"1".to_vec());
        w.put("a", b"2".to_vec());
        w.unchanged_since("a", 5);
        w.delete("b");
        let txn = w.into_txn();
        assert_eq!(txn.compares, vec![Compare::Absent { key: "a".into() }]);
        assert_eq!(
            txn.ops,
            vec![
                Op::Put {
                    key: "a".into(),
                    value: b"2".to_vec()
                },
                Op::Delete { key: "b".into() }
            ]
        );
        assert!(txn.check(10).is_ok());
    }
}
