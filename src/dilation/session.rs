//! L4 and L5 as one sans-IO state machine that outlives connections: the reliable-record queue
//! and watermark (reference §3.8), subchannel ids and states (§3.9) and liveness (§3.11, extended:
//! both roles ping). The driver feeds it records from the selected connection and drains the
//! records to send on it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::PeerAbuse;
use super::l2::Role;
use super::record::{Record, Scid, Seqnum};
use super::reliability::{Inbound, Outbound, SeqnumExhausted};

/// What happened to the subchannels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The peer opened a subchannel.
    Incoming {
        scid: Scid,
        subprotocol: String,
    },
    Data {
        scid: Scid,
        data: Vec<u8>,
    },
    /// The peer sent its CLOSE: no more data will come.
    ReadClosed {
        scid: Scid,
    },
    /// Both sides have closed the subchannel; its id is retired.
    Closed {
        scid: Scid,
    },
    /// This many DATA payload bytes went to the connection for the first time (writers may
    /// queue as much again).
    Sent {
        data_bytes: usize,
    },
    /// The peer went over a bound; its record was refused or ignored.
    Abuse(PeerAbuse),
    /// (flow control) The peer's reader consumed `consumed` bytes of `scid` in all.
    Credit {
        scid: Scid,
        consumed: u64,
    },
}

/// Longest subprotocol name of a peer's OPEN we take; a longer one is refused with CLOSE
/// (fowl's names are a few bytes).
pub const MAX_SUBPROTOCOL: usize = 1024;
/// PONGs waiting to be sent (one per PING received while our writer is stalled); older ones
/// are dropped beyond it (an unanswered PING costs the peer at most a reconnect).
const MAX_QUEUED_PONGS: usize = 16;
/// Refusals (our CLOSEs for OPENs we did not take) the peer has not acknowledged; beyond it
/// further OPENs to refuse are ignored instead: a peer that floods OPENs and never acknowledges
/// cannot grow our queue of records to resend.
pub const MAX_UNACKED_REFUSALS: usize = 1024;
/// With a delay set, an ACK goes out at once all the same once this many bytes of records were
/// received since the last one (a bulk sender's unacknowledged queue keeps moving).
pub const ACK_EVERY_BYTES: usize = 256 << 10;

/// What the driver must do after a timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Fine,
    /// Nothing arrived for a whole liveness interval: drop the connection.
    Silent(Duration),
    /// A probe (see [`Session::probe`]) was not answered in time: drop the connection.
    ProbeUnanswered,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SubchannelError {
    #[error("subchannel {0} is closed for writing")]
    Closed(Scid),
    #[error("unknown subchannel {0}")]
    Unknown(Scid),
    #[error(transparent)]
    Exhausted(#[from] SeqnumExhausted),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubState {
    Open,
    /// We sent CLOSE; inbound data still arrives until the peer's CLOSE.
    LocalClosed,
    /// Half-close: the peer sent CLOSE; we may still write.
    RemoteClosed,
}

/// Liveness of the selected connection, in both roles (Python: only the Leader pings, and only
/// a PONG counts). Anything read counts as a sign of life; a side that heard nothing for a third
/// of the interval sends a PING, which the peer answers at once (Python too), so an idle but
/// healthy connection is never silent for long. Nothing heard for the whole interval: dead.
/// While our reading is paused (a slow local consumer) nothing can be heard, so nothing is
/// judged; the interval starts again when reading resumes.
#[derive(Debug)]
struct Pinger {
    interval: Duration,
    last_heard: Instant,
    next_ping: Instant,
    /// Reading was paused at the last check.
    paused: bool,
    /// A probe's PING id and the deadline for its PONG.
    probe: Option<([u8; 4], Instant)>,
}

impl Pinger {
    fn quiet(&self) -> Duration {
        self.interval / 3
    }
}

pub struct Session {
    outbound: Outbound,
    /// Highest seqnum ever transmitted: later records are fresh.
    highest_sent: Option<u32>,
    /// Bytes of the records sent on this connection and not yet acknowledged.
    in_flight: usize,
    unacked_limit: usize,
    inbound: Inbound,
    subchannels: HashMap<Scid, SubState>,
    next_scid: Scid,
    half_close: bool,
    connected: bool,
    control: VecDeque<Record>,
    next_unsent: usize,
    liveness: Duration,
    pinger: Option<Pinger>,
    events: VecDeque<SessionEvent>,
    /// The seqnums of our refusal CLOSEs not yet acknowledged, oldest first.
    refusals: VecDeque<Seqnum>,
    /// How long an ACK may wait for a record of ours to ride with (zero: sent at once).
    ack_delay: Duration,
    /// The cumulative ACK held back, when it is due (stamped by [`Session::stamp_ack`]), and
    /// the bytes of records it covers since the last ACK sent.
    held_ack: Option<HeldAck>,
    /// (flow control) Bytes our readers consumed per subchannel, as last announced in CREDIT.
    credits: HashMap<Scid, u64>,
}

#[derive(Debug, Clone, Copy)]
struct HeldAck {
    seqnum: Seqnum,
    due: Option<Instant>,
    bytes: usize,
}

impl Session {
    /// `half_close`: the peer is one of ours and keeps a subchannel open for writing after our
    /// CLOSE (Python closes both directions at once).
    pub fn new(role: Role, unacked_limit: usize, liveness: Duration, half_close: bool) -> Session {
        Session {
            outbound: Outbound::default(),
            highest_sent: None,
            in_flight: 0,
            unacked_limit,
            inbound: Inbound::default(),
            subchannels: HashMap::new(),
            next_scid: if role == Role::Leader { 1 } else { 2 },
            credits: HashMap::new(),
            half_close,
            connected: false,
            control: VecDeque::new(),
            next_unsent: 0,
            liveness,
            pinger: None,
            events: VecDeque::new(),
            refusals: VecDeque::new(),
            ack_delay: Duration::ZERO,
            held_ack: None,
        }
    }

    /// Lets ACKs wait up to `delay` for a record of ours to ride with: two small writes in a
    /// row (our ACK, then the answer our local service gave) would meet Nagle's algorithm in a
    /// relay that does not set TCP_NODELAY, and the second would wait for the peer's delayed
    /// TCP ACK (40 ms).
    pub fn set_ack_delay(&mut self, delay: Duration) {
        self.ack_delay = delay;
    }

    /// Gives a held ACK its deadline, `now` plus the delay (call after [`Session::received`]).
    pub fn stamp_ack(&mut self, now: Instant) {
        if let Some(held) = self.held_ack.as_mut() {
            held.due.get_or_insert(now + self.ack_delay);
        }
    }

    /// The held ACK goes into the control queue.
    fn release_ack(&mut self) {
        if let Some(held) = self.held_ack.take() {
            self.queue_ack(held.seqnum);
        }
    }

    /// Queues a cumulative ACK: one waiting ACK is enough, the highest.
    fn queue_ack(&mut self, seqnum: Seqnum) {
        let mut ack = seqnum;
        self.control.retain(|r| match r {
            Record::Ack(s) => {
                ack = ack.max(*s);
                false
            }
            _ => true,
        });
        self.control.push_back(Record::Ack(ack));
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let p = self.pinger.as_ref()?;
        let silent = (!p.paused).then_some(p.last_heard + p.interval);
        let probe = p.probe.map(|(_, deadline)| deadline);
        let ack = self.held_ack.and_then(|h| h.due);
        [Some(p.next_ping), silent, probe, ack]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn unacked_bytes(&self) -> usize {
        self.outbound.queued_bytes()
    }

    /// Subchannels known now.
    pub fn open_subchannels(&self) -> usize {
        self.subchannels.len()
    }

    /// Control records (ACK, PING, PONG) waiting to be sent.
    pub fn control_len(&self) -> usize {
        self.control.len()
    }

    /// A connection was selected: everything unacked is resent first, in order.
    pub fn connection_made(&mut self, now: Instant) {
        self.connected = true;
        self.control.clear();
        // CREDITs are not reliable: the latest totals go out again on every connection
        let credits = self.credits.iter();
        let credits = credits.map(|(&scid, &consumed)| Record::Credit { scid, consumed });
        self.control.extend(credits);
        self.held_ack = None;
        self.next_unsent = 0;
        self.in_flight = 0;
        self.pinger = Some(Pinger {
            interval: self.liveness,
            last_heard: now,
            next_ping: now + self.liveness / 3,
            paused: false,
            probe: None,
        });
    }

    pub fn connection_lost(&mut self) {
        self.connected = false;
        self.control.clear();
        self.held_ack = None;
        self.pinger = None;
    }

    /// Something arrived on the connection at `now` (records were read).
    pub fn heard(&mut self, now: Instant) {
        if let Some(p) = self.pinger.as_mut() {
            p.last_heard = p.last_heard.max(now);
        }
    }

    /// Sends a PING now that must be answered by `deadline`, else the connection is dead (the
    /// peer told us through the mailbox that its side may be gone).
    pub fn probe(&mut self, deadline: Instant) {
        if let Some(p) = self.pinger.as_mut() {
            let id: [u8; 4] = rand::random();
            p.probe = Some((id, deadline));
            self.control.push_back(Record::Ping(id));
        }
    }

    /// Time passed; `reading`: whether we read the connection now (not paused by a slow
    /// consumer). Sends PINGs when quiet; judges silence only while reading.
    pub fn handle_timeout(&mut self, now: Instant, reading: bool) -> Liveness {
        if self
            .held_ack
            .is_some_and(|h| h.due.is_some_and(|due| now >= due))
        {
            self.release_ack();
        }
        let Some(p) = self.pinger.as_mut() else {
            return Liveness::Fine;
        };
        if p.probe.is_some_and(|(_, deadline)| now >= deadline) {
            return Liveness::ProbeUnanswered;
        }
        if !reading {
            p.paused = true;
        } else if p.paused {
            p.paused = false;
            p.last_heard = p.last_heard.max(now);
        }
        // woken long after our timer was due: we did not run (a suspended laptop, a stopped
        // process), so we could not hear either; what waits in the socket is read next
        // (call this when `poll_timeout` is due, as drivers do: later counts as asleep)
        let asleep = now.saturating_duration_since(p.next_ping) > p.quiet();
        if asleep {
            p.last_heard = p.last_heard.max(now);
        }
        let silent = now.saturating_duration_since(p.last_heard);
        if reading && silent >= p.interval {
            return Liveness::Silent(silent);
        }
        if now >= p.next_ping {
            if asleep || silent >= p.quiet() || p.paused {
                self.control.push_back(Record::Ping(rand::random()));
            }
            p.next_ping = now + p.quiet();
        }
        Liveness::Fine
    }

    /// The subchannel is gone for good: its id and its flow-control total are forgotten.
    fn forget(&mut self, scid: Scid) {
        self.subchannels.remove(&scid);
        self.credits.remove(&scid);
    }

    /// (flow control) Our reader of `scid` consumed `consumed` bytes in all: a CREDIT tells the
    /// peer (replacing one not yet sent).
    pub fn credit(&mut self, scid: Scid, consumed: u64) {
        if !self.subchannels.contains_key(&scid) {
            return;
        }
        self.credits.insert(scid, consumed);
        if self.connected {
            self.control
                .retain(|r| !matches!(r, Record::Credit { scid: s, .. } if *s == scid));
            self.control.push_back(Record::Credit { scid, consumed });
        }
    }

    /// Opens a subchannel for `subprotocol`; DATA may follow at once.
    pub fn open(&mut self, subprotocol: &str) -> Result<Scid, SubchannelError> {
        let scid = self.next_scid;
        self.outbound.open(scid, subprotocol)?;
        self.next_scid = self.next_scid.checked_add(2).ok_or(SeqnumExhausted)?;
        self.subchannels.insert(scid, SubState::Open);
        Ok(scid)
    }

    pub fn send_data(&mut self, scid: Scid, data: Vec<u8>) -> Result<(), SubchannelError> {
        match self.subchannels.get(&scid) {
            Some(SubState::Open | SubState::RemoteClosed) => {
                self.outbound.data(scid, data)?;
                Ok(())
            }
            Some(SubState::LocalClosed) => Err(SubchannelError::Closed(scid)),
            None => Err(SubchannelError::Unknown(scid)),
        }
    }

    /// Refuses a subchannel the peer opened: our CLOSE goes out and the id is forgotten at once
    /// (a refused OPEN leaves nothing behind, whether or not the peer ever answers). While
    /// [`MAX_UNACKED_REFUSALS`] refusals wait for the peer's ACK, the OPEN is ignored instead.
    pub fn refuse(&mut self, scid: Scid) {
        self.forget(scid);
        if self.refusals.len() >= MAX_UNACKED_REFUSALS {
            tracing::debug!("ignoring OPEN {scid}: {MAX_UNACKED_REFUSALS} refusals unacknowledged");
            self.events
                .push_back(SessionEvent::Abuse(PeerAbuse::Unacknowledged));
            return;
        }
        match self.outbound.close(scid) {
            Ok(r) => self.refusals.extend(r.seqnum()),
            Err(e) => tracing::warn!("cannot refuse subchannel {scid}: {e}"),
        }
    }

    /// Sends our CLOSE ("no more data from us").
    pub fn close(&mut self, scid: Scid) -> Result<(), SubchannelError> {
        match self.subchannels.get(&scid).copied() {
            Some(SubState::Open) => {
                self.outbound.close(scid)?;
                self.subchannels.insert(scid, SubState::LocalClosed);
            }
            Some(SubState::RemoteClosed) => {
                self.outbound.close(scid)?;
                self.forget(scid);
                self.events.push_back(SessionEvent::Closed { scid });
            }
            Some(SubState::LocalClosed) => {}
            None => return Err(SubchannelError::Unknown(scid)),
        }
        Ok(())
    }

    /// A record from the selected connection (after its KCM).
    pub fn received(&mut self, record: Record) {
        match record {
            Record::Kcm => tracing::debug!("ignoring a second KCM"),
            Record::Ping(id) => {
                let pongs = self.control.iter().filter(|r| matches!(r, Record::Pong(_)));
                if pongs.count() >= MAX_QUEUED_PONGS {
                    if let Some(i) = self
                        .control
                        .iter()
                        .position(|r| matches!(r, Record::Pong(_)))
                    {
                        self.control.remove(i);
                    }
                }
                self.control.push_back(Record::Pong(id));
            }
            Record::Credit { scid, consumed } => {
                if self.subchannels.contains_key(&scid) {
                    self.events
                        .push_back(SessionEvent::Credit { scid, consumed });
                }
            }
            Record::Pong(id) => {
                if let Some(p) = self.pinger.as_mut() {
                    if p.probe.is_some_and(|(probe, _)| probe == id) {
                        p.probe = None;
                    }
                }
            }
            Record::Ack(seqnum) => {
                let before = self.outbound.queued_bytes();
                let (records, _) = self.outbound.ack(seqnum);
                while self.refusals.front().is_some_and(|s| *s <= seqnum) {
                    self.refusals.pop_front();
                }
                let retired = before - self.outbound.queued_bytes();
                self.in_flight = self.in_flight.saturating_sub(retired);
                self.next_unsent = self.next_unsent.saturating_sub(records);
            }
            Record::Open { seqnum, .. }
            | Record::Data { seqnum, .. }
            | Record::Close { seqnum, .. } => {
                if self.ack_delay.is_zero() {
                    self.queue_ack(seqnum);
                } else {
                    let held = self.held_ack.get_or_insert(HeldAck {
                        seqnum,
                        due: None,
                        bytes: 0,
                    });
                    held.seqnum = held.seqnum.max(seqnum);
                    held.bytes += record.encoded_len();
                    if held.bytes >= ACK_EVERY_BYTES {
                        self.release_ack();
                    }
                }
                if self.inbound.accept(seqnum) {
                    self.dispatch(record);
                }
            }
        }
    }

    fn dispatch(&mut self, record: Record) {
        match record {
            Record::Open {
                scid, subprotocol, ..
            } => {
                if self.subchannels.contains_key(&scid) {
                    tracing::info!("ignoring duplicate OPEN for subchannel {scid}");
                    return;
                }
                if (scid % 2) == (self.next_scid % 2) {
                    // an id of ours: taking it would cross two streams once we allocate it
                    tracing::debug!("ignoring OPEN for subchannel {scid}, an id of ours");
                    let abuse = SessionEvent::Abuse(PeerAbuse::OurSubchannelId);
                    return self.events.push_back(abuse);
                }
                if subprotocol.len() > MAX_SUBPROTOCOL {
                    tracing::debug!(
                        "refusing subchannel {scid}: subprotocol name of {} bytes",
                        subprotocol.len()
                    );
                    let abuse = SessionEvent::Abuse(PeerAbuse::LongSubprotocol);
                    self.events.push_back(abuse);
                    return self.refuse(scid);
                }
                self.subchannels.insert(scid, SubState::Open);
                self.events
                    .push_back(SessionEvent::Incoming { scid, subprotocol });
            }
            Record::Data { scid, data, .. } => match self.subchannels.get(&scid) {
                Some(SubState::Open | SubState::LocalClosed) => {
                    self.events.push_back(SessionEvent::Data { scid, data })
                }
                _ => tracing::debug!("dropping DATA for subchannel {scid}, which is not readable"),
            },
            Record::Close { scid, .. } => match self.subchannels.get(&scid).copied() {
                Some(SubState::Open) if self.half_close => {
                    self.subchannels.insert(scid, SubState::RemoteClosed);
                    self.events.push_back(SessionEvent::ReadClosed { scid });
                }
                Some(SubState::Open) => {
                    // full close, as Python does: answer with our own CLOSE at once. `Closed`
                    // comes first so a reader that sees the end knows writing is over too.
                    if let Err(e) = self.outbound.close(scid) {
                        tracing::warn!("cannot answer CLOSE: {e}");
                    }
                    self.forget(scid);
                    self.events.push_back(SessionEvent::Closed { scid });
                    self.events.push_back(SessionEvent::ReadClosed { scid });
                }
                Some(SubState::LocalClosed) => {
                    self.forget(scid);
                    self.events.push_back(SessionEvent::Closed { scid });
                    self.events.push_back(SessionEvent::ReadClosed { scid });
                }
                _ => tracing::debug!("ignoring CLOSE for subchannel {scid}"),
            },
            _ => unreachable!("only reliable records are dispatched"),
        }
    }

    /// Hands the records due on the connection to `send`, control records first, until about
    /// `budget` bytes went out. Unacknowledged records are resent first; fresh ones go out only
    /// while the unacknowledged queue is under its limit. Returns whether more are waiting.
    pub fn transmit(&mut self, budget: usize, mut send: impl FnMut(&Arc<Record>)) -> bool {
        if !self.connected {
            return false;
        }
        // a held ACK rides with whatever goes out now
        if self.held_ack.is_some() && (!self.control.is_empty() || self.may_send_next()) {
            self.release_ack();
        }
        let mut spent = 0;
        while let Some(r) = self.control.pop_front() {
            spent += r.encoded_len();
            send(&Arc::new(r));
        }
        let mut fresh_data = 0;
        while spent < budget && self.may_send_next() {
            let Some(r) = self.outbound.get(self.next_unsent) else {
                break;
            };
            let seqnum = r.seqnum();
            if seqnum > self.highest_sent {
                self.highest_sent = seqnum;
                if let Record::Data { data, .. } = r.as_ref() {
                    fresh_data += data.len();
                }
            }
            spent += r.encoded_len();
            self.in_flight += r.encoded_len();
            send(r);
            self.next_unsent += 1;
        }
        if fresh_data > 0 {
            self.events.push_back(SessionEvent::Sent {
                data_bytes: fresh_data,
            });
        }
        self.wants_transmit()
    }

    fn may_send_next(&self) -> bool {
        let Some(r) = self.outbound.get(self.next_unsent) else {
            return false;
        };
        let resend = r.seqnum() <= self.highest_sent;
        resend || self.in_flight < self.unacked_limit
    }

    /// Tests: only `left` sequence numbers remain.
    #[cfg(test)]
    pub fn exhaust_seqnums(&mut self, left: u64) {
        self.outbound.exhaust(left);
    }

    /// Changes the cap on unacknowledged bytes beyond which no fresh record is sent.
    pub fn set_unacked_limit(&mut self, limit: usize) {
        self.unacked_limit = limit;
    }

    /// Whether anything is waiting to be transmitted.
    pub fn wants_transmit(&self) -> bool {
        self.connected && (!self.control.is_empty() || self.may_send_next())
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
