//! Two whole Dilation [`Endpoint`]s against each other on virtual time, the way quinn's `Pair`
//! drives two connections: an in-memory mailbox, in-memory TCP connections (direct, or through an
//! in-memory transit relay that pairs by token and side) that can be delayed, cut (both ends see
//! the loss at once), blackholed (bytes and closes vanish silently) and refused, real Noise and
//! records on them, and a clock that jumps to the next delivery or timer. No sockets, no sleeps.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::dilation::config::{DilationConfig, DilationEvent};
use crate::dilation::hints::RelayLocation;
use crate::dilation::l2::RecvHalf;

pub const RELAY_HOST: &str = "198.18.0.100";
pub const RELAY_PORT: u16 = 4001;
/// One-way latency of every hop, unless a test sets [`Pair::latency`].
pub const LATENCY: Duration = Duration::from_millis(5);

/// A small deterministic generator (xorshift64*), for payloads and fault schedules.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A socket end: which peer (0, 1) owns it and its connection id there, or the relay's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Sock {
    Peer(usize, ConnId),
    Relay(u64),
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Delivery {
    Mailbox {
        to: usize,
        body: Vec<u8>,
    },
    /// A dial reaches its destination.
    Connect {
        from: Sock,
        host: String,
        port: u16,
    },
    Open {
        to: Sock,
        peer: SocketAddrKey,
    },
    Bytes {
        to: Sock,
        bytes: Vec<u8>,
    },
    Closed {
        to: Sock,
        reason: String,
    },
}

/// `SocketAddr` with an order, for the delivery queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SocketAddrKey(SocketAddr);

pub struct Peer {
    pub ep: Endpoint,
    host: String,
    listening: Option<(u32, u16)>,
    next_port: u16,
    links: HashMap<ConnId, (SendHalf, RecvHalf)>,
    pub events: Vec<Event>,
    pub opened: HashMap<OpenId, Scid>,
    pub received: HashMap<Scid, Vec<u8>>,
    pub incoming: Vec<(Scid, String)>,
    pub read_closed: HashSet<Scid>,
    pub closed: HashSet<Scid>,
    /// Dials this peer made: (host, port, path).
    pub dials: Vec<(String, u16, PathKind)>,
    /// Record bytes sealed onto links.
    pub transmitted: usize,
}

impl Peer {
    /// Our address with `port`.
    fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.host.parse().expect("an address"), port)
    }
}

struct RelaySock {
    buf: Vec<u8>,
    line: Option<(String, String)>,
}

pub struct Pair {
    pub now: Instant,
    pub start: Instant,
    pub peers: [Peer; 2],
    queue: BinaryHeap<Reverse<(Instant, u64, Delivery)>>,
    seq: u64,
    /// Each socket's other end.
    wires: HashMap<Sock, Sock>,
    /// Wires that go through the relay (cut when it goes down).
    relayed: HashSet<Sock>,
    relay_socks: HashMap<u64, RelaySock>,
    next_relay_sock: u64,
    pub relay_up: bool,
    pub mailbox_up: bool,
    mailbox_held: Vec<(usize, Vec<u8>)>,
    /// Everything between the peers (direct and relayed) vanishes silently.
    pub blackhole: bool,
    /// Direct dials are refused (no route: a relay-only network).
    pub direct_refused: bool,
    /// Sockets whose other end closed while the path was blackholed: their next send after the
    /// path returns meets a reset.
    zombies: HashSet<Sock>,
    pub mailbox_messages: usize,
    /// One-way latency of every hop (the mailbox, connects, bytes, closes).
    pub latency: Duration,
}

/// Test configuration: the relay is the in-memory one; the timers are short enough for tests.
pub fn config(side: &str) -> DilationConfig {
    DilationConfig {
        relay: Some(RelayLocation {
            host: RELAY_HOST.into(),
            port: RELAY_PORT,
            priority: 0.0,
        }),
        side: Some(side.into()),
        liveness_interval: Duration::from_secs(5),
        ..DilationConfig::default()
    }
}

impl Pair {
    /// Two endpoints: peer 0 leads (its side is larger). They have the key and each other's
    /// versions at once.
    pub fn new(c0: DilationConfig, c1: DilationConfig) -> Pair {
        let start = Instant::now();
        let peer = |config: DilationConfig, host: &str| {
            let side = config.side.clone().expect("test configs fix the side");
            Peer {
                ep: Endpoint::new(config, &side),
                host: host.into(),
                listening: None,
                next_port: 1000,
                links: HashMap::new(),
                events: Vec::new(),
                opened: HashMap::new(),
                received: HashMap::new(),
                incoming: Vec::new(),
                read_closed: HashSet::new(),
                closed: HashSet::new(),
                dials: Vec::new(),
                transmitted: 0,
            }
        };
        Pair {
            now: start,
            start,
            peers: [peer(c0, "198.18.0.1"), peer(c1, "198.18.0.2")],
            queue: BinaryHeap::new(),
            seq: 0,
            wires: HashMap::new(),
            relayed: HashSet::new(),
            relay_socks: HashMap::new(),
            next_relay_sock: 0,
            relay_up: true,
            mailbox_up: true,
            mailbox_held: Vec::new(),
            blackhole: false,
            direct_refused: false,
            zombies: HashSet::new(),
            mailbox_messages: 0,
            latency: LATENCY,
        }
    }

    /// The default pair: peer 0 leads, both listen and know the relay.
    pub fn default_pair() -> Pair {
        Pair::new(config("ffffffffffffffff"), config("0000000000000001"))
    }

    /// Both peers get the key and the peer's versions (the wormhole's part is done).
    pub fn start_dilation(&mut self) {
        let key = [7u8; 32];
        let now = self.now;
        for p in &mut self.peers {
            p.ep.handle_key(now, key);
            p.ep.handle_peer_versions(now, vec!["ged".into()]);
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn push(&mut self, at: Instant, d: Delivery) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, d)));
    }

    /// Carries out both endpoints' actions, records their events and transmits their records,
    /// until neither has anything more to do.
    pub fn pump(&mut self) {
        loop {
            let mut progressed = false;
            for i in 0..2 {
                progressed |= self.pump_peer(i);
            }
            if !progressed {
                return;
            }
        }
    }

    fn pump_peer(&mut self, i: usize) -> bool {
        let mut progressed = false;
        while let Some(a) = self.peers[i].ep.poll_action() {
            progressed = true;
            self.action(i, a);
        }
        while let Some(e) = self.peers[i].ep.poll_event() {
            progressed = true;
            self.app_event(i, e);
        }
        if let Some(conn) = self.peers[i].ep.selected() {
            let mut out = Vec::new();
            while self.peers[i].ep.wants_transmit() {
                let p = &mut self.peers[i];
                let Some((send, _)) = p.links.get_mut(&conn) else {
                    break;
                };
                let mut scratch = Vec::new();
                let before = out.len();
                let _ =
                    p.ep.poll_transmit(64 * 1024, |r| send.seal_record(r, &mut out, &mut scratch));
                p.transmitted += out.len() - before;
                progressed = true;
            }
            if !out.is_empty() {
                self.send_bytes(Sock::Peer(i, conn), out);
            }
        }
        progressed
    }

    fn app_event(&mut self, i: usize, e: Event) {
        let p = &mut self.peers[i];
        match &e {
            Event::Opened {
                id,
                result: Ok(scid),
                ..
            } => {
                p.opened.insert(*id, *scid);
            }
            Event::Incoming {
                scid, subprotocol, ..
            } => p.incoming.push((*scid, subprotocol.clone())),
            Event::Data { scid, data } => p.received.entry(*scid).or_default().extend(data),
            Event::ReadClosed { scid } => {
                p.read_closed.insert(*scid);
            }
            Event::Closed { scid } => {
                p.closed.insert(*scid);
            }
            _ => {}
        }
        if !matches!(e, Event::Data { .. } | Event::Sent { .. }) {
            p.events.push(e);
        }
    }

    fn action(&mut self, i: usize, a: Action) {
        let now = self.now;
        match a {
            Action::SendDilate(body) => {
                self.mailbox_messages += 1;
                if self.mailbox_up {
                    self.push(now + self.latency, Delivery::Mailbox { to: 1 - i, body });
                } else {
                    self.mailbox_held.push((1 - i, body));
                }
            }
            Action::Listen { generation, .. } => {
                let p = &mut self.peers[i];
                let port = p.next_port;
                p.next_port += 1;
                p.listening = Some((generation, port));
                let addresses = vec![
                    p.host.parse().expect("an address"),
                    "127.0.0.1".parse().unwrap(),
                ];
                p.ep.handle_listening(now, generation, Some((port, addresses)));
            }
            Action::StopListening => self.peers[i].listening = None,
            Action::Dial {
                conn,
                host,
                port,
                path,
            } => {
                self.peers[i].dials.push((host.clone(), port, path));
                let from = Sock::Peer(i, conn);
                if self.blackhole && host != RELAY_HOST {
                    return; // the SYN vanishes: only the connect timeout ends it
                }
                self.push(now + self.latency, Delivery::Connect { from, host, port });
            }
            Action::Transmit { conn, bytes } => self.send_bytes(Sock::Peer(i, conn), bytes),
            Action::Close { conn } => {
                let sock = Sock::Peer(i, conn);
                self.peers[i].links.remove(&conn);
                self.close_sock(sock, "closed by the peer");
            }
            Action::StartLink { conn, send, recv } => {
                self.peers[i].links.insert(conn, (send, recv));
            }
        }
    }

    /// Our end of `sock` closes: the other end learns it (unless the path is blackholed).
    fn close_sock(&mut self, sock: Sock, reason: &str) {
        self.relayed.remove(&sock);
        if let Some(other) = self.wires.remove(&sock) {
            self.wires.remove(&other);
            self.relayed.remove(&other);
            if let Sock::Relay(r) = other {
                // the relay notices at once and forgets the waiter
                self.relay_socks.remove(&r);
                return;
            }
            if self.blackhole {
                self.zombies.insert(other);
            } else {
                let at = self.now + self.latency;
                let reason = reason.to_string();
                self.push(at, Delivery::Closed { to: other, reason });
            }
        }
    }

    fn send_bytes(&mut self, from: Sock, bytes: Vec<u8>) {
        if !self.blackhole && self.zombies.remove(&from) {
            let at = self.now + self.latency;
            let reason = "connection reset".to_string();
            return self.push(at, Delivery::Closed { to: from, reason });
        }
        let Some(&to) = self.wires.get(&from) else {
            return;
        };
        let through_relay = matches!(to, Sock::Relay(_)) || self.relayed.contains(&from);
        if self.blackhole && (through_relay || matches!(from, Sock::Peer(..))) {
            return;
        }
        self.push(self.now + self.latency, Delivery::Bytes { to, bytes });
    }

    fn deliver(&mut self, d: Delivery) {
        let now = self.now;
        match d {
            Delivery::Mailbox { to, body } => self.peers[to].ep.handle_dilate(now, &body),
            Delivery::Connect { from, host, port } => self.connect(from, &host, port),
            Delivery::Open { to, peer } => {
                if let Sock::Peer(i, conn) = to {
                    if self.wires.contains_key(&to) {
                        let local = self.peers[i].addr(40000);
                        self.peers[i].ep.handle_conn_open(now, conn, peer.0, local);
                    }
                }
            }
            Delivery::Bytes { to, bytes } => self.receive(to, bytes),
            Delivery::Closed { to, reason } => {
                if let Sock::Peer(i, conn) = to {
                    self.wires.remove(&to);
                    self.relayed.remove(&to);
                    self.peers[i].links.remove(&conn);
                    self.peers[i].ep.handle_conn_closed(now, conn, &reason);
                }
            }
        }
    }

    fn connect(&mut self, from: Sock, host: &str, port: u16) {
        let Sock::Peer(i, _) = from else { return };
        let refuse = |pair: &mut Pair| {
            let at = pair.now + pair.latency;
            pair.push(
                at,
                Delivery::Closed {
                    to: from,
                    reason: "connection refused".into(),
                },
            );
        };
        if host == RELAY_HOST && port == RELAY_PORT {
            if !self.relay_up {
                return refuse(self);
            }
            let r = Sock::Relay(self.next_relay_sock);
            self.relay_socks.insert(
                self.next_relay_sock,
                RelaySock {
                    buf: Vec::new(),
                    line: None,
                },
            );
            self.next_relay_sock += 1;
            self.wires.insert(from, r);
            self.wires.insert(r, from);
            let peer = SocketAddrKey(SocketAddr::from(([198, 18, 0, 100], RELAY_PORT)));
            let at = self.now + self.latency;
            self.push(at, Delivery::Open { to: from, peer });
            return;
        }
        let j = 1 - i;
        let listening = self.peers[j]
            .listening
            .is_some_and(|(_, p)| p == port && self.peers[j].host == host);
        if self.direct_refused || !listening {
            return refuse(self);
        }
        let generation = self.peers[j].listening.expect("checked").0;
        let peer_i: SocketAddr = format!("{}:40000", self.peers[i].host).parse().unwrap();
        let peer_j: SocketAddr = format!("{host}:{port}").parse().unwrap();
        let Some(cj) = self.peers[j]
            .ep
            .handle_accepted(self.now, generation, peer_i, peer_j)
        else {
            return refuse(self);
        };
        let to = Sock::Peer(j, cj);
        self.wires.insert(from, to);
        self.wires.insert(to, from);
        let at = self.now + self.latency;
        self.push(
            at,
            Delivery::Open {
                to: from,
                peer: SocketAddrKey(peer_j),
            },
        );
    }

    fn receive(&mut self, to: Sock, bytes: Vec<u8>) {
        let now = self.now;
        match to {
            Sock::Peer(i, conn) => {
                if !self.wires.contains_key(&to) {
                    return; // closed meanwhile
                }
                let p = &mut self.peers[i];
                if let Some((_, recv)) = p.links.get_mut(&conn) {
                    let mut records = Vec::new();
                    match recv.receive(&bytes, &mut records) {
                        Ok(()) => p.ep.handle_records(now, conn, records),
                        Err(e) => {
                            p.links.remove(&conn);
                            p.ep.handle_conn_closed(now, conn, &e.to_string());
                        }
                    }
                } else {
                    p.ep.handle_conn_data(now, conn, &bytes);
                }
            }
            Sock::Relay(r) => self.relay_receive(r, bytes),
        }
    }

    /// The relay: reads `please relay TOKEN for side SIDE\n`, pairs two different sides with the
    /// same token, answers `ok\n` to both and splices them.
    fn relay_receive(&mut self, r: u64, bytes: Vec<u8>) {
        let Some(s) = self.relay_socks.get_mut(&r) else {
            return;
        };
        s.buf.extend(bytes);
        if s.line.is_some() {
            return; // nothing may arrive before ok (impatient): ignored here
        }
        let Some(nl) = s.buf.iter().position(|b| *b == b'\n') else {
            return;
        };
        let line = String::from_utf8_lossy(&s.buf[..nl]).into_owned();
        s.buf.drain(..=nl);
        let words: Vec<&str> = line.split(' ').collect();
        let (token, side) = (words[2].to_string(), words[5].to_string());
        s.line = Some((token.clone(), side.clone()));
        let partner = self
            .relay_socks
            .iter()
            .find(|(id, o)| {
                **id != r
                    && o.line
                        .as_ref()
                        .is_some_and(|(t, sd)| *t == token && *sd != side)
            })
            .map(|(id, _)| *id);
        let Some(p) = partner else { return };
        let (a, b) = (Sock::Relay(r), Sock::Relay(p));
        let (Some(&da), Some(&db)) = (self.wires.get(&a), self.wires.get(&b)) else {
            return;
        };
        for id in [r, p] {
            self.relay_socks.remove(&id);
        }
        for s in [a, b] {
            self.wires.remove(&s);
        }
        self.wires.insert(da, db);
        self.wires.insert(db, da);
        self.relayed.insert(da);
        self.relayed.insert(db);
        let at = self.now + self.latency;
        self.push(
            at,
            Delivery::Bytes {
                to: da,
                bytes: b"ok\n".to_vec(),
            },
        );
        self.push(
            at,
            Delivery::Bytes {
                to: db,
                bytes: b"ok\n".to_vec(),
            },
        );
    }

    // ---- faults --------------------------------------------------------------------------------

    /// Every connection between the peers is reset (both ends see it at once).
    pub fn cut(&mut self) {
        let socks: Vec<Sock> = self.wires.keys().copied().collect();
        for s in socks {
            if let (Sock::Peer(i, conn), true) = (s, self.wires.contains_key(&s)) {
                self.wires.remove(&s);
                self.relayed.remove(&s);
                self.peers[i].links.remove(&conn);
                self.push(
                    self.now,
                    Delivery::Closed {
                        to: s,
                        reason: "connection reset".into(),
                    },
                );
            }
        }
        self.wires.clear();
        self.relayed.clear();
        self.relay_socks.clear();
    }

    /// Peer `i`'s address is replaced by `host` (a new network): every connection it had goes
    /// silent (nothing sent on either end arrives, no reset), and its endpoint learns its new
    /// interface addresses.
    pub fn change_address(&mut self, i: usize, host: &str) {
        let socks: Vec<Sock> = self
            .wires
            .keys()
            .copied()
            .filter(|s| matches!(s, Sock::Peer(p, _) if *p == i))
            .collect();
        for s in socks {
            if let Some(other) = self.wires.remove(&s) {
                self.wires.remove(&other);
                self.relayed.remove(&other);
            }
            self.relayed.remove(&s);
        }
        self.peers[i].host = host.into();
        let addresses = vec![host.parse().expect("an address"), [127, 0, 0, 1].into()];
        let now = self.now;
        self.peers[i].ep.handle_addresses(now, addresses);
    }

    /// The relay stops (its connections are reset) or starts again.
    pub fn set_relay(&mut self, up: bool) {
        self.relay_up = up;
        if !up {
            let socks: Vec<Sock> = self
                .wires
                .keys()
                .copied()
                .filter(|s| {
                    self.relayed.contains(s) || matches!(self.wires.get(s), Some(Sock::Relay(_)))
                })
                .collect();
            for s in socks {
                if let Sock::Peer(..) = s {
                    self.wires.remove(&s);
                    self.relayed.remove(&s);
                    self.push(
                        self.now,
                        Delivery::Closed {
                            to: s,
                            reason: "relay gone".into(),
                        },
                    );
                }
            }
            self.relay_socks.clear();
        }
    }

    /// The mailbox server stops (messages wait) or comes back (they go out in order).
    pub fn set_mailbox(&mut self, up: bool) {
        self.mailbox_up = up;
        if up {
            for (to, body) in std::mem::take(&mut self.mailbox_held) {
                let at = self.now + self.latency;
                self.push(at, Delivery::Mailbox { to, body });
            }
        }
    }

    // ---- time ----------------------------------------------------------------------------------

    fn next_wakeup(&self) -> Option<Instant> {
        let q = self.queue.peek().map(|Reverse((t, _, _))| *t);
        let timers = self.peers.iter().filter_map(|p| p.ep.poll_timeout());
        q.into_iter().chain(timers).min()
    }

    /// Advances to the next delivery or timer (but not beyond `limit`); false if nothing is due
    /// before `limit` (time then stands at `limit`).
    pub fn step(&mut self, limit: Instant) -> bool {
        self.pump();
        let Some(next) = self.next_wakeup().filter(|t| *t <= limit) else {
            self.now = self.now.max(limit);
            return false;
        };
        self.now = self.now.max(next);
        while let Some(Reverse((t, _, _))) = self.queue.peek() {
            if *t > self.now {
                break;
            }
            let Reverse((_, _, d)) = self.queue.pop().expect("peeked");
            self.deliver(d);
            self.pump();
        }
        let now = self.now;
        for i in 0..2 {
            if self.peers[i].ep.poll_timeout().is_some_and(|t| t <= now) {
                self.peers[i].ep.handle_timeout(now);
            }
        }
        self.pump();
        true
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        let mut steps = 0;
        while self.step(limit) {
            steps += 1;
            assert!(steps < 10_000_000, "runaway simulation");
        }
    }

    /// Runs until `cond` holds; returns false if it did not within `d`.
    pub fn run_until(&mut self, d: Duration, mut cond: impl FnMut(&Pair) -> bool) -> bool {
        let limit = self.now + d;
        let mut steps = 0;
        loop {
            self.pump();
            if cond(self) {
                return true;
            }
            if !self.step(limit) {
                self.pump();
                return cond(self);
            }
            steps += 1;
            assert!(steps < 10_000_000, "runaway simulation");
        }
    }

    pub fn connected(&self) -> bool {
        self.peers
            .iter()
            .all(|p| p.ep.selected().is_some() && p.ep.manager_state() == State::Connected)
    }

    /// The path and the generation of the last `Connected` event of peer `i`.
    pub fn last_connected(&self, i: usize) -> Option<(u32, PathKind)> {
        self.peers[i].events.iter().rev().find_map(|e| match e {
            Event::Status(DilationEvent::Connected {
                generation, path, ..
            }) => Some((*generation, *path)),
            _ => None,
        })
    }

    pub fn count(&self, i: usize, pick: impl Fn(&Event) -> bool) -> usize {
        self.peers[i].events.iter().filter(|e| pick(e)).count()
    }

    /// Opens a subchannel on peer `i` and returns its id (once the session exists).
    pub fn open(&mut self, i: usize, subprotocol: &str) -> OpenId {
        let id = self.peers[i].ep.open(subprotocol);
        self.pump();
        id
    }

    pub fn scid(&self, i: usize, id: OpenId) -> Option<Scid> {
        self.peers[i].opened.get(&id).copied()
    }
}
