//! `weft.v1.WatchResponse`, written by hand instead of generated, so that a
//! server can send events it encoded once for all its watchers.
//!
//! On the wire this is exactly the generated message (`repeated WatchEvent
//! events = 1`): a length-delimited field 1 per event. `encoded` holds
//! events as the bytes of an encoded `WatchEvent` each; they are written as
//! field 1 too, after `events`, so a client cannot tell them apart. A
//! decoded response has every event in `events` and `encoded` empty.

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::DecodeError;

use crate::v1::WatchEvent;

/// One batch of watch events, in revision order (see `cluster.proto`).
#[derive(Clone, PartialEq, Default, Debug)]
pub struct WatchResponse {
    /// The events (every event of a decoded response).
    pub events: Vec<WatchEvent>,
    /// Events already encoded, one `WatchEvent` each, sent after `events`.
    /// Only a sender fills this; the bytes are not checked here.
    pub encoded: Vec<Bytes>,
}

impl WatchResponse {
    /// A response of `events`.
    pub fn of(events: Vec<WatchEvent>) -> Self {
        WatchResponse {
            events,
            encoded: Vec::new(),
        }
    }

    /// A response of events encoded beforehand (`WatchEvent` bytes each).
    pub fn pre_encoded(encoded: Vec<Bytes>) -> Self {
        WatchResponse {
            events: Vec::new(),
            encoded,
        }
    }

    /// How many events it carries.
    pub fn len(&self) -> usize {
        self.events.len() + self.encoded.len()
    }

    /// Whether it carries none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl prost::Message for WatchResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for e in &self.events {
            encoding::message::encode(1, e, buf);
        }
        for b in &self.encoded {
            encoding::bytes::encode(1, b, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if tag == 1 {
            encoding::message::merge_repeated(wire_type, &mut self.events, buf, ctx).map_err(
                |mut e| {
                    e.push("WatchResponse", "events");
                    e
                },
            )
        } else {
            encoding::skip_field(wire_type, tag, buf, ctx)
        }
    }

    fn encoded_len(&self) -> usize {
        encoding::message::encoded_len_repeated(1, &self.events)
            + encoding::bytes::encoded_len_repeated(1, &self.encoded)
    }

    fn clear(&mut self) {
        self.events.clear();
        self.encoded.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{watch_event, Change, ChangeType, Keepalive, Node};
    use prost::Message;

    fn change(rev: u64, name: &str) -> WatchEvent {
        WatchEvent {
            revision: rev,
            event: Some(watch_event::Event::Change(Change {
                r#type: ChangeType::Put as i32,
                object: Some(crate::v1::change::Object::Node(Node {
                    name: name.into(),
                    ..Default::default()
                })),
            })),
        }
    }

    #[test]
    fn pre_encoded_events_decode_as_events_in_order() {
        let keepalive = WatchEvent {
            revision: 3,
            event: Some(watch_event::Event::Keepalive(Keepalive {})),
        };
        let a = change(4, "a");
        let b = change(5, "b");
        let sent = WatchResponse {
            events: vec![keepalive.clone()],
            encoded: vec![a.encode_to_vec().into(), b.encode_to_vec().into()],
        };
        let wire = sent.encode_to_vec();
        assert_eq!(wire.len(), sent.encoded_len());
        let got = WatchResponse::decode(wire.as_slice()).unwrap();
        assert_eq!(got, WatchResponse::of(vec![keepalive, a, b]));
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn the_same_bytes_as_a_response_of_events() {
        let a = change(7, "a");
        let plain = WatchResponse::of(vec![a.clone()]).encode_to_vec();
        let pre = WatchResponse::pre_encoded(vec![a.encode_to_vec().into()]).encode_to_vec();
        assert_eq!(plain, pre);
    }

    #[test]
    fn unknown_fields_are_skipped_and_garbage_is_an_error() {
        let mut wire = WatchResponse::of(vec![change(1, "a")]).encode_to_vec();
        // Field 9, varint 1.
        wire.extend_from_slice(&[9 << 3, 1]);
        assert_eq!(WatchResponse::decode(wire.as_slice()).unwrap().len(), 1);
        assert!(WatchResponse::decode(&[0x0a, 0x05, 0x01][..]).is_err());
    }
}
