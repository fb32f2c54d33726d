//! The on-disk encoding of the redb store's values.
//!
//! Everything is little-endian and length-prefixed, and every decoder checks
//! lengths before it slices, so a damaged file yields
//! [`StoreError::Backend`], never a panic.
//!
//! - A current value (table `current`, keyed by the key):
//!   `create_revision u64 | mod_revision u64 | value bytes...`
//! - One transaction's events (table `history`, keyed by its revision):
//!   `count u32`, then per event
//!   `kind u8 (0 put, 1 delete) | key_len u32 | key | create u64 | mod u64 |
//!   value_len u32 | value | has_prev u8 | [prev_create u64 | prev_mod u64 |
//!   prev_value_len u32 | prev_value]`.
//!   The revision of every event is the history key; `prev.key` is the key.

use crate::store::{Event, EventKind, KeyValue, Revision, StoreError};

const RECORD_HEADER: usize = 16;

/// A current value as stored, borrowed from the table.
pub(super) struct Record<'a> {
    pub create_revision: Revision,
    pub mod_revision: Revision,
    pub value: &'a [u8],
}

impl Record<'_> {
    /// The owned [`KeyValue`] for `key`.
    pub(super) fn to_key_value(&self, key: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: self.value.to_vec(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
        }
    }
}

pub(super) fn encode_record(create: Revision, modified: Revision, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER + value.len());
    out.extend_from_slice(&create.to_le_bytes());
    out.extend_from_slice(&modified.to_le_bytes());
    out.extend_from_slice(value);
    out
}

pub(super) fn decode_record<'a>(key: &str, bytes: &'a [u8]) -> Result<Record<'a>, StoreError> {
    let mut r = Reader::new(bytes);
    let parsed = (|| {
        let create_revision = r.u64()?;
        let mod_revision = r.u64()?;
        Some(Record {
            create_revision,
            mod_revision,
            value: r.rest(),
        })
    })();
    parsed.ok_or_else(|| StoreError::Backend(format!("corrupt value record for key {key:?}")))
}

pub(super) fn encode_events(events: &[Event]) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    put_len(&mut out, events.len())?;
    for ev in events {
        out.push(match ev.kind {
            EventKind::Put => 0,
            EventKind::Delete => 1,
        });
        put_len(&mut out, ev.kv.key.len())?;
        out.extend_from_slice(ev.kv.key.as_bytes());
        put_kv_body(&mut out, &ev.kv)?;
        match &ev.prev {
            None => out.push(0),
            Some(prev) => {
                out.push(1);
                put_kv_body(&mut out, prev)?;
            }
        }
    }
    Ok(out)
}

pub(super) fn decode_events(revision: Revision, bytes: &[u8]) -> Result<Vec<Event>, StoreError> {
    decode_events_inner(revision, bytes).ok_or_else(|| {
        StoreError::Backend(format!("corrupt history entry for revision {revision}"))
    })
}

fn decode_events_inner(revision: Revision, bytes: &[u8]) -> Option<Vec<Event>> {
    let mut r = Reader::new(bytes);
    let count = r.u32()? as usize;
    // Each event takes at least 30 bytes; don't trust `count` for capacity.
    let mut events = Vec::with_capacity(count.min(bytes.len() / 30));
    for _ in 0..count {
        let kind = match r.u8()? {
            0 => EventKind::Put,
            1 => EventKind::Delete,
            _ => return None,
        };
        let key_len = r.u32()? as usize;
        let key = std::str::from_utf8(r.take(key_len)?).ok()?.to_owned();
        let kv = r.kv_body(&key)?;
        let prev = match r.u8()? {
            0 => None,
            1 => Some(r.kv_body(&key)?),
            _ => return None,
        };
        events.push(Event {
            revision,
            kind,
            kv,
            prev,
        });
    }
    if r.rest().is_empty() {
        Some(events)
    } else {
        None
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) -> Result<(), StoreError> {
    let len = u32::try_from(len)
        .map_err(|_| StoreError::Backend(format!("length {len} too large to store")))?;
    out.extend_from_slice(&len.to_le_bytes());
    Ok(())
}

fn put_kv_body(out: &mut Vec<u8>, kv: &KeyValue) -> Result<(), StoreError> {
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    put_len(out, kv.value.len())?;
    out.extend_from_slice(&kv.value);
    Ok(())
}

/// A bounds-checked cursor; every read returns `None` past the end.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn kv_body(&mut self, key: &str) -> Option<KeyValue> {
        let create_revision = self.u64()?;
        let mod_revision = self.u64()?;
        let len = self.u32()? as usize;
        let value = self.take(len)?.to_vec();
        Some(KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &[u8], create: u64, modified: u64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
            create_revision: create,
            mod_revision: modified,
        }
    }

    #[test]
    fn events_round_trip() {
        let events = vec![
            Event {
                revision: 7,
                kind: EventKind::Put,
                kv: kv("a/1", b"x", 3, 7),
                prev: Some(kv("a/1", b"", 3, 5)),
            },
            Event {
                revision: 7,
                kind: EventKind::Delete,
                kv: kv("b", b"old", 2, 7),
                prev: Some(kv("b", b"old", 2, 2)),
            },
            Event {
                revision: 7,
                kind: EventKind::Put,
                kv: kv("c", b"new", 7, 7),
                prev: None,
            },
        ];
        let bytes = encode_events(&events).unwrap();
        assert_eq!(decode_events(7, &bytes).unwrap(), events);
        // Every truncation and a trailing byte are errors, not panics.
        for n in 0..bytes.len() {
            assert!(
                decode_events(7, &bytes[..n]).is_err(),
                "prefix of {n} bytes"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_events(7, &longer).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_events(1, &[0xff; 40]).is_err());
        assert!(decode_record("k", &[1, 2, 3]).is_err());
        let rec = encode_record(4, 9, b"v");
        let got = decode_record("k", &rec).unwrap();
        assert_eq!(got.to_key_value("k"), kv("k", b"v", 4, 9));
    }
}
