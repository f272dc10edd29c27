//! The configuration of a Dilation and what it reports to the application: the types shared by
//! the sans-IO [`Endpoint`](super::endpoint::Endpoint) and the tokio driver.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::hints::RelayLocation;
use super::l2::Role;
use super::manager::DilationError;
use crate::wormhole::WormholeEvent;

/// How a connection reaches the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// A TCP connection between the peers (one dialed the other's direct hint).
    Direct,
    /// Through a transit relay that both peers dialed.
    Relay,
}

impl std::fmt::Display for PathKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PathKind::Direct => "direct",
            PathKind::Relay => "relay",
        })
    }
}

/// The default [`DilationConfig::liveness_interval`].
pub const DEFAULT_LIVENESS_INTERVAL: Duration = Duration::from_secs(10);

/// Why a connection was declared lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LossReason {
    /// It closed or failed (a reset, the peer's close, a write error): the error as text.
    Closed(String),
    /// Nothing arrived on it for this long (a silent network: no reset ever came).
    Silent(Duration),
    /// The local address it used is no longer on any interface.
    AddressGone(IpAddr),
    /// The peer sent new hints while connected (its side lost the connection) and our probe
    /// went unanswered.
    ProbeUnanswered,
    /// The Leader asked for a new connection (`reconnect`).
    PeerReconnect,
    /// The peer (one of ours) told us through the mailbox that it lost the connection.
    PeerLost,
    /// Bytes that cannot belong to the link arrived.
    Protocol(String),
}

impl LossReason {
    /// A short name: `closed`, `silent`, `address-gone`, `probe-unanswered`, `peer-reconnect`,
    /// `peer-lost` or `protocol`.
    pub fn kind(&self) -> &'static str {
        match self {
            LossReason::Closed(_) => "closed",
            LossReason::Silent(_) => "silent",
            LossReason::AddressGone(_) => "address-gone",
            LossReason::ProbeUnanswered => "probe-unanswered",
            LossReason::PeerReconnect => "peer-reconnect",
            LossReason::PeerLost => "peer-lost",
            LossReason::Protocol(_) => "protocol",
        }
    }
}

impl std::fmt::Display for LossReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LossReason::Closed(why) => write!(f, "closed: {why}"),
            LossReason::Silent(d) => write!(f, "silent for {:.1} s", d.as_secs_f64()),
            LossReason::AddressGone(ip) => write!(f, "local address {ip} gone"),
            LossReason::ProbeUnanswered => f.write_str("the peer lost it (probe unanswered)"),
            LossReason::PeerReconnect => f.write_str("the peer asked to reconnect"),
            LossReason::PeerLost => f.write_str("the peer lost it"),
            LossReason::Protocol(why) => write!(f, "protocol error: {why}"),
        }
    }
}

/// Something the peer sent that we refused or ignored because it went over a bound
/// (`protocol/bounds.md`). Reported as [`DilationEvent::PeerAbuse`], at most once a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerAbuse {
    /// OPENs refused: `max_subchannels` are open already.
    TooManySubchannels,
    /// OPENs refused: too many wait for a name nobody listens to.
    TooManyWaiting,
    /// OPENs ignored: the id is one we allocate (it would cross two streams).
    OurSubchannelId,
    /// OPENs refused: the subprotocol name is longer than 1024 bytes.
    LongSubprotocol,
    /// Refusals not sent: the peer leaves too many of our records unacknowledged.
    Unacknowledged,
    /// Connection hints ignored beyond the 64 dialed per generation.
    TooManyHints,
}

impl std::fmt::Display for PeerAbuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PeerAbuse::TooManySubchannels => "subchannel opens refused (too many open)",
            PeerAbuse::TooManyWaiting => {
                "subchannel opens refused (too many waiting for a name nobody listens to)"
            }
            PeerAbuse::OurSubchannelId => "subchannel opens ignored (an id of ours)",
            PeerAbuse::LongSubprotocol => "subchannel opens refused (subprotocol name too long)",
            PeerAbuse::Unacknowledged => {
                "subchannel opens ignored (the peer does not acknowledge our records)"
            }
            PeerAbuse::TooManyHints => "connection hints ignored (over 64)",
        })
    }
}

/// How a Dilation behaves.
#[derive(Debug, Clone)]
pub struct DilationConfig {
    /// Transit relay for our relay hint (and our own relay connection); `None`: no relay of ours.
    pub relay: Option<RelayLocation>,
    /// No listener and no direct hints.
    pub no_listen: bool,
    /// Stay on loopback: listen on 127.0.0.1 only, advertise only loopback hints and dial only
    /// loopback addresses (peer hints and relays elsewhere are ignored). For demos and tests on
    /// a machine with other interfaces.
    pub loopback_only: bool,
    /// Liveness interval: a connection over which nothing arrived for this long is declared
    /// lost and replaced, in both roles (a side that heard nothing for a third of it sends a
    /// PING, answered at once). Not judged while our own reading is paused by a slow consumer.
    /// Python's Leader alone pings, every 30 s.
    pub liveness_interval: Duration,
    /// A Leader whose generation did not connect within this starts a new one.
    pub generation_timeout: Duration,
    /// A Leader waits this long after a relay candidate for a direct one; a Follower holds its
    /// KCM on a relay connection this long while a direct path is possible (a Python Leader
    /// takes the first KCM).
    pub relay_grace: Duration,
    /// Bytes written to subchannels but not yet handed to the connection (all subchannels
    /// together); writers wait beyond it, so the connection's TCP backpressure reaches them.
    pub write_budget: usize,
    /// Bound on sent but unacknowledged record bytes, kept for resending after a reconnect; no
    /// fresh record is sent beyond it.
    pub unacked_limit: usize,
    /// The cap on unacknowledged bytes while our own reading is paused (a local reader is slow):
    /// the peer's ACKs cannot be read then, so a cap below what both peers hold in flight would
    /// deadlock two peers that each wait for the other. Never below `unacked_limit`.
    pub paused_unacked_limit: usize,
    /// Bound on received bytes buffered per subchannel before reading the connection pauses.
    pub inbound_limit: usize,
    /// OPENs held per subprotocol while nobody listens for it; more are closed.
    pub max_pending_opens: usize,
    /// OPENs held while nobody listens, all names together; more are closed (the subchannels
    /// of names someone listens for are still admitted).
    pub max_held: usize,
    /// Subchannels open at once; more from the peer are closed at once.
    pub max_subchannels: usize,
    /// Longest wait for one TCP connect (to a peer hint or a relay) before it is retried.
    pub connect_timeout: Duration,
    /// Longest wait for a connection's relay answer, Noise handshake and KCM.
    pub handshake_timeout: Duration,
    /// On close, how long to wait for the peer to acknowledge what we sent.
    pub flush_timeout: Duration,
    /// How long an ACK may wait for a record of ours to ride with, so that an answer does not
    /// follow our ACK as a second small write (a relay without TCP_NODELAY would hold it for the
    /// peer's delayed TCP ACK, about 40 ms); an ACK goes at once after 256 KiB received. Zero:
    /// every ACK at once, as Python does.
    pub ack_delay: Duration,
    /// Fixes our Dilation side (16 hex digits) instead of a random one; the larger side leads.
    /// For tests that need a given role.
    pub side: Option<String>,
    /// Privacy through a SOCKS5 proxy: every connection (the relays) is dialed through it, and
    /// there is no listener, no direct hint and no dial of the peer's direct hints, so the relay
    /// is the only path and the peer never learns our addresses (see [`crate::proxy`]).
    pub proxy: Option<crate::proxy::Socks5Proxy>,
}

impl Default for DilationConfig {
    fn default() -> DilationConfig {
        DilationConfig {
            relay: None,
            no_listen: false,
            loopback_only: false,
            liveness_interval: DEFAULT_LIVENESS_INTERVAL,
            generation_timeout: Duration::from_secs(10),
            relay_grace: Duration::from_millis(500),
            write_budget: 4 << 20,
            unacked_limit: super::reliability::DEFAULT_UNACKED_LIMIT,
            paused_unacked_limit: super::reliability::DEFAULT_UNACKED_LIMIT,
            inbound_limit: 1 << 20,
            max_pending_opens: 64,
            max_held: 256,
            max_subchannels: 16384,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(30),
            flush_timeout: Duration::from_secs(5),
            ack_delay: Duration::from_millis(10),
            side: None,
            proxy: None,
        }
    }
}

/// What a dilated session reports.
#[derive(Debug, Clone, PartialEq)]
pub enum DilationEvent {
    /// Everything the wormhole reports, except the Dilation messages themselves.
    Wormhole(WormholeEvent),
    /// The roles are known and generation `generation` is connecting.
    Connecting {
        /// Our role: the Leader has the larger side and selects the connection.
        role: Role,
        /// Generation number, counted from 0; each reconnection starts a new one.
        generation: u32,
    },
    /// A connection was selected: data flows.
    Connected {
        /// The generation that connected.
        generation: u32,
        /// Direct or through a relay.
        path: PathKind,
        /// The address we are connected to (the peer, or the relay).
        peer: SocketAddr,
        /// After a loss: how long no connection was selected.
        outage: Option<Duration>,
    },
    /// The connection of `generation` was lost; new generations follow until one connects.
    Lost {
        /// The generation whose connection was lost.
        generation: u32,
        /// Why it was declared lost.
        reason: LossReason,
    },
    /// After a loss, generation `generation` is trying to connect.
    Reconnecting {
        /// The new generation.
        generation: u32,
        /// 1 for the first generation after the loss, then 2, ...
        attempt: u32,
    },
    /// Dilation cannot go on (the peer cannot dilate, or a reflected message).
    Failed(DilationError),
    /// The peer went over a bound `count` times since the last report (at most one report a
    /// second; the first at once). The offending input was refused or ignored; the session goes on.
    PeerAbuse {
        /// What it did.
        abuse: PeerAbuse,
        /// How often since the last report.
        count: u64,
    },
}
