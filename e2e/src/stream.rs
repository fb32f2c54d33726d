//! Byte streams with known content, to prove a transfer arrived intact.
//!
//! A [`Pattern`] is an endless stream: its base buffer repeated. The writer
//! side ([`PatternWriter`]) sends the next bytes of it and hashes them
//! (SHA-256); the reader side ([`PatternReader`]) compares every byte it
//! receives with the byte expected at that position and hashes them too. A
//! lost, duplicated, reordered or corrupted segment shows as the first
//! mismatching offset (the base length is not a power of two, so shifted
//! data does not line up with the pattern by chance), a short stream as a
//! count, and both sides' digests must match.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

use crate::{E2eError, Result};

/// How much one write or read moves at most.
const CHUNK: usize = 64 * 1024;

/// An endless stream of known bytes: `base` repeated.
#[derive(Clone, Debug)]
pub struct Pattern {
    base: Arc<Vec<u8>>,
}

impl Pattern {
    /// `len` pseudo-random bytes from `seed`, repeated. A length that is
    /// not a multiple of a segment size keeps shifted data from matching.
    pub fn random(seed: u64, len: usize) -> Self {
        let mut base = vec![0u8; len.max(1)];
        rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut base);
        Self {
            base: Arc::new(base),
        }
    }

    /// `unit` repeated (e.g. a plaintext marker). An empty unit is one zero
    /// byte.
    pub fn repeating(unit: &[u8]) -> Self {
        let base = if unit.is_empty() {
            vec![0]
        } else {
            unit.to_vec()
        };
        Self {
            base: Arc::new(base),
        }
    }

    /// Fills `out` with the bytes at `pos..pos + out.len()`.
    fn fill(&self, pos: u64, out: &mut [u8]) {
        let len = self.base.len() as u64;
        let mut offset = (pos % len) as usize;
        let mut done = 0;
        while done < out.len() {
            let n = (self.base.len() - offset).min(out.len() - done);
            out[done..done + n].copy_from_slice(&self.base[offset..offset + n]);
            done += n;
            offset = 0;
        }
    }
}

/// The sending side: the next bytes of a [`Pattern`], hashed as they go.
#[derive(Debug)]
pub struct PatternWriter {
    pattern: Pattern,
    /// Bytes written so far.
    pub written: u64,
    sha: Sha256,
}

impl PatternWriter {
    /// A writer at the start of `pattern`.
    pub fn new(pattern: Pattern) -> Self {
        Self {
            pattern,
            written: 0,
            sha: Sha256::new(),
        }
    }

    /// Writes the next `n` bytes to `w`. On an error, `written` counts what
    /// was written before it.
    pub fn write_to(&mut self, w: &mut impl Write, n: u64) -> std::io::Result<()> {
        let mut buf = vec![0u8; CHUNK];
        let end = self.written + n;
        while self.written < end {
            let len = usize::try_from(end - self.written).map_or(CHUNK, |left| left.min(CHUNK));
            self.pattern.fill(self.written, &mut buf[..len]);
            let sent = match w.write(&buf[..len]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(sent) => sent,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.sha.update(&buf[..sent]);
            self.written += sent as u64;
        }
        Ok(())
    }

    /// The SHA-256 of everything written, in hex.
    pub fn sha256(&self) -> String {
        hex::encode(self.sha.clone().finalize())
    }
}

/// The receiving side: checks every byte against the [`Pattern`].
#[derive(Debug)]
pub struct PatternReader {
    pattern: Pattern,
    /// Bytes received so far.
    pub received: u64,
    /// The offset of the first byte that differed from the pattern.
    pub first_mismatch: Option<u64>,
    sha: Sha256,
}

impl PatternReader {
    /// A reader expecting the start of `pattern`.
    pub fn new(pattern: Pattern) -> Self {
        Self {
            pattern,
            received: 0,
            first_mismatch: None,
            sha: Sha256::new(),
        }
    }

    /// Reads from `r` until `n` more bytes have arrived (`Some(n)`) or until
    /// end of stream (`None`). Returns whether end of stream was reached.
    /// A read timeout set on `r` ends it with that error.
    pub fn read_from(&mut self, r: &mut impl Read, n: Option<u64>) -> std::io::Result<bool> {
        let mut buf = vec![0u8; CHUNK];
        let mut expected = vec![0u8; CHUNK];
        let end = n.map(|n| self.received + n);
        loop {
            let want = match end {
                Some(end) if self.received >= end => return Ok(false),
                Some(end) => usize::try_from(end - self.received).map_or(CHUNK, |l| l.min(CHUNK)),
                None => CHUNK,
            };
            let got = match r.read(&mut buf[..want]) {
                Ok(0) => return Ok(true),
                Ok(got) => got,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.check(&buf[..got], &mut expected[..got]);
        }
    }

    fn check(&mut self, got: &[u8], expected: &mut [u8]) {
        self.sha.update(got);
        if self.first_mismatch.is_none() {
            self.pattern.fill(self.received, expected);
            if got != expected {
                let at = got.iter().zip(expected.iter()).position(|(a, b)| a != b);
                self.first_mismatch = Some(self.received + at.unwrap_or(0) as u64);
            }
        }
        self.received += got.len() as u64;
    }

    /// The SHA-256 of everything received, in hex.
    pub fn sha256(&self) -> String {
        hex::encode(self.sha.clone().finalize())
    }
}

/// What [`transfer`] saw on both ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferReport {
    /// Bytes the sender wrote.
    pub sent: u64,
    /// Bytes the receiver read before end of stream.
    pub received: u64,
    /// SHA-256 of what was sent, hex.
    pub sent_sha256: String,
    /// SHA-256 of what was received, hex.
    pub received_sha256: String,
    /// The first offset where the received bytes differ from the pattern.
    pub first_mismatch: Option<u64>,
    /// From the first write to end of stream at the receiver.
    pub elapsed: Duration,
}

impl TransferReport {
    /// Everything sent arrived, byte for byte.
    pub fn intact(&self) -> bool {
        self.sent == self.received
            && self.sent_sha256 == self.received_sha256
            && self.first_mismatch.is_none()
    }

    /// Throughput in MB/s (10^6 bytes).
    pub fn mb_per_s(&self) -> f64 {
        self.received as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Sends `bytes` of `pattern` from `from` to `to` (two ends of one TCP
/// connection), closes the sending direction, and reads at `to` until end
/// of stream; everything within `timeout`.
pub fn transfer(
    from: &TcpStream,
    to: &TcpStream,
    pattern: &Pattern,
    bytes: u64,
    timeout: Duration,
) -> Result<TransferReport> {
    let io = |what: &str| {
        let what = what.to_string();
        move |e| E2eError::io(what, e)
    };
    from.set_write_timeout(Some(timeout))
        .map_err(io("setting a write timeout"))?;
    to.set_read_timeout(Some(timeout))
        .map_err(io("setting a read timeout"))?;
    let start = Instant::now();
    let mut writer = PatternWriter::new(pattern.clone());
    let mut reader = PatternReader::new(pattern.clone());
    let (write_result, read_result) = std::thread::scope(|scope| {
        let receiving = scope.spawn(|| {
            let mut to = to;
            reader.read_from(&mut to, None).map(|_| start.elapsed())
        });
        let mut from = from;
        let written = writer
            .write_to(&mut from, bytes)
            .and_then(|()| from.shutdown(Shutdown::Write));
        let read = receiving
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the receiving thread panicked")));
        (written, read)
    });
    write_result.map_err(|e| {
        E2eError::io(
            format!("sending (after {} of {bytes} bytes)", writer.written),
            e,
        )
    })?;
    let elapsed = read_result.map_err(|e| {
        E2eError::io(
            format!("receiving (after {} of {bytes} bytes)", reader.received),
            e,
        )
    })?;
    Ok(TransferReport {
        sent: writer.written,
        received: reader.received,
        sent_sha256: writer.sha256(),
        received_sha256: reader.sha256(),
        first_mismatch: reader.first_mismatch,
        elapsed,
    })
}
