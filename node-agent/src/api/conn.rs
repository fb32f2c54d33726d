//! One API connection: bounded request lines in, one response line out per
//! request, with timeouts.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tracing::{debug, debug_span, Instrument};
use weft_agent_api::{ErrorBody, ErrorCode, Request, Response, MAX_REQUEST_BYTES};

use super::{handlers, Services, IDLE_TIMEOUT, MAX_CONNECTIONS, REQUEST_TIMEOUT, WRITE_TIMEOUT};

/// What reading one request line gave.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A line (without its newline; a last line may lack one).
    Complete,
    /// The peer closed the connection between requests.
    Eof,
    /// The line is longer than the limit.
    TooLong,
}

/// Reads one line into `buf` (cleared first), at most `max` bytes.
async fn read_line(
    reader: &mut (impl AsyncBufRead + Unpin),
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() {
                Line::Eof
            } else {
                Line::Complete
            });
        }
        if let Some(i) = available.iter().position(|&b| b == b'\n') {
            if buf.len() + i > max {
                return Ok(Line::TooLong);
            }
            buf.extend_from_slice(&available[..i]);
            reader.consume(i + 1);
            return Ok(Line::Complete);
        }
        let n = available.len();
        if buf.len() + n > max {
            return Ok(Line::TooLong);
        }
        buf.extend_from_slice(available);
        reader.consume(n);
    }
}

/// Serves requests on one connection until the peer closes it, goes
/// silent, sends a line too long, or the server shuts down.
pub(super) async fn serve_connection(
    stream: UnixStream,
    services: Services,
    permit: Option<OwnedSemaphorePermit>,
    mut stop: watch::Receiver<bool>,
) {
    let span = debug_span!("api_conn");
    async move {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        if permit.is_none() {
            let busy = ErrorBody::new(
                ErrorCode::Unavailable,
                format!("the agent serves at most {MAX_CONNECTIONS} API connections at once; retry"),
            );
            let line = Response::failure(busy).to_line();
            let _ = tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&line)).await;
            return;
        }
        let mut buf = Vec::new();
        loop {
            let read = tokio::select! {
                r = tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut reader, &mut buf, MAX_REQUEST_BYTES)) => r,
                _ = stop.wait_for(|stopped| *stopped) => {
                    debug!("closing an idle connection: shutting down");
                    return;
                }
            };
            let (response, close) = match read {
                Err(_elapsed) => {
                    debug!("closing a silent connection");
                    return;
                }
                Ok(Err(e)) => {
                    debug!(error = %e, "connection read failed");
                    return;
                }
                Ok(Ok(Line::Eof)) => return,
                Ok(Ok(Line::TooLong)) => {
                    let body = ErrorBody::new(
                        ErrorCode::Invalid,
                        format!(
                            "request line longer than {MAX_REQUEST_BYTES} bytes; closing the connection"
                        ),
                    );
                    (Response::failure(body), true)
                }
                Ok(Ok(Line::Complete)) => match Request::parse(&buf) {
                    Ok(request) => {
                        let op = request.op();
                        let response =
                            handlers::handle_bounded(&services, request, REQUEST_TIMEOUT).await;
                        debug!(op, ok = response.ok, "request served");
                        (response, false)
                    }
                    Err(body) => {
                        debug!(error = %body.message, "bad request");
                        (Response::failure(body), false)
                    }
                },
            };
            let written =
                tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&response.to_line())).await;
            if close || !matches!(written, Ok(Ok(()))) {
                return;
            }
        }
    }
    .instrument(span)
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<(Line, Vec<u8>)> {
        let mut reader = BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        loop {
            let line = read_line(&mut reader, &mut buf, max).await.unwrap();
            let stop = line != Line::Complete;
            out.push((line, buf.clone()));
            if stop {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn lines_are_split_and_bounded() {
        let got = lines(b"ab\n\ncdefgh\nlast", 8).await;
        assert_eq!(
            got,
            vec![
                (Line::Complete, b"ab".to_vec()),
                (Line::Complete, b"".to_vec()),
                (Line::Complete, b"cdefgh".to_vec()),
                (Line::Complete, b"last".to_vec()),
                (Line::Eof, b"".to_vec()),
            ]
        );
        assert_eq!(lines(b"123456789\n", 8).await[0].0, Line::TooLong);
        assert_eq!(lines(b"12345678\n", 8).await[0].0, Line::Complete);
        assert_eq!(lines(b"123456789", 8).await[0].0, Line::TooLong);
    }
}
