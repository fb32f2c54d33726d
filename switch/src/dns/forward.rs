//! Forwarding names outside the cluster to the node's upstream resolvers,
//! sans-IO: a bounded cache honouring TTLs (negative answers by their SOA),
//! request coalescing, per-attempt timeouts and failover between upstreams.
//!
//! Contract:
//! - The IO shell owns the sockets and the clock. It hands client queries
//!   to [`Forwarder::query`] and upstream datagrams to
//!   [`Forwarder::response`], calls [`Forwarder::expire`] at
//!   [`Forwarder::next_deadline`], and carries out the [`Step`]s pushed
//!   into the output vector: send bytes to an upstream, or reply to a
//!   client (identified by the caller's opaque `C`).
//! - Each client gets back its own message id and its own question
//!   spelling, whether the answer came from the cache, from a coalesced
//!   upstream query or from a fresh one.
//! - Bounded: at most `max_pending` questions in flight (more get SERVFAIL
//!   at once, counted) and `max_waiters` clients per question; at most
//!   `cache_entries` cached answers, the soonest-expiring evicted first. A
//!   flood of random names costs bounded memory and never delays answers
//!   from the cluster zone, which do not pass through here.
//! - An upstream that does not answer within `attempt_timeout` is skipped
//!   for the next attempt (round-robin from the one that failed); after
//!   `attempts` tries the clients get SERVFAIL.
//! - Responses that match no pending query (wrong id, wrong source, wrong
//!   question) are ignored and counted; nothing here panics on any bytes.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

/// Limits and timeouts.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// The upstream resolvers (from the node's resolv.conf or flags).
    pub upstreams: Vec<SocketAddr>,
    /// One attempt's timeout.
    pub attempt_timeout: Duration,
    /// Attempts per question, across upstreams.
    pub attempts: usize,
    /// Questions in flight at once.
    pub max_pending: usize,
    /// Clients waiting on one question.
    pub max_waiters: usize,
    /// Cached answers.
    pub cache_entries: usize,
    /// Longest time an answer is cached, whatever its TTL.
    pub max_ttl: Duration,
    /// How long a negative answer without an SOA, or a SERVFAIL from
    /// upstream, is cached.
    pub default_negative_ttl: Duration,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            upstreams: Vec::new(),
            attempt_timeout: Duration::from_secs(2),
            attempts: 3,
            max_pending: 4096,
            max_waiters: 64,
            cache_entries: 10_000,
            max_ttl: Duration::from_secs(3600),
            default_negative_ttl: Duration::from_secs(5),
        }
    }
}

/// What the IO shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<C> {
    /// Send `bytes` to this upstream resolver.
    Send {
        upstream: SocketAddr,
        bytes: Vec<u8>,
    },
    /// Send `bytes` (a complete DNS response) to this client.
    Reply { client: C, bytes: Vec<u8> },
}

/// Counters of the forwarder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardStats {
    pub queries: u64,
    pub cache_hits: u64,
    pub coalesced: u64,
    pub sent: u64,
    pub answered: u64,
    pub timeouts: u64,
    pub failures: u64,
    pub overloaded: u64,
    pub unmatched: u64,
    pub malformed: u64,
    /// Total time from first send to answer, for a mean latency.
    pub latency_total: Duration,
    /// The same latencies as a histogram: `latency_buckets[i]` counts the
    /// answers that took at most [`LATENCY_BOUNDS`]`[i]` and more than the
    /// bound before it; the last one counts those slower than every bound.
    /// The buckets add up to `answered`.
    pub latency_buckets: [u64; LATENCY_BOUNDS.len() + 1],
}

/// The upper bounds of [`ForwardStats::latency_buckets`].
pub const LATENCY_BOUNDS: [Duration; 10] = [
    Duration::from_millis(1),
    Duration::from_millis(2),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
];

impl ForwardStats {
    fn observe_latency(&mut self, latency: Duration) {
        self.latency_total += latency;
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|bound| latency <= *bound)
            .unwrap_or(LATENCY_BOUNDS.len());
        if let Some(n) = self.latency_buckets.get_mut(bucket) {
            *n += 1;
        }
    }
}

/// The cache key: lower-case name, type, class.
type Key = (String, u16, u16);

struct Waiter<C> {
    client: C,
    id: u16,
    /// The client's question, as it spelled it.
    question: Vec<hickory_proto::op::Query>,
}

struct Pending<C> {
    key: Key,
    /// The upstream query, minus its id (rewritten per attempt).
    query: Vec<u8>,
    upstream: usize,
    attempts: usize,
    started: Instant,
    deadline: Instant,
    waiters: Vec<Waiter<C>>,
}

struct Cached {
    message: Message,
    stored: Instant,
    expires: Instant,
}

/// The forwarder. See the module docs.
pub struct Forwarder<C> {
    config: ForwardConfig,
    /// Upstream query id -> pending question.
    pending: HashMap<u16, Pending<C>>,
    /// Question -> its upstream query id (coalescing).
    in_flight: HashMap<Key, u16>,
    cache: HashMap<Key, Cached>,
    /// Expiry order of the cache, for eviction: (expires, seq) -> key.
    expiry: BTreeMap<(Instant, u64), Key>,
    seq: u64,
    next_id: u16,
    next_upstream: usize,
    stats: ForwardStats,
}

impl<C: Clone> Forwarder<C> {
    /// A forwarder; `seed` starts the upstream query ids (pass a random
    /// value: ids are a spoofing defence).
    pub fn new(config: ForwardConfig, seed: u16) -> Self {
        Self {
            config,
            pending: HashMap::new(),
            in_flight: HashMap::new(),
            cache: HashMap::new(),
            expiry: BTreeMap::new(),
            seq: 0,
            next_id: seed,
            next_upstream: 0,
            stats: ForwardStats::default(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> ForwardStats {
        self.stats
    }

    /// Questions in flight and cached answers.
    pub fn sizes(&self) -> (usize, usize) {
        (self.pending.len(), self.cache.len())
    }

    /// A client's query (already judged to be outside the cluster zone).
    pub fn query(&mut self, now: Instant, client: C, bytes: &[u8], out: &mut Vec<Step<C>>) {
        self.stats.queries += 1;
        let Ok(request) = Message::from_vec(bytes) else {
            self.stats.malformed += 1;
            return;
        };
        let Some(q) = request.queries.first() else {
            self.stats.malformed += 1;
            return;
        };
        let key = key_of(q.name(), q.query_type(), q.query_class());
        let waiter = Waiter {
            client: client.clone(),
            id: request.metadata.id,
            question: request.queries.clone(),
        };
        if let Some(hit) = self.cache.get(&key) {
            if hit.expires > now {
                self.stats.cache_hits += 1;
                let age = now.saturating_duration_since(hit.stored);
                if let Some(bytes) = respond(&hit.message, &waiter, age) {
                    out.push(Step::Reply { client, bytes });
                }
                return;
            }
        }
        if let Some(id) = self.in_flight.get(&key) {
            if let Some(p) = self.pending.get_mut(id) {
                if p.waiters.len() < self.config.max_waiters {
                    self.stats.coalesced += 1;
                    p.waiters.push(waiter);
                } else {
                    self.stats.overloaded += 1;
                    out.extend(servfail(&request, client));
                }
                return;
            }
        }
        if self.pending.len() >= self.config.max_pending || self.config.upstreams.is_empty() {
            self.stats.overloaded += 1;
            out.extend(servfail(&request, client));
            return;
        }
        // The upstream query: the client's, with recursion desired and
        // our own id.
        let mut upstream_query = request.clone();
        upstream_query.metadata.recursion_desired = true;
        let Ok(query) = upstream_query.to_vec() else {
            self.stats.malformed += 1;
            return;
        };
        let Some(id) = self.free_id() else {
            self.stats.overloaded += 1;
            out.extend(servfail(&request, client));
            return;
        };
        let upstream = self.next_upstream % self.config.upstreams.len();
        self.next_upstream = self.next_upstream.wrapping_add(1);
        let pending = Pending {
            key: key.clone(),
            query,
            upstream,
            attempts: 1,
            started: now,
            deadline: now + self.config.attempt_timeout,
            waiters: vec![waiter],
        };
        out.extend(self.send(id, &pending));
        self.in_flight.insert(key, id);
        self.pending.insert(id, pending);
    }

    /// A datagram from `from` on the upstream socket.
    pub fn response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
        out: &mut Vec<Step<C>>,
    ) {
        let Ok(message) = Message::from_vec(bytes) else {
            self.stats.malformed += 1;
            return;
        };
        let id = message.metadata.id;
        let matches = self.pending.get(&id).is_some_and(|p| {
            message.metadata.message_type == MessageType::Response
                && self.config.upstreams.get(p.upstream) == Some(&from)
                && message
                    .queries
                    .first()
                    .is_some_and(|q| key_of(q.name(), q.query_type(), q.query_class()) == p.key)
        });
        if !matches {
            self.stats.unmatched += 1;
            return;
        }
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        self.in_flight.remove(&p.key);
        self.stats.answered += 1;
        self.stats
            .observe_latency(now.saturating_duration_since(p.started));
        if message.metadata.truncation {
            // A truncated answer is passed on as it is (the client retries
            // over TCP) and not cached.
        } else if let Some(ttl) = cache_ttl(&message, &self.config) {
            self.store(now, p.key.clone(), message.clone(), ttl);
        }
        for w in p.waiters {
            if let Some(bytes) = respond(&message, &w, Duration::ZERO) {
                out.push(Step::Reply {
                    client: w.client,
                    bytes,
                });
            }
        }
    }

    /// When [`Self::expire`] must next be called, if anything is pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Retries or fails the questions whose attempt timed out.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Step<C>>) {
        let due: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(mut p) = self.pending.remove(&id) else {
                continue;
            };
            self.stats.timeouts += 1;
            if p.attempts >= self.config.attempts {
                self.in_flight.remove(&p.key);
                self.stats.failures += 1;
                for w in p.waiters {
                    out.extend(servfail_for(&w));
                }
                continue;
            }
            // Failover: the next upstream, with a fresh id.
            p.attempts += 1;
            p.upstream = (p.upstream + 1) % self.config.upstreams.len().max(1);
            p.deadline = now + self.config.attempt_timeout;
            let Some(new_id) = self.free_id() else {
                self.in_flight.remove(&p.key);
                for w in p.waiters {
                    out.extend(servfail_for(&w));
                }
                continue;
            };
            out.extend(self.send(new_id, &p));
            self.in_flight.insert(p.key.clone(), new_id);
            self.pending.insert(new_id, p);
        }
        // Drop expired cache entries in passing (bounded work: the
        // expired prefix of the expiry order).
        while let Some((&(expires, seq), _)) = self.expiry.iter().next() {
            if expires > now {
                break;
            }
            if let Some(key) = self.expiry.remove(&(expires, seq)) {
                if self.cache.get(&key).is_some_and(|c| c.expires == expires) {
                    self.cache.remove(&key);
                }
            }
        }
    }

    fn send(&mut self, id: u16, p: &Pending<C>) -> Option<Step<C>> {
        let upstream = *self.config.upstreams.get(p.upstream)?;
        self.stats.sent += 1;
        let mut bytes = p.query.clone();
        if let Some(head) = bytes.get_mut(..2) {
            head.copy_from_slice(&id.to_be_bytes());
        }
        Some(Step::Send { upstream, bytes })
    }

    /// An upstream query id not in use (ids advance by an odd step, so
    /// they do not simply count up).
    fn free_id(&mut self) -> Option<u16> {
        for _ in 0..=u16::MAX {
            self.next_id = self.next_id.wrapping_add(40_503);
            if !self.pending.contains_key(&self.next_id) {
                return Some(self.next_id);
            }
        }
        None
    }

    fn store(&mut self, now: Instant, key: Key, message: Message, ttl: Duration) {
        if self.config.cache_entries == 0 {
            return;
        }
        while self.cache.len() >= self.config.cache_entries && !self.cache.contains_key(&key) {
            let Some((&first, _)) = self.expiry.iter().next() else {
                break;
            };
            if let Some(old) = self.expiry.remove(&first) {
                self.cache.remove(&old);
            }
        }
        let expires = now + ttl;
        self.seq += 1;
        self.expiry.insert((expires, self.seq), key.clone());
        self.cache.insert(
            key,
            Cached {
                message,
                stored: now,
                expires,
            },
        );
    }
}

fn key_of(name: &Name, qtype: RecordType, class: DNSClass) -> Key {
    (
        name.to_lowercase().to_ascii(),
        u16::from(qtype),
        u16::from(class),
    )
}

/// How long an upstream answer may be cached: its smallest TTL, or for a
/// negative answer its SOA's negative TTL (RFC 2308); SERVFAIL and other
/// errors briefly; `None` for what must not be cached.
fn cache_ttl(m: &Message, config: &ForwardConfig) -> Option<Duration> {
    let secs = match m.metadata.response_code {
        ResponseCode::NoError if !m.answers.is_empty() => m.answers.iter().map(|r| r.ttl).min(),
        ResponseCode::NoError | ResponseCode::NXDomain => m
            .authorities
            .iter()
            .find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })
            .or(Some(config.default_negative_ttl.as_secs() as u32)),
        ResponseCode::ServFail => Some(config.default_negative_ttl.as_secs() as u32),
        _ => None,
    }?;
    if secs == 0 {
        return None;
    }
    Some(Duration::from_secs(u64::from(secs)).min(config.max_ttl))
}

/// The cached or upstream `message` as an answer to `w`: its id, its
/// question spelling, TTLs lowered by `age`.
fn respond<C>(message: &Message, w: &Waiter<C>, age: Duration) -> Option<Vec<u8>> {
    let mut m = message.clone();
    m.metadata.id = w.id;
    m.queries.clone_from(&w.question);
    let age = u32::try_from(age.as_secs()).unwrap_or(u32::MAX);
    for r in m
        .answers
        .iter_mut()
        .chain(m.authorities.iter_mut())
        .chain(m.additionals.iter_mut())
    {
        r.ttl = r.ttl.saturating_sub(age);
    }
    m.to_vec().ok()
}

fn servfail<C>(request: &Message, client: C) -> Option<Step<C>> {
    let mut m = Message::error_msg(
        request.metadata.id,
        request.metadata.op_code,
        ResponseCode::ServFail,
    );
    m.metadata.recursion_desired = request.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_queries(request.queries.iter().cloned());
    Some(Step::Reply {
        client,
        bytes: m.to_vec().ok()?,
    })
}

fn servfail_for<C: Clone>(w: &Waiter<C>) -> Option<Step<C>> {
    let mut m = Message::error_msg(
        w.id,
        hickory_proto::op::OpCode::Query,
        ResponseCode::ServFail,
    );
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m.add_queries(w.question.iter().cloned());
    Some(Step::Reply {
        client: w.client.clone(),
        bytes: m.to_vec().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{OpCode, Query};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::Record;

    use super::*;

    const UP1: &str = "192.0.2.53:53";
    const UP2: &str = "192.0.2.54:53";

    fn forwarder() -> Forwarder<u32> {
        Forwarder::new(
            ForwardConfig {
                upstreams: vec![UP1.parse().unwrap(), UP2.parse().unwrap()],
                cache_entries: 4,
                ..ForwardConfig::default()
            },
            7,
        )
    }

    fn query(id: u16, name: &str) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    /// The upstream's answer to the query it was sent.
    fn upstream_answer(sent: &[u8], ttl: u32, nx: bool) -> Vec<u8> {
        let q = Message::from_vec(sent).unwrap();
        let mut m = Message::response(q.metadata.id, OpCode::Query);
        m.add_queries(q.queries.clone());
        let name = q.queries[0].name().clone();
        if nx {
            m.metadata.response_code = ResponseCode::NXDomain;
            let soa = SOA::new(name.clone(), name.clone(), 1, 1, 1, 1, 30);
            m.add_authority(Record::from_rdata(name, 600, RData::SOA(soa)));
        } else {
            m.add_answer(Record::from_rdata(
                name,
                ttl,
                RData::A(A::new(192, 0, 2, 80)),
            ));
        }
        m.to_vec().unwrap()
    }

    fn sent(out: &[Step<u32>]) -> (SocketAddr, Vec<u8>) {
        match out {
            [Step::Send { upstream, bytes }] => (*upstream, bytes.clone()),
            other => panic!("expected one send, got {other:?}"),
        }
    }

    fn replies(out: &[Step<u32>]) -> Vec<(u32, Message)> {
        out.iter()
            .filter_map(|s| match s {
                Step::Reply { client, bytes } => Some((*client, Message::from_vec(bytes).unwrap())),
                Step::Send { .. } => None,
            })
            .collect()
    }

    #[test]
    fn answers_coalesce_cache_and_age() {
        let t0 = crate::testing::epoch();
        let mut f = forwarder();
        let mut out = Vec::new();
        f.query(t0, 1, &query(0xaaaa, "Example.com."), &mut out);
        let (up, q) = sent(&out);
        assert_eq!(up, UP1.parse().unwrap());
        assert_ne!(
            u16::from_be_bytes([q[0], q[1]]),
            0xaaaa,
            "our own id upstream"
        );
        out.clear();
        // The same question while in flight: coalesced, nothing sent.
        f.query(t0, 2, &query(0xbbbb, "example.COM."), &mut out);
        assert!(out.is_empty());
        f.response(
            t0 + Duration::from_millis(3),
            up,
            &upstream_answer(&q, 60, false),
            &mut out,
        );
        let r = replies(&out);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].0, r[0].1.metadata.id), (1, 0xaaaa));
        assert_eq!(r[0].1.queries[0].name().to_ascii(), "Example.com.");
        assert_eq!((r[1].0, r[1].1.metadata.id), (2, 0xbbbb));
        assert_eq!(r[1].1.queries[0].name().to_ascii(), "example.COM.");
        out.clear();
        // From the cache, 10 s after the answer: TTL lowered, nothing sent.
        f.query(
            t0 + Duration::from_millis(10_003),
            3,
            &query(0xcccc, "example.com."),
            &mut out,
        );
        let r = replies(&out);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].1.answers[0].ttl, 50);
        assert_eq!(f.stats().cache_hits, 1);
        assert_eq!(f.stats().coalesced, 1);
        // One upstream answer, 3 ms after the send: the 5 ms bucket.
        let stats = f.stats();
        assert_eq!(stats.answered, 1);
        assert_eq!(stats.latency_total, Duration::from_millis(3));
        let mut buckets = [0; LATENCY_BOUNDS.len() + 1];
        buckets[2] = 1;
        assert_eq!(stats.latency_buckets, buckets);
        out.clear();
        // After the TTL: asked again.
        f.query(
            t0 + Duration::from_secs(61),
            4,
            &query(1, "example.com."),
            &mut out,
        );
        sent(&out);
    }

    #[test]
    fn negative_answers_are_cached_by_their_soa() {
        let t0 = crate::testing::epoch();
        let mut f = forwarder();
        let mut out = Vec::new();
        f.query(t0, 1, &query(5, "nx.example."), &mut out);
        let (up, q) = sent(&out);
        out.clear();
        f.response(t0, up, &upstream_answer(&q, 0, true), &mut out);
        out.clear();
        f.query(
            t0 + Duration::from_secs(29),
            2,
            &query(6, "nx.example."),
            &mut out,
        );
        let r = replies(&out);
        assert_eq!(r[0].1.metadata.response_code, ResponseCode::NXDomain);
        out.clear();
        f.query(
            t0 + Duration::from_secs(31),
            3,
            &query(7, "nx.example."),
            &mut out,
        );
        sent(&out);
    }

    #[test]
    fn a_dead_upstream_fails_over_then_servfails() {
        let t0 = crate::testing::epoch();
        let mut f = forwarder();
        let mut out = Vec::new();
        f.query(t0, 9, &query(42, "slow.example."), &mut out);
        let (first, _) = sent(&out);
        out.clear();
        let deadline = f.next_deadline().unwrap();
        f.expire(deadline, &mut out);
        let (second, q2) = sent(&out);
        assert_ne!(first, second, "fails over to the other upstream");
        out.clear();
        // The first upstream's late answer (old id) is ignored.
        f.response(deadline, first, &upstream_answer(&q2, 5, false), &mut out);
        assert!(out.is_empty());
        assert_eq!(f.stats().unmatched, 1);
        f.expire(f.next_deadline().unwrap(), &mut out);
        sent(&out);
        out.clear();
        f.expire(f.next_deadline().unwrap(), &mut out);
        let r = replies(&out);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].1.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(r[0].1.metadata.id, 42);
        assert_eq!(f.sizes().0, 0);
        assert_eq!(f.next_deadline(), None);
    }

    #[test]
    fn floods_stay_bounded() {
        let t0 = crate::testing::epoch();
        let mut f = Forwarder::new(
            ForwardConfig {
                upstreams: vec![UP1.parse().unwrap()],
                max_pending: 8,
                cache_entries: 4,
                ..ForwardConfig::default()
            },
            1,
        );
        let mut out = Vec::new();
        for i in 0..100u16 {
            f.query(
                t0,
                u32::from(i),
                &query(i, &format!("n{i}.example.")),
                &mut out,
            );
        }
        assert_eq!(f.sizes().0, 8);
        assert_eq!(f.stats().overloaded, 92);
        // Every refused client got a SERVFAIL at once.
        assert_eq!(replies(&out).len(), 92);
        // Answers fill the cache up to its bound.
        let sends: Vec<(SocketAddr, Vec<u8>)> = out
            .iter()
            .filter_map(|s| match s {
                Step::Send { upstream, bytes } => Some((*upstream, bytes.clone())),
                Step::Reply { .. } => None,
            })
            .collect();
        for (up, q) in sends {
            f.response(t0, up, &upstream_answer(&q, 300, false), &mut Vec::new());
        }
        assert_eq!(f.sizes(), (0, 4));
        // Garbage from anywhere: ignored.
        f.response(t0, UP1.parse().unwrap(), &[1, 2, 3], &mut out);
        assert_eq!(f.stats().malformed, 1);
    }
}
