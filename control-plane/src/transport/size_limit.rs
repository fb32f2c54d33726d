//! The message-size limit, answered the gRPC way: a request whose first
//! message declares more than [`MAX_MESSAGE_BYTES`] gets
//! `RESOURCE_EXHAUSTED` (tonic's own decoder would say `OUT_OF_RANGE`).
//!
//! A gRPC message on the wire is a 5-byte prefix (compressed flag, 32-bit
//! big-endian length) and the message (gRPC over HTTP/2, "Length-Prefixed-
//! Message"). The layer reads request body frames only until it holds those
//! 5 bytes, answers at once if the length is over the limit (the rest is
//! never read), and otherwise hands the inner service the body with the
//! frames it read put back in front. Every RPC of `weft.v1` takes one
//! request message, so the first is the only one; tonic's decoder enforces
//! the same limit on anything after it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tonic::body::Body;
use tower::{Layer, Service};

/// Largest request message the control plane reads (tonic's default).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Length of the gRPC message prefix.
const PREFIX: usize = 5;

/// A request message larger than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request message is {len} bytes; this control plane accepts at most {limit}")]
pub struct TooLarge {
    pub len: u64,
    pub limit: u64,
}

/// Wraps the gRPC routes with the size check.
#[derive(Debug, Clone, Copy)]
pub struct MessageSizeLayer {
    limit: usize,
}

impl MessageSizeLayer {
    /// Refuse first messages longer than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        MessageSizeLayer { limit }
    }
}

impl<S> Layer<S> for MessageSizeLayer {
    type Service = MessageSize<S>;

    fn layer(&self, inner: S) -> MessageSize<S> {
        MessageSize {
            inner,
            limit: self.limit,
        }
    }
}

/// The service [`MessageSizeLayer`] makes.
#[derive(Debug, Clone)]
pub struct MessageSize<S> {
    inner: S,
    limit: usize,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ResBody> Service<http::Request<Body>> for MessageSize<S>
where
    S: Service<http::Request<Body>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ResBody: Default + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // The clone is the one that was not polled ready; keep the ready one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limit = self.limit;
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let peeked = Peeked::read(body).await;
            if let Some(len) = peeked.declared_len() {
                if len > limit as u64 {
                    let status: tonic::Status = TooLarge {
                        len,
                        limit: limit as u64,
                    }
                    .into();
                    return Ok(status.into_http());
                }
            }
            inner
                .call(http::Request::from_parts(parts, Body::new(peeked)))
                .await
        })
    }
}

/// A request body with its first frames read ahead.
struct Peeked {
    frames: VecDeque<Frame<Bytes>>,
    error: Option<tonic::Status>,
    rest: Body,
}

impl Peeked {
    /// Read data frames until the 5-byte prefix is in, the body ends, or it
    /// fails (the error is replayed in order).
    async fn read(mut rest: Body) -> Peeked {
        let mut frames = VecDeque::new();
        let mut have = 0;
        let mut error = None;
        while have < PREFIX {
            match rest.frame().await {
                None => break,
                Some(Ok(frame)) => {
                    let is_data = frame.is_data();
                    if let Some(d) = frame.data_ref() {
                        have += d.len();
                    }
                    frames.push_back(frame);
                    if !is_data {
                        break;
                    }
                }
                Some(Err(e)) => {
                    error = Some(e);
                    break;
                }
            }
        }
        Peeked {
            frames,
            error,
            rest,
        }
    }

    /// The first message's declared length, if its prefix was read.
    fn declared_len(&self) -> Option<u64> {
        let mut prefix = [0u8; PREFIX];
        let mut n = 0;
        for d in self.frames.iter().filter_map(Frame::data_ref) {
            let mut chunk = d.clone();
            while n < PREFIX && chunk.has_remaining() {
                prefix[n] = chunk.get_u8();
                n += 1;
            }
        }
        (n == PREFIX).then(|| {
            u64::from(u32::from_be_bytes([
                prefix[1], prefix[2], prefix[3], prefix[4],
            ]))
        })
    }
}

impl HttpBody for Peeked {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        if let Some(f) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(f)));
        }
        if let Some(e) = self.error.take() {
            return Poll::Ready(Some(Err(e)));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.error.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let buffered: u64 = self
            .frames
            .iter()
            .filter_map(Frame::data_ref)
            .map(|d| d.len() as u64)
            .sum();
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + buffered);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + buffered);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(chunks: &[&[u8]]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, tonic::Status>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        Body::new(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )))
    }

    #[tokio::test]
    async fn the_prefix_is_found_across_frames_and_the_body_is_intact() {
        let chunks: &[&[u8]] = &[&[0, 0], &[0, 1], &[2, b'a'], b"bc"];
        let peeked = Peeked::read(body_of(chunks)).await;
        assert_eq!(peeked.declared_len(), Some(0x102));
        assert_eq!(peeked.frames.len(), 3, "reads no further than the prefix");
        let all = Body::new(peeked).collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], &[0, 0, 0, 1, 2, b'a', b'b', b'c']);
    }

    #[tokio::test]
    async fn a_short_or_empty_body_has_no_length() {
        assert_eq!(Peeked::read(body_of(&[&[0, 0]])).await.declared_len(), None);
        assert_eq!(Peeked::read(body_of(&[])).await.declared_len(), None);
        let big = Peeked::read(body_of(&[&[0, 0xff, 0xff, 0xff, 0xff]])).await;
        assert_eq!(big.declared_len(), Some(u64::from(u32::MAX)));
    }
}
