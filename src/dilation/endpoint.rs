//! One whole Dilation endpoint as a sans-IO state machine: the manager (roles, generations, L1
//! messages), the L4/L5 session, the L2 handshakes of every candidate connection, the choice
//! of the connection (relay grace, KCM hold, dial retries and timeouts), subchannel admission and
//! pending opens, the unacknowledged-bytes cap and liveness. It never touches a socket or a clock:
//! the driver feeds it events with an explicit `now` and carries out what it asks for.
//!
//! # Call order
//!
//! After any `handle_*` call or local request ([`Endpoint::open`], [`Endpoint::listen`], ...), the
//! driver drains, in this order:
//! 1. [`Endpoint::poll_action`] until `None`: I/O to carry out (mailbox messages, listening,
//!    dials, bytes to write on a connection, closing one, starting the selected link);
//! 2. [`Endpoint::poll_event`] until `None`: what happened, for the application;
//! 3. [`Endpoint::poll_transmit`] while [`Endpoint::wants_transmit`] and the link's writer has room;
//! 4. [`Endpoint::poll_timeout`]: when to call [`Endpoint::handle_timeout`] next.
//!
//! Records of the selected link are read only while [`Endpoint::wants_read`]; the endpoint is
//! done once [`Endpoint::is_finished`].
//!
//! # Example
//!
//! No sockets and no clock: the endpoint learns the key and the peer's versions, then asks for
//! its `please` to be sent; the peer's `please` makes it the Leader (its side is larger), and it
//! asks for a listener and dials our relay.
//!
//! ```
//! use std::time::Instant;
//! use fowl::dilation::endpoint::{Action, Endpoint, Event};
//! use fowl::dilation::{DilationConfig, DilationEvent, Role};
//!
//! let config = DilationConfig {
//!     relay: Some("tcp:relay.example:4001".parse()?),
//!     ..DilationConfig::default()
//! };
//! let mut ep = Endpoint::new(config, "ffffffffffffffff");
//! let now = Instant::now();
//! ep.handle_key(now, [7; 32]);
//! ep.handle_peer_versions(now, vec!["ged".into()]);
//! let Some(Action::SendDilate(please)) = ep.poll_action() else { panic!() };
//! assert!(String::from_utf8(please)?.contains("please"));
//!
//! ep.handle_dilate(now, br#"{"type": "please", "side": "0000000000000001", "use-version": "ged"}"#);
//! assert_eq!(ep.role(), Some(Role::Leader));
//! let connecting = DilationEvent::Connecting { role: Role::Leader, generation: 0 };
//! assert_eq!(ep.poll_event(), Some(Event::Status(connecting)));
//! let actions: Vec<Action> = std::iter::from_fn(|| ep.poll_action()).collect();
//! assert!(matches!(actions[0], Action::Listen { generation: 0, .. }));
//! assert!(matches!(&actions[1], Action::Dial { host, port: 4001, .. } if host == "relay.example"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::{DilationConfig, DilationEvent, LossReason, PathKind, PeerAbuse};
use super::hints::{Hint, RelayLocation};
use super::l1::{L1Message, MIN_WINDOW};
use super::l2::{relay_line, L2Connection, L2Event, RecvHalf, Role, SendHalf};
use super::manager::{DilationError, Manager, ManagerAction, ManagerEvent, State};
use super::record::{Record, Scid};
use super::session::{Liveness, Session, SessionEvent, SubchannelError};
use crate::key::{self, Key};

/// Names one TCP connection (dialed or accepted) for the whole life of the endpoint.
pub type ConnId = u64;

/// Names one [`Endpoint::open`] request; its answer is [`Event::Opened`].
pub type OpenId = u64;

/// Dial retry backoff: 250 ms doubling to 1 s, so a path that comes back is found within a second.
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(1);
/// Longest wait for the PONG of a probe (see [`LossReason::ProbeUnanswered`]).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Peer hints dialed per generation; more are ignored.
pub const MAX_DIAL_TARGETS: usize = 64;
/// A dial still unanswered after [`MAX_RETRY`] gets a parallel attempt (its SYN may have
/// vanished into a path that is back now, and the kernel's SYN retries slow down), up to this
/// many per target; the oldest is then given up.
const PARALLEL_DIALS: usize = 3;
/// Accepted connections still in their handshake at once; more are dropped when accepted (an
/// unauthenticated client can hold no more of our memory than this many handshakes).
pub const MAX_INBOUND_HANDSHAKES: usize = 32;
/// Of those, from one address (a peer dials each of our hints about once per generation): one
/// client cannot take every slot and keep a real peer out.
pub const MAX_INBOUND_HANDSHAKES_PER_ADDRESS: usize = 8;
/// Longest handshake (prologue, Noise, KCM) of an accepted connection.
const INBOUND_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Reports of the peer's abuse: the first at once, then at most one per this interval.
const ABUSE_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// I/O the driver must carry out.
#[must_use]
pub enum Action {
    /// Send this body as the next `dilate-N` mailbox message.
    SendDilate(Vec<u8>),
    /// Listen for direct connections of `generation` (on every interface, or on 127.0.0.1 only
    /// with `loopback`) and report its port and the addresses it is reachable at with
    /// [`Endpoint::handle_listening`]; accepted connections go to [`Endpoint::handle_accepted`].
    Listen {
        /// The generation the listener belongs to.
        generation: u32,
        /// Bind 127.0.0.1 only.
        loopback: bool,
    },
    /// Stop listening.
    StopListening,
    /// Open a TCP connection to `host:port`, known as `conn`: report
    /// [`Endpoint::handle_conn_open`] or [`Endpoint::handle_conn_closed`].
    Dial {
        /// The id the connection is reported under.
        conn: ConnId,
        /// Host name or address from a hint (or our relay's).
        host: String,
        /// TCP port.
        port: u16,
        /// Whether this reaches the peer directly or a relay.
        path: PathKind,
    },
    /// Write these bytes on `conn`, in order.
    Transmit {
        /// The connection.
        conn: ConnId,
        /// Handshake bytes or sealed frames.
        bytes: Vec<u8>,
    },
    /// Close `conn` (unless already gone); nothing more is reported for it.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// `conn` (whose pending `Transmit`s come first) is now the selected connection: run its
    /// record I/O with these cipher halves, reporting what arrives with
    /// [`Endpoint::handle_records`] and writing what [`Endpoint::poll_transmit`] gives.
    StartLink {
        /// The selected connection.
        conn: ConnId,
        /// Seals the records we send.
        send: SendHalf,
        /// Opens the frames we read (it holds bytes already read past the KCM).
        recv: RecvHalf,
    },
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::SendDilate(b) => write!(f, "SendDilate({})", String::from_utf8_lossy(b)),
            Action::Listen {
                generation,
                loopback,
            } => write!(f, "Listen({generation}, loopback {loopback})"),
            Action::StopListening => write!(f, "StopListening"),
            Action::Dial {
                conn,
                host,
                port,
                path,
            } => write!(f, "Dial({conn}, {path} {host}:{port})"),
            Action::Transmit { conn, bytes } => {
                write!(f, "Transmit({conn}, {} bytes)", bytes.len())
            }
            Action::Close { conn } => write!(f, "Close({conn})"),
            Action::StartLink { conn, .. } => write!(f, "StartLink({conn})"),
        }
    }
}

/// What happened, for the application and the driver's subchannel streams.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub enum Event {
    /// What the application hears of the connection: connecting, connected (with its path),
    /// reconnecting, failed (never [`DilationEvent::Wormhole`]).
    Status(DilationEvent),
    /// The selected connection is gone (why); a new generation follows.
    ConnectionLost {
        /// Why: a reset, a close, silence...
        reason: LossReason,
    },
    /// The answer to [`Endpoint::open`].
    Opened {
        /// The request.
        id: OpenId,
        /// The subprotocol asked for.
        subprotocol: String,
        /// The new subchannel's id, or why there is none.
        result: Result<Scid, DilationError>,
    },
    /// The peer opened a subchannel and it was admitted: hand it to the listener for its
    /// subprotocol (`listened`), or hold it until one appears.
    Incoming {
        /// The peer's subchannel id.
        scid: Scid,
        /// The subprotocol it was opened for.
        subprotocol: String,
        /// Someone listens for `subprotocol`.
        listened: bool,
    },
    /// Data for a subchannel, in order, exactly once.
    Data {
        /// The subchannel.
        scid: Scid,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The peer sent its CLOSE: no more data will come.
    ReadClosed {
        /// The subchannel.
        scid: Scid,
    },
    /// Both sides closed the subchannel: writes are refused from now on.
    Closed {
        /// The subchannel.
        scid: Scid,
    },
    /// This many DATA bytes went to the connection for the first time, or were refused: writers
    /// may queue as much again.
    Sent {
        /// Payload bytes.
        data_bytes: usize,
    },
    /// (flow control, see [`Endpoint::peer_window`]) The peer's reader consumed `consumed`
    /// bytes of `scid` in all: our writer may have the window more than that outstanding.
    Credit {
        /// The subchannel.
        scid: Scid,
        /// Bytes consumed since it opened.
        consumed: u64,
    },
}

enum ConnState {
    Dialing {
        deadline: Instant,
    },
    Handshaking {
        l2: Box<L2Connection>,
        deadline: Instant,
        /// Follower on a relay connection: when our held KCM goes out.
        release_at: Option<Instant>,
    },
    /// Leader: the Follower's KCM arrived; the connection waits to be selected.
    Candidate {
        l2: Box<L2Connection>,
        records: Vec<Record>,
        since: Instant,
    },
    Selected,
}

struct Conn {
    generation: u32,
    path: PathKind,
    peer: Option<SocketAddr>,
    /// Our end's address.
    local: Option<SocketAddr>,
    /// The dial target this connection serves (retried when it fails).
    target: Option<usize>,
    state: ConnState,
}

/// A peer (or our relay) hint being dialed in the current generation.
struct Target {
    host: String,
    port: u16,
    path: PathKind,
    delay: Duration,
    retry_at: Option<Instant>,
    done: bool,
}

/// The sans-IO Dilation endpoint. See the module documentation for the call order.
pub struct Endpoint {
    config: DilationConfig,
    manager: Manager,
    session: Option<Session>,
    psk: Option<Key>,
    peer_versions: Option<Vec<String>>,
    conns: HashMap<ConnId, Conn>,
    next_conn: ConnId,
    selected: Option<ConnId>,
    listening: Option<u32>,
    targets: Vec<Target>,
    /// A direct connection can still win this generation: we listen, or the peer sent direct
    /// hints.
    direct_possible: bool,
    grace: Option<Instant>,
    /// The port of this generation's listener and the hints we advertised.
    listen_port: Option<u16>,
    advertised: Vec<Hint>,
    /// The host's interface addresses, as last reported.
    addresses: Vec<IpAddr>,
    /// When the selected connection was lost (until a new one is selected), and the generations
    /// started since.
    lost_at: Option<Instant>,
    attempts: u32,
    listeners: HashSet<String>,
    held: HashMap<String, usize>,
    /// The held subchannels and their names.
    held_scids: HashMap<Scid, String>,
    subchannels: usize,
    pending_opens: Vec<(OpenId, String)>,
    next_open: OpenId,
    paused: HashSet<Scid>,
    closing: Option<Instant>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    /// The peer's abuse since the last report, and when the next report may go out.
    abuse: BTreeMap<PeerAbuse, u64>,
    abuse_report_at: Option<Instant>,
}

impl Endpoint {
    /// A new endpoint whose Dilation side is `side` (16 hex digits; the larger side leads).
    pub fn new(config: DilationConfig, side: &str) -> Endpoint {
        Endpoint {
            manager: {
                let mut m = Manager::new(side, config.generation_timeout);
                m.set_window(
                    u32::try_from(config.inbound_limit)
                        .ok()
                        .filter(|w| *w >= MIN_WINDOW),
                );
                m
            },
            config,
            session: None,
            psk: None,
            peer_versions: None,
            conns: HashMap::new(),
            next_conn: 0,
            selected: None,
            listening: None,
            targets: Vec::new(),
            direct_possible: false,
            grace: None,
            listen_port: None,
            advertised: Vec::new(),
            addresses: Vec::new(),
            lost_at: None,
            attempts: 0,
            listeners: HashSet::new(),
            held: HashMap::new(),
            held_scids: HashMap::new(),
            subchannels: 0,
            pending_opens: Vec::new(),
            abuse: BTreeMap::new(),
            abuse_report_at: None,
            next_open: 0,
            paused: HashSet::new(),
            closing: None,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    // ---- polling -------------------------------------------------------------------------------

    /// The next I/O to carry out.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next thing that happened.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] is due next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conns = self.conns.values().filter_map(|c| match &c.state {
            ConnState::Dialing { deadline } => Some(*deadline),
            ConnState::Handshaking {
                deadline,
                release_at,
                ..
            } => Some(release_at.map_or(*deadline, |r| r.min(*deadline))),
            _ => None,
        });
        let retries = self.targets.iter().filter_map(|t| t.retry_at);
        [
            self.manager.poll_timeout(),
            self.session.as_ref().and_then(Session::poll_timeout),
            self.grace,
            self.closing,
            self.abuse_report_at.filter(|_| !self.abuse.is_empty()),
        ]
        .into_iter()
        .flatten()
        .chain(conns)
        .chain(retries)
        .min()
    }

    /// Hands the records due on the selected connection to `send`, until about `budget` bytes;
    /// returns whether more wait.
    #[must_use]
    pub fn poll_transmit(&mut self, budget: usize, send: impl FnMut(&Arc<Record>)) -> bool {
        let more = match (self.selected, self.session.as_mut()) {
            (Some(_), Some(s)) => s.transmit(budget, send),
            _ => false,
        };
        self.drain_session();
        more
    }

    /// Whether records wait for the selected connection.
    pub fn wants_transmit(&self) -> bool {
        self.selected.is_some() && self.session.as_ref().is_some_and(Session::wants_transmit)
    }

    /// Whether the selected link's records may be read now (no subchannel's buffer is full).
    pub fn wants_read(&self) -> bool {
        self.paused.is_empty()
    }

    /// Subchannels whose buffer was reported full (see [`Endpoint::handle_backlog`]).
    pub fn paused(&self) -> impl Iterator<Item = Scid> + '_ {
        self.paused.iter().copied()
    }

    /// After [`Endpoint::close`]: everything was acknowledged, or the flush deadline passed.
    pub fn is_finished(&self, now: Instant) -> bool {
        self.closing.is_some_and(|deadline| {
            now >= deadline || self.session.as_ref().is_none_or(|s| s.unacked_bytes() == 0)
        })
    }

    /// Our role, once the peer's `please` arrived.
    pub fn role(&self) -> Option<Role> {
        self.manager.role()
    }

    /// The current generation (from 0).
    pub fn generation(&self) -> u32 {
        self.manager.generation()
    }

    /// Where the manager's state machine stands.
    pub fn manager_state(&self) -> State {
        self.manager.state()
    }

    /// The selected connection, if any.
    pub fn selected(&self) -> Option<ConnId> {
        self.selected
    }

    /// Tests: the session.
    #[cfg(test)]
    pub(crate) fn session_mut(&mut self) -> Option<&mut Session> {
        self.session.as_mut()
    }

    /// Bytes sent and not yet acknowledged by the peer.
    pub fn unacked_bytes(&self) -> usize {
        self.session.as_ref().map_or(0, Session::unacked_bytes)
    }

    // ---- the wormhole --------------------------------------------------------------------------

    /// The key was confirmed: its Dilation key is the L2 pre-shared key.
    pub fn handle_key(&mut self, now: Instant, psk: Key) {
        self.psk = Some(psk);
        self.maybe_start(now);
    }

    /// The peer's `version` message was read: the Dilation versions it can speak.
    pub fn handle_peer_versions(&mut self, now: Instant, versions: Vec<String>) {
        if self.peer_versions.is_some() {
            return;
        }
        self.peer_versions = Some(versions);
        self.maybe_start(now);
    }

    /// A `dilate-N` message body from the peer, in order.
    pub fn handle_dilate(&mut self, now: Instant, body: &[u8]) {
        match L1Message::parse(body) {
            Ok(msg) => self.manager.received(now, msg),
            Err(e) => tracing::warn!("ignoring Dilation message: {e}"),
        }
        self.drive(now);
    }

    fn maybe_start(&mut self, now: Instant) {
        if self.manager.state() != State::Waiting || self.psk.is_none() {
            return;
        }
        if let Some(versions) = &self.peer_versions {
            self.manager.start(now, versions);
            self.drive(now);
        }
    }

    // ---- connections ---------------------------------------------------------------------------

    /// Our listener for `generation` is up on `port`, reachable at `addresses` (the host's
    /// interface addresses); `None` if it could not listen. We advertise a direct hint for each
    /// usable address: not loopback unless there is nothing else (as Python), not IPv6
    /// link-local (it needs a scope), and only loopback with `loopback_only`.
    pub fn handle_listening(
        &mut self,
        now: Instant,
        generation: u32,
        listener: Option<(u16, Vec<IpAddr>)>,
    ) {
        if self.listening != Some(generation) || self.manager.state() != State::Connecting {
            return;
        }
        let mut hints = match listener {
            Some((port, addresses)) => {
                self.listen_port = Some(port);
                self.addresses = addresses;
                direct_hints(port, &self.addresses, self.config.loopback_only)
            }
            None => Vec::new(),
        };
        tracing::debug!(
            "generation {generation}: advertising direct hints {:?}",
            hints
                .iter()
                .map(|h| h.to_json().to_string())
                .collect::<Vec<_>>()
        );
        self.direct_possible |= !hints.is_empty();
        hints.extend(self.our_relay().map(|r| r.hint()));
        self.advertised = hints.clone();
        self.manager.send_hints(hints);
        self.drive(now);
    }

    /// The host's interface addresses now (the driver reports them when they change). A
    /// selected connection whose local address is gone is lost at once (a Follower also tells
    /// the Leader, whose probe then finds its side dead); while connecting, the new addresses
    /// are advertised as hints.
    pub fn handle_addresses(&mut self, now: Instant, addresses: Vec<IpAddr>) {
        // loopback does not go away, and other addresses are none of our business then
        if addresses == self.addresses || self.config.loopback_only {
            return;
        }
        tracing::info!("interface addresses now {addresses:?}");
        self.addresses = addresses;
        let gone = self
            .selected
            .and_then(|id| self.conns.get(&id))
            .and_then(|c| c.local)
            .map(|a| a.ip().to_canonical()) // a dual-stack socket's IPv4-mapped view
            .filter(|ip| !ip.is_loopback() && !self.addresses.contains(ip));
        if let Some(ip) = gone {
            self.drop_link(now, LossReason::AddressGone(ip));
            if self.manager.role() == Some(Role::Follower) {
                self.manager.nudge();
            }
        } else if let (Some(port), State::Connecting) = (self.listen_port, self.manager.state()) {
            let fresh: Vec<Hint> = direct_hints(port, &self.addresses, self.config.loopback_only)
                .into_iter()
                .filter(|h| !self.advertised.contains(h))
                .collect();
            if !fresh.is_empty() {
                tracing::debug!("advertising {} new direct hints", fresh.len());
                self.direct_possible = true;
                self.advertised.extend(fresh.iter().cloned());
                self.manager.send_hints(fresh);
            }
        }
        self.drive(now);
    }

    /// Our listener of `generation` accepted a connection: its id, or `None` to drop it.
    #[must_use]
    pub fn handle_accepted(
        &mut self,
        now: Instant,
        generation: u32,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Option<ConnId> {
        if self.listening != Some(generation) || self.manager.state() != State::Connecting {
            return None;
        }
        let inbound: Vec<Option<IpAddr>> = self
            .conns
            .values()
            .filter(|c| c.target.is_none() && matches!(c.state, ConnState::Handshaking { .. }))
            .map(|c| c.peer.map(|p| p.ip().to_canonical()))
            .collect();
        let ip = peer.ip().to_canonical();
        let same = inbound.iter().filter(|p| **p == Some(ip)).count();
        if inbound.len() >= MAX_INBOUND_HANDSHAKES || same >= MAX_INBOUND_HANDSHAKES_PER_ADDRESS {
            tracing::debug!(
                "dropping a connection from {peer}: {} handshakes under way, {same} from it",
                inbound.len()
            );
            return None;
        }
        let conn = self.new_conn(now, PathKind::Direct, None);
        self.handle_conn_open(now, conn, peer, local);
        if let Some(ConnState::Handshaking { deadline, .. }) =
            self.conns.get_mut(&conn).map(|c| &mut c.state)
        {
            *deadline = (*deadline).min(now + INBOUND_HANDSHAKE_TIMEOUT);
        }
        Some(conn)
    }

    /// A dial of ours connected, from `local` to `peer`.
    pub fn handle_conn_open(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: SocketAddr,
        local: SocketAddr,
    ) {
        let (Some(c), Some(psk), Some(role)) =
            (self.conns.get_mut(&conn), self.psk, self.manager.role())
        else {
            return;
        };
        if !matches!(c.state, ConnState::Dialing { .. }) {
            return;
        }
        let line = (c.path == PathKind::Relay)
            .then(|| relay_line(&key::relay_token(&psk), self.manager.side()));
        let mut l2 = Box::new(L2Connection::new(role, &psk, line));
        if role == Role::Follower && c.path == PathKind::Relay {
            l2.hold_kcm();
        }
        c.peer = Some(peer);
        c.local = Some(local);
        if let Some(t) = c.target.and_then(|t| self.targets.get_mut(t)) {
            t.retry_at = None; // answered: no parallel attempt
        }
        let redial = c
            .target
            .and_then(|t| self.targets.get(t))
            .is_some_and(|t| t.delay > FIRST_RETRY && t.path == PathKind::Relay);
        c.state = ConnState::Handshaking {
            l2,
            deadline: now + self.config.handshake_timeout,
            release_at: None,
        };
        self.flush_conn(conn);
        if redial && !self.advertised.is_empty() {
            // the relay is back after failing: a Python peer's connector does not redial it by
            // itself, but dials the hints it receives
            tracing::debug!("the relay is reachable again: repeating our hints");
            self.manager.send_hints(self.advertised.clone());
            self.drive(now);
        }
    }

    /// Bytes read from a connection that is not (yet) the started link.
    pub fn handle_conn_data(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        if self.selected == Some(conn) {
            // its cipher belongs to the link now: these bytes can never be decrypted in order
            let why = "handshake bytes after the link started".to_string();
            self.drop_link(now, LossReason::Protocol(why));
            return self.drive(now);
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let l2 = match &mut c.state {
            ConnState::Handshaking { l2, .. } | ConnState::Candidate { l2, .. } => l2,
            _ => return,
        };
        if let Err(e) = l2.receive(data) {
            tracing::debug!("connection {conn} failed: {e}");
            self.conn_failed(now, conn);
            return;
        }
        self.advance_conn(now, conn);
        self.drive(now);
    }

    /// Whether `conn` still takes handshake bytes through [`Endpoint::handle_conn_data`]: read
    /// its next chunk only then (once selected, its bytes belong to the link).
    pub fn wants_conn_data(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| {
            matches!(
                c.state,
                ConnState::Handshaking { .. } | ConnState::Candidate { .. }
            )
        })
    }

    /// A connection closed or failed (before or after it was selected).
    pub fn handle_conn_closed(&mut self, now: Instant, conn: ConnId, reason: &str) {
        if self.selected == Some(conn) {
            self.drop_link(now, LossReason::Closed(reason.to_string()));
        } else if self.conns.contains_key(&conn) {
            tracing::debug!("connection {conn} closed: {reason}");
            self.conn_failed(now, conn);
        }
        self.drive(now);
    }

    /// Records read from the selected link `conn` (stale links' records are ignored).
    pub fn handle_records(&mut self, now: Instant, conn: ConnId, records: Vec<Record>) {
        if self.selected != Some(conn) {
            return;
        }
        if let Some(s) = self.session.as_mut() {
            s.heard(now);
            for r in records {
                s.received(r);
            }
            s.stamp_ack(now);
        }
        self.drive(now);
    }

    /// Time passed: `now` is at or after [`Endpoint::poll_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.grace.is_some_and(|g| now >= g) {
            self.grace = None;
            self.select_best_candidate(now);
        }
        let reading = self.paused.is_empty();
        let liveness = self
            .session
            .as_mut()
            .map_or(Liveness::Fine, |s| s.handle_timeout(now, reading));
        match liveness {
            Liveness::Fine => {}
            Liveness::Silent(d) => self.drop_link(now, LossReason::Silent(d)),
            Liveness::ProbeUnanswered => self.drop_link(now, LossReason::ProbeUnanswered),
        }
        let expired: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| match &c.state {
                ConnState::Dialing { deadline } | ConnState::Handshaking { deadline, .. } => {
                    now >= *deadline
                }
                _ => false,
            })
            .map(|(id, _)| *id)
            .collect();
        for conn in expired {
            tracing::debug!("connection {conn} timed out");
            self.conn_failed(now, conn);
        }
        let releases: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                matches!(c.state, ConnState::Handshaking { release_at: Some(r), .. } if now >= r)
            })
            .map(|(id, _)| *id)
            .collect();
        for conn in releases {
            if let Some(ConnState::Handshaking { l2, release_at, .. }) =
                self.conns.get_mut(&conn).map(|c| &mut c.state)
            {
                *release_at = None;
                l2.release_kcm();
            }
            self.flush_conn(conn);
        }
        for i in 0..self.targets.len() {
            if self.targets[i].retry_at.is_some_and(|r| now >= r) {
                self.targets[i].retry_at = None;
                self.dial(now, i);
            }
        }
        self.manager.handle_timeout(now);
        self.drive(now);
    }

    // ---- subchannels ---------------------------------------------------------------------------

    /// Opens a subchannel for `subprotocol`; the answer comes as [`Event::Opened`] (at once once
    /// the roles are known, before that when they are).
    pub fn open(&mut self, subprotocol: &str) -> OpenId {
        let id = self.next_open;
        self.next_open += 1;
        if subprotocol.is_empty() {
            self.events.push_back(Event::Opened {
                id,
                subprotocol: String::new(),
                result: Err(DilationError::EmptySubprotocol),
            });
        } else if self.session.is_some() {
            self.open_now(id, subprotocol.to_string());
        } else {
            self.pending_opens.push((id, subprotocol.to_string()));
        }
        id
    }

    fn open_now(&mut self, id: OpenId, subprotocol: String) {
        let result = match self.session.as_mut() {
            _ if self.subchannels >= self.config.max_subchannels => {
                Err(DilationError::TooManySubchannels)
            }
            Some(s) => s.open(&subprotocol).map_err(|_| DilationError::Stopped),
            None => Err(DilationError::Stopped),
        };
        if result.is_ok() {
            self.subchannels += 1;
        }
        self.events.push_back(Event::Opened {
            id,
            subprotocol,
            result,
        });
    }

    /// Someone listens for `subprotocol` now: held subchannels for it are theirs.
    pub fn listen(&mut self, subprotocol: &str) {
        self.held.remove(subprotocol);
        self.held_scids.retain(|_, name| name != subprotocol);
        self.listeners.insert(subprotocol.to_string());
    }

    /// The listener for `subprotocol` went away; `scid`, meant for it, is held again.
    pub fn listener_gone(&mut self, subprotocol: &str, scid: Scid) {
        if self.listeners.remove(subprotocol) {
            self.hold(scid, subprotocol.to_string());
        }
    }

    fn hold(&mut self, scid: Scid, subprotocol: String) {
        *self.held.entry(subprotocol.clone()).or_default() += 1;
        self.held_scids.insert(scid, subprotocol);
    }

    /// Queues DATA on a subchannel; `false` if the subchannel cannot take it (the bytes are
    /// reported back as [`Event::Sent`]).
    pub fn send_data(&mut self, now: Instant, scid: Scid, data: Vec<u8>) -> bool {
        let n = data.len();
        let result = match self.session.as_mut() {
            Some(s) => s.send_data(scid, data),
            None => Err(SubchannelError::Unknown(scid)),
        };
        if let Err(SubchannelError::Exhausted(_)) = result {
            // 2^32 records were sent: nothing more can be, and data must not vanish silently
            tracing::error!("Dilation sequence numbers exhausted: stopping");
            let failed = DilationEvent::Failed(DilationError::SeqnumsExhausted);
            self.events.push_back(Event::Status(failed));
            self.stop(now);
        }
        if result.is_err() {
            self.events.push_back(Event::Sent { data_bytes: n });
        }
        result.is_ok()
    }

    /// No more data from us on `scid`.
    pub fn close_subchannel(&mut self, scid: Scid) {
        if let Some(s) = self.session.as_mut() {
            let _ = s.close(scid);
        }
        self.drain_session();
    }

    /// The application dropped its stream for `scid`: what arrives for it is discarded.
    pub fn subchannel_dropped(&mut self, scid: Scid) {
        self.subchannels = self.subchannels.saturating_sub(1);
        if let Some(name) = self.held_scids.remove(&scid) {
            if let Some(n) = self.held.get_mut(&name) {
                *n -= 1;
                if *n == 0 {
                    self.held.remove(&name);
                }
            }
        }
        self.paused.remove(&scid);
        self.update_cap();
    }

    /// With flow control (both peers announced a window in `please`; our extension): the
    /// peer's window per subchannel, which our writers must not exceed beyond what the peer's
    /// CREDITs allow. `None` (a Python peer, or before the roles are known): no windows, the
    /// pause model.
    pub fn peer_window(&self) -> Option<usize> {
        self.session
            .as_ref()
            .and(self.manager.peer_window())
            .map(|w| w as usize)
    }

    /// (flow control) Our reader of `scid` consumed `consumed` bytes in all: tells the peer.
    pub fn consumed(&mut self, scid: Scid, consumed: u64) {
        if let Some(s) = self.session.as_mut() {
            s.credit(scid, consumed);
        }
        self.drain_session();
    }

    /// The receive buffer of `scid` went over its limit (`true`) or back under it.
    pub fn handle_backlog(&mut self, scid: Scid, over: bool) {
        match over {
            true => self.paused.insert(scid),
            false => self.paused.remove(&scid),
        };
        self.update_cap();
    }

    /// While we do not read, the peer's ACKs cannot arrive: keeping the tight cap then lets two
    /// peers that each wait for the other (an echo through both) deadlock.
    fn update_cap(&mut self) {
        let limit = match self.paused.is_empty() {
            true => self.config.unacked_limit,
            false => self
                .config
                .unacked_limit
                .max(self.config.paused_unacked_limit),
        };
        if let Some(s) = self.session.as_mut() {
            s.set_unacked_limit(limit);
        }
    }

    /// Flush what was sent (bounded by the flush timeout), then [`Endpoint::is_finished`].
    pub fn close(&mut self, now: Instant) {
        if self.closing.is_none() {
            self.closing = Some(now + self.config.flush_timeout);
        }
    }

    /// Stops everything: connections, listener, connecting.
    pub fn stop(&mut self, now: Instant) {
        self.manager.stop();
        self.drive(now);
        self.end_generation();
        if let Some(conn) = self.selected.take() {
            self.conns.remove(&conn);
            self.actions.push_back(Action::Close { conn });
        }
    }

    // ---- internals -----------------------------------------------------------------------------

    /// Carries out what the manager and the session want, until nothing is left.
    fn drive(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(action) = self.manager.poll_action() {
                progressed = true;
                self.manager_action(now, action);
            }
            while let Some(event) = self.manager.poll_event() {
                progressed = true;
                self.manager_event(event);
            }
            progressed |= self.drain_session();
            if !progressed {
                break;
            }
        }
        self.report_abuse(now);
    }

    /// Counts the peer's abuse; [`Endpoint::report_abuse`] reports it.
    fn abuse(&mut self, abuse: PeerAbuse) {
        *self.abuse.entry(abuse).or_default() += 1;
    }

    /// Reports the abuse counted so far, unless a report went out less than
    /// [`ABUSE_REPORT_INTERVAL`] ago (then at that time: see `poll_timeout`).
    fn report_abuse(&mut self, now: Instant) {
        if self.abuse.is_empty() || self.abuse_report_at.is_some_and(|at| now < at) {
            return;
        }
        for (abuse, count) in std::mem::take(&mut self.abuse) {
            tracing::warn!("the peer: {count} {abuse}");
            let event = DilationEvent::PeerAbuse { abuse, count };
            self.events.push_back(Event::Status(event));
        }
        self.abuse_report_at = Some(now + ABUSE_REPORT_INTERVAL);
    }

    fn drain_session(&mut self) -> bool {
        let mut progressed = false;
        while let Some(event) = self.session.as_mut().and_then(Session::poll_event) {
            progressed = true;
            self.session_event(event);
        }
        progressed
    }

    fn manager_action(&mut self, now: Instant, action: ManagerAction) {
        match action {
            ManagerAction::Send(msg) => self.actions.push_back(Action::SendDilate(msg.encode())),
            ManagerAction::StartConnecting { role, generation } => {
                self.ensure_session(role);
                self.end_generation();
                if !self.config.no_listen && self.config.proxy.is_none() {
                    self.listening = Some(generation);
                    let loopback = self.config.loopback_only;
                    self.actions.push_back(Action::Listen {
                        generation,
                        loopback,
                    });
                } else if let Some(relay) = self.our_relay() {
                    let hints = vec![relay.hint()];
                    self.advertised = hints.clone();
                    self.manager.send_hints(hints);
                }
                if let Some(relay) = self.our_relay().cloned() {
                    self.add_target(now, relay.host, relay.port, PathKind::Relay);
                }
            }
            ManagerAction::UseHints(hints) => self.use_hints(now, hints),
            ManagerAction::StopConnecting => self.end_generation(),
            ManagerAction::DropConnection if self.manager.state() == State::Stopped => {
                if let Some(conn) = self.selected.take() {
                    self.conns.remove(&conn);
                    self.actions.push_back(Action::Close { conn });
                }
            }
            ManagerAction::DropConnection => self.drop_link(now, LossReason::PeerReconnect),
            ManagerAction::PeerLost => self.drop_link(now, LossReason::PeerLost),
            ManagerAction::Probe => {
                let deadline = now + PROBE_TIMEOUT.min(self.config.liveness_interval);
                if let Some(s) = self.session.as_mut() {
                    tracing::debug!("the peer sent hints while connected: probing the link");
                    s.probe(deadline);
                }
            }
        }
    }

    fn manager_event(&mut self, event: ManagerEvent) {
        match event {
            ManagerEvent::Connecting { role, generation } => {
                self.events
                    .push_back(Event::Status(DilationEvent::Connecting {
                        role,
                        generation,
                    }));
                if self.lost_at.is_some() {
                    self.attempts += 1;
                    let attempt = self.attempts;
                    self.events
                        .push_back(Event::Status(DilationEvent::Reconnecting {
                            generation,
                            attempt,
                        }));
                }
            }
            // reported with its path at selection, and as `Lost` when it happens
            ManagerEvent::Connected { .. } | ManagerEvent::Reconnecting { .. } => {}
            ManagerEvent::Failed(e) => {
                for (id, subprotocol) in std::mem::take(&mut self.pending_opens) {
                    self.events.push_back(Event::Opened {
                        id,
                        subprotocol,
                        result: Err(e.clone()),
                    });
                }
                self.events
                    .push_back(Event::Status(DilationEvent::Failed(e)));
            }
        }
    }

    fn session_event(&mut self, event: SessionEvent) {
        let event = match event {
            SessionEvent::Incoming { scid, subprotocol } => {
                return self.incoming(scid, subprotocol)
            }
            SessionEvent::Data { scid, data } => Event::Data { scid, data },
            SessionEvent::ReadClosed { scid } => Event::ReadClosed { scid },
            SessionEvent::Closed { scid } => Event::Closed { scid },
            SessionEvent::Sent { data_bytes } => Event::Sent { data_bytes },
            SessionEvent::Abuse(abuse) => return self.abuse(abuse),
            SessionEvent::Credit { scid, consumed } => Event::Credit { scid, consumed },
        };
        self.events.push_back(event);
    }

    /// A subchannel the peer opened: to its listener, or held until one appears (bounded).
    fn incoming(&mut self, scid: Scid, subprotocol: String) {
        let listened = self.listeners.contains(&subprotocol);
        let held = self.held.get(&subprotocol).copied().unwrap_or(0);
        let refuse = if self.subchannels >= self.config.max_subchannels {
            Some(PeerAbuse::TooManySubchannels)
        } else if !listened
            && (held >= self.config.max_pending_opens
                || self.held_scids.len() >= self.config.max_held)
        {
            Some(PeerAbuse::TooManyWaiting)
        } else {
            None
        };
        if let Some(why) = refuse {
            let name: String = subprotocol.chars().take(64).collect();
            tracing::debug!("closing subchannel {scid} ({name:?}): {why}");
            self.abuse(why);
            if let Some(s) = self.session.as_mut() {
                s.refuse(scid);
            }
            return;
        }
        if !listened {
            self.hold(scid, subprotocol.clone());
        }
        self.subchannels += 1;
        self.events.push_back(Event::Incoming {
            scid,
            subprotocol,
            listened,
        });
    }

    fn ensure_session(&mut self, role: Role) {
        if self.session.is_some() {
            return;
        }
        let c = &self.config;
        let mut session = Session::new(
            role,
            c.unacked_limit,
            c.liveness_interval,
            self.manager.peer_half_close(),
        );
        if !self.paused.is_empty() {
            session.set_unacked_limit(c.unacked_limit.max(c.paused_unacked_limit));
        }
        session.set_ack_delay(c.ack_delay);
        self.session = Some(session);
        for (id, subprotocol) in std::mem::take(&mut self.pending_opens) {
            self.open_now(id, subprotocol);
        }
    }

    fn new_conn(&mut self, now: Instant, path: PathKind, target: Option<usize>) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            conn,
            Conn {
                generation: self.manager.generation(),
                path,
                peer: None,
                local: None,
                target,
                state: ConnState::Dialing {
                    deadline: now + self.config.connect_timeout,
                },
            },
        );
        conn
    }

    fn use_hints(&mut self, now: Instant, hints: Vec<Hint>) {
        for hint in hints {
            match hint {
                Hint::DirectTcp { hostname, port, .. } if self.config.proxy.is_some() => {
                    tracing::debug!("not dialing {hostname}:{port}: through a proxy, relay only");
                }
                Hint::DirectTcp { hostname, port, .. } => {
                    self.direct_possible = true;
                    self.add_target(now, hostname, port, PathKind::Direct);
                }
                Hint::Relay(inner) => {
                    for h in inner {
                        if let Hint::DirectTcp { hostname, port, .. } = h {
                            let ours = self
                                .config
                                .relay
                                .as_ref()
                                .is_some_and(|r| r.host == hostname && r.port == port);
                            if !ours {
                                self.add_target(now, hostname, port, PathKind::Relay);
                            }
                        }
                    }
                }
                Hint::TorTcp { .. } => tracing::debug!("skipping a Tor hint"),
            }
        }
    }

    /// Our relay, unless we stay on loopback and it is elsewhere.
    fn our_relay(&self) -> Option<&RelayLocation> {
        let relay = self.config.relay.as_ref()?;
        (!self.config.loopback_only || is_loopback(&relay.host)).then_some(relay)
    }

    fn add_target(&mut self, now: Instant, host: String, port: u16, path: PathKind) {
        if self.config.loopback_only && !is_loopback(&host) {
            tracing::debug!("not dialing {host}:{port}: loopback only");
            return;
        }
        let known = self
            .targets
            .iter()
            .any(|t| t.host == host && t.port == port && t.path == path);
        if known {
            return;
        }
        if self.targets.len() >= MAX_DIAL_TARGETS {
            tracing::debug!("ignoring hint {host}:{port}: {MAX_DIAL_TARGETS} already dialed");
            return self.abuse(PeerAbuse::TooManyHints);
        }
        self.targets.push(Target {
            host,
            port,
            path,
            delay: FIRST_RETRY,
            retry_at: None,
            done: false,
        });
        self.dial(now, self.targets.len() - 1);
    }

    fn dial(&mut self, now: Instant, target: usize) {
        if self.targets[target].done {
            return;
        }
        let mut dialing: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.target == Some(target) && matches!(c.state, ConnState::Dialing { .. })
            })
            .map(|(id, _)| *id)
            .collect();
        dialing.sort_unstable();
        if dialing.len() >= PARALLEL_DIALS {
            self.conns.remove(&dialing[0]);
            self.actions.push_back(Action::Close { conn: dialing[0] });
        }
        let t = &mut self.targets[target];
        // unanswered by then: another attempt beside this one
        t.retry_at = Some(now + MAX_RETRY);
        let (host, port, path) = (t.host.clone(), t.port, t.path);
        let conn = self.new_conn(now, path, Some(target));
        tracing::debug!("dialing {path} {host}:{port} as connection {conn}");
        self.actions.push_back(Action::Dial {
            conn,
            host,
            port,
            path,
        });
    }

    /// A connection that is not the selected one failed: forget it, retry its target later.
    fn conn_failed(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.actions.push_back(Action::Close { conn });
        if c.generation != self.manager.generation() || self.manager.state() != State::Connecting {
            return;
        }
        if let Some(t) = c.target.and_then(|i| self.targets.get_mut(i)) {
            t.retry_at = Some(now + t.delay);
            t.delay = (t.delay * 2).min(MAX_RETRY);
        }
        if self.direct_exhausted() {
            if self.grace.is_some() {
                tracing::debug!("every direct attempt failed: no more relay grace");
                self.grace = None;
                self.select_best_candidate(now);
            }
            // a Follower's held KCMs go out now (at the next timeout, which is due)
            for c in self.conns.values_mut() {
                if let ConnState::Handshaking {
                    release_at: Some(r),
                    ..
                } = &mut c.state
                {
                    *r = (*r).min(now);
                }
            }
        }
    }

    /// Writes what the connection's L2 has to send.
    fn flush_conn(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if let ConnState::Handshaking { l2, .. } | ConnState::Candidate { l2, .. } =
                &mut c.state
            {
                if l2.has_output() {
                    let bytes = l2.take_output();
                    self.actions.push_back(Action::Transmit { conn, bytes });
                }
            }
        }
    }

    /// Moves a handshaking connection along: KCM hold, readiness, selection.
    fn advance_conn(&mut self, now: Instant, conn: ConnId) {
        let role = self.manager.role();
        let direct_possible = self.direct_possible && !self.direct_exhausted();
        let grace = self.config.relay_grace;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let mut ready = false;
        match &mut c.state {
            ConnState::Handshaking { l2, release_at, .. } => {
                if l2.kcm_held() && release_at.is_none() {
                    // give a direct connection the chance to reach the Leader first
                    match direct_possible {
                        true => *release_at = Some(now + grace),
                        false => l2.release_kcm(),
                    }
                }
                let mut records = Vec::new();
                while let Some(e) = l2.poll_event() {
                    match e {
                        L2Event::Ready => ready = true,
                        L2Event::Record(r) if ready => records.push(r),
                        L2Event::Record(_) => {}
                    }
                }
                if ready {
                    let ConnState::Handshaking { l2, .. } =
                        std::mem::replace(&mut c.state, ConnState::Selected)
                    else {
                        unreachable!()
                    };
                    c.state = ConnState::Candidate {
                        l2,
                        records,
                        since: now,
                    };
                }
            }
            ConnState::Candidate { l2, records, .. } => {
                while let Some(e) = l2.poll_event() {
                    if let L2Event::Record(r) = e {
                        records.push(r);
                    }
                }
            }
            _ => {}
        }
        let path = c.path;
        self.flush_conn(conn);
        if !ready || self.selected.is_some() {
            return;
        }
        match (role, path) {
            (Some(Role::Follower), _) | (Some(Role::Leader), PathKind::Direct) => {
                self.select(now, conn)
            }
            (Some(Role::Leader), PathKind::Relay) => {
                if !self.direct_possible || self.direct_exhausted() {
                    self.select(now, conn);
                } else if self.grace.is_none() {
                    self.grace = Some(now + self.config.relay_grace);
                }
            }
            (None, _) => {}
        }
    }

    /// Every direct hint of the peer was dialed and failed at least once, no direct connection
    /// is under way, and we do not listen (so the peer cannot reach us directly either):
    /// waiting for a direct connection would only delay the relay.
    fn direct_exhausted(&self) -> bool {
        let mut direct = self
            .targets
            .iter()
            .filter(|t| t.path == PathKind::Direct)
            .peekable();
        self.listen_port.is_none()
            && direct.peek().is_some()
            && direct.all(|t| t.delay > FIRST_RETRY)
            && !self.conns.values().any(|c| {
                c.path == PathKind::Direct
                    && matches!(
                        c.state,
                        ConnState::Dialing { .. }
                            | ConnState::Handshaking { .. }
                            | ConnState::Candidate { .. }
                    )
            })
    }

    /// The Leader's relay grace ended: the oldest waiting candidate wins.
    fn select_best_candidate(&mut self, now: Instant) {
        if self.selected.is_some() {
            return;
        }
        let best = self
            .conns
            .iter()
            .filter_map(|(id, c)| match &c.state {
                ConnState::Candidate { since, .. } => Some((*since, *id)),
                _ => None,
            })
            .min();
        if let Some((_, conn)) = best {
            self.select(now, conn);
        }
    }

    fn select(&mut self, now: Instant, conn: ConnId) {
        let Some(mut c) = self.conns.remove(&conn) else {
            return;
        };
        let ConnState::Candidate {
            mut l2, records, ..
        } = std::mem::replace(&mut c.state, ConnState::Selected)
        else {
            self.conns.insert(conn, c);
            return;
        };
        if self.manager.role() == Some(Role::Leader) {
            l2.select();
        }
        if l2.has_output() {
            let bytes = l2.take_output();
            self.actions.push_back(Action::Transmit { conn, bytes });
        }
        let Some((send, recv)) = l2.into_halves() else {
            self.actions.push_back(Action::Close { conn });
            return;
        };
        // every other connection of this generation, and the listener, go
        self.end_generation();
        let peer = c
            .peer
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let path = c.path;
        self.conns.insert(conn, c);
        self.selected = Some(conn);
        self.actions
            .push_back(Action::StartLink { conn, send, recv });
        let session = self
            .session
            .as_mut()
            .expect("a session exists once connecting");
        session.connection_made(now);
        for r in records {
            session.received(r);
        }
        session.stamp_ack(now);
        self.manager.connection_made(now);
        let outage = self
            .lost_at
            .take()
            .map(|t| now.saturating_duration_since(t));
        self.attempts = 0;
        tracing::info!(
            "dilation connected: generation {}, {path} via {peer}{}",
            self.manager.generation(),
            outage.map_or(String::new(), |d| format!(
                " after an outage of {:.2} s",
                d.as_secs_f64()
            ))
        );
        self.events
            .push_back(Event::Status(DilationEvent::Connected {
                generation: self.manager.generation(),
                path,
                peer,
                outage,
            }));
        self.drive(now);
    }

    /// Closes every connection but the selected one, stops listening, forgets the targets.
    fn end_generation(&mut self) {
        let others: Vec<ConnId> = self
            .conns
            .keys()
            .copied()
            .filter(|id| Some(*id) != self.selected)
            .collect();
        for conn in others {
            self.conns.remove(&conn);
            self.actions.push_back(Action::Close { conn });
        }
        if self.listening.take().is_some() {
            self.actions.push_back(Action::StopListening);
        }
        self.targets.clear();
        self.grace = None;
        self.direct_possible = false;
        self.listen_port = None;
        self.advertised.clear();
    }

    /// Drops the selected connection, if any, and starts what follows its loss.
    fn drop_link(&mut self, now: Instant, reason: LossReason) {
        let Some(conn) = self.selected.take() else {
            return;
        };
        self.conns.remove(&conn);
        self.actions.push_back(Action::Close { conn });
        tracing::info!("dilation connection lost: {reason}");
        self.lost_at.get_or_insert(now);
        self.events.push_back(Event::Status(DilationEvent::Lost {
            generation: self.manager.generation(),
            reason: reason.clone(),
        }));
        self.events.push_back(Event::ConnectionLost { reason });
        if let Some(s) = self.session.as_mut() {
            s.connection_lost();
        }
        self.manager.connection_lost(now);
    }
}

/// The direct hints for a listener on `port` reachable at `addresses`.
fn direct_hints(port: u16, addresses: &[IpAddr], loopback_only: bool) -> Vec<Hint> {
    let usable = |ip: &&IpAddr| match ip {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
    };
    let mut chosen: Vec<IpAddr> = addresses
        .iter()
        .filter(usable)
        .filter(|ip| !ip.is_unspecified() && ip.is_loopback() == loopback_only)
        .copied()
        .collect();
    if chosen.is_empty() {
        chosen.push(IpAddr::from([127, 0, 0, 1]));
    }
    chosen
        .into_iter()
        .map(|ip| Hint::direct(&ip.to_string(), port))
        .collect()
}

/// Whether a hint's host is a loopback address (or `localhost`).
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
#[path = "endpoint_harness.rs"]
pub(crate) mod harness;

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;
