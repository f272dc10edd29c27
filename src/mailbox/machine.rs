//! The mailbox client as a sans-IO state machine.
//!
//! It is fed connection events, server frames and commands, each with an explicit `now`, and
//! polled for [`Action`]s (connect, send a frame, disconnect) and [`MailboxEvent`]s. It owns the
//! reconnection rules of the Python client (reference §1.7), with a shorter backoff
//! (`min(0.25 s * 1.5^n, 0.75 s) + [0, 0.25) s`, so a server that returns is found within a
//! second; Python: `min(1.5^n, 60) s + [0, 1) s`) and a liveness check (a `ping` after
//! [`MAILBOX_LIVENESS`]/2 without a frame, the connection abandoned after [`MAILBOX_LIVENESS`]:
//! a silent network never leaves us on a dead socket), re-bind, re-claim, re-release, re-open, re-send every `add` not yet echoed, re-close; and it
//! delivers each peer phase once however often the server replays the mailbox.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::messages::{parse, ClientMessage, ServerMessage};

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a new WebSocket to the server, then report `connection_made` or `connection_failed`.
    Connect,
    /// Send this text frame on the current connection.
    Send(String),
    /// Close the connection for good: the session is over.
    Disconnect,
    /// Drop the current connection without a closing handshake (it went silent); a
    /// `Connect` follows after the backoff.
    Abandon,
}

/// A connection over which no frame arrived for this long is abandoned and replaced.
pub const MAILBOX_LIVENESS: Duration = Duration::from_secs(10);
/// How long a reconnection attempt may take (the first connection: the caller's limit).
pub const RECONNECT_LIMIT: Duration = Duration::from_secs(3);
/// The `ping` value of our liveness pings; its `pong` is not reported.
const LIVENESS_PING: i64 = -0x666f776c;

/// Something that happened, for the layer above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxEvent {
    Connected,
    /// The connection dropped; the next attempt starts at `retry_at`.
    Disconnected {
        retry_at: Instant,
    },
    /// The very first connection failed: the session cannot start.
    ConnectFailed(String),
    Welcome {
        motd: Option<String>,
        /// The server's whole welcome object.
        welcome: serde_json::Value,
    },
    /// The server's welcome carried an `error`: it refuses service.
    WelcomeError(String),
    Allocated(String),
    Nameplates(Vec<String>),
    Claimed(String),
    Released,
    PeerMessage {
        side: String,
        phase: String,
        body: Vec<u8>,
    },
    Pong(i64),
    ServerError(String),
    /// `close` completed (and the nameplate was released): the connection is being dropped.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    Idle,
    Connecting,
    Connected,
    Waiting(Instant),
    Stopped,
}

#[derive(Debug)]
struct Nameplate {
    id: String,
    claimed: bool,
    release_wanted: bool,
    released: bool,
}

/// Backoff before reconnect attempt `attempt` (0-based), without jitter.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs_f64((0.25 * 1.5f64.powi(attempt.min(64) as i32)).min(0.75))
}

/// The sans-IO mailbox client.
pub struct MailboxClient {
    appid: String,
    side: String,
    conn: Conn,
    /// While connected: when the last frame arrived, and whether we pinged since.
    last_heard: Instant,
    pinged: bool,
    ever_connected: bool,
    attempt: u32,
    rng: StdRng,
    next_id: u16,
    allocate_wanted: bool,
    list_wanted: bool,
    nameplate: Option<Nameplate>,
    mailbox: Option<String>,
    pending_adds: Vec<(String, Vec<u8>)>,
    close_mood: Option<String>,
    closed: bool,
    /// Named peer phases already delivered (see [`MailboxClient::fresh_phase`]).
    processed: HashSet<String>,
    actions: VecDeque<Action>,
    events: VecDeque<MailboxEvent>,
}

/// Named (not numbered) peer phases remembered as delivered; more are ignored. The protocol has
/// two (`pake`, `version`).
const MAX_NAMED_PHASES: usize = 64;

/// A numbered phase (`N` or `dilate-N`): its duplicates are dropped by the wormhole's in-order
/// delivery, so the client need not remember it (a session that lives for months receives
/// many).
fn numbered(phase: &str) -> bool {
    let n = phase.strip_prefix("dilate-").unwrap_or(phase);
    !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
}

impl MailboxClient {
    /// Whether a peer message in `phase` is to be delivered: numbered phases always (the
    /// wormhole drops their repeats), a named one the first time only; at most
    /// [`MAX_NAMED_PHASES`] names are remembered, further ones are ignored.
    fn fresh_phase(&mut self, phase: &str) -> bool {
        if numbered(phase) {
            return true;
        }
        if self.processed.contains(phase) {
            return false;
        }
        if self.processed.len() >= MAX_NAMED_PHASES {
            tracing::debug!("ignoring the peer's phase {phase:?}: too many named phases");
            return false;
        }
        self.processed.insert(phase.to_owned())
    }

    /// A client for `appid` with mailbox side `side`; `seed` feeds message ids and jitter.
    pub fn new(appid: &str, side: &str, seed: u64) -> MailboxClient {
        let mut rng = StdRng::seed_from_u64(seed);
        let next_id = rng.gen();
        MailboxClient {
            appid: appid.into(),
            side: side.into(),
            conn: Conn::Idle,
            last_heard: Instant::now(),
            pinged: false,
            ever_connected: false,
            attempt: 0,
            rng,
            next_id,
            allocate_wanted: false,
            list_wanted: false,
            nameplate: None,
            mailbox: None,
            pending_adds: Vec::new(),
            close_mood: None,
            closed: false,
            processed: HashSet::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// A fresh random mailbox side: 10 lowercase hex characters.
    pub fn random_side() -> String {
        hex::encode(rand::random::<[u8; 5]>())
    }

    pub fn side(&self) -> &str {
        &self.side
    }

    pub fn is_connected(&self) -> bool {
        self.conn == Conn::Connected
    }

    pub fn is_stopped(&self) -> bool {
        self.conn == Conn::Stopped
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<MailboxEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.conn {
            Conn::Waiting(at) => Some(at),
            Conn::Connected if self.pinged => Some(self.last_heard + MAILBOX_LIVENESS),
            Conn::Connected => Some(self.last_heard + MAILBOX_LIVENESS / 2),
            _ => None,
        }
    }

    /// How long the next connection attempt may take: `None` for the first one (the caller's
    /// limit), [`RECONNECT_LIMIT`] after that.
    pub fn connect_limit(&self) -> Option<Duration> {
        self.ever_connected.then_some(RECONNECT_LIMIT)
    }

    /// A frame arrived at `now` (call before [`MailboxClient::received`]).
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = self.last_heard.max(now);
        self.pinged = false;
    }

    // ---- connection lifecycle -------------------------------------------------------------

    /// Starts the first connection.
    pub fn start(&mut self) {
        if self.conn == Conn::Idle {
            self.conn = Conn::Connecting;
            self.actions.push_back(Action::Connect);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.conn {
            Conn::Waiting(at) if now >= at => {
                self.conn = Conn::Connecting;
                self.actions.push_back(Action::Connect);
            }
            Conn::Connected if now >= self.last_heard + MAILBOX_LIVENESS => {
                tracing::info!(
                    "mailbox connection silent for {:?}: replacing it",
                    now - self.last_heard
                );
                self.actions.push_back(Action::Abandon);
                self.schedule_retry(now);
            }
            Conn::Connected if !self.pinged && now >= self.last_heard + MAILBOX_LIVENESS / 2 => {
                self.pinged = true;
                self.send(ClientMessage::Ping {
                    ping: LIVENESS_PING,
                });
            }
            _ => {}
        }
    }

    pub fn connection_made(&mut self, now: Instant) {
        if self.conn != Conn::Connecting {
            // stopped meanwhile: drop the new connection at once
            self.actions.push_back(Action::Disconnect);
            return;
        }
        self.conn = Conn::Connected;
        self.last_heard = now;
        self.pinged = false;
        self.ever_connected = true;
        self.attempt = 0;
        self.events.push_back(MailboxEvent::Connected);
        self.send(ClientMessage::Bind {
            appid: self.appid.clone(),
            side: self.side.clone(),
        });
        if self.allocate_wanted {
            self.send(ClientMessage::Allocate);
        }
        if self.list_wanted {
            self.send(ClientMessage::List);
        }
        if let Some(np) = &self.nameplate {
            if !np.claimed {
                self.send(ClientMessage::Claim {
                    nameplate: np.id.clone(),
                });
            } else if np.release_wanted && !np.released {
                self.send(ClientMessage::Release {
                    nameplate: np.id.clone(),
                });
            }
        }
        if self.mailbox.is_some() {
            self.open_and_flush();
        }
    }

    pub fn connection_failed(&mut self, now: Instant, reason: &str) {
        if self.conn != Conn::Connecting {
            return;
        }
        if !self.ever_connected {
            self.conn = Conn::Stopped;
            self.events
                .push_back(MailboxEvent::ConnectFailed(reason.into()));
            return;
        }
        self.schedule_retry(now);
    }

    pub fn connection_lost(&mut self, now: Instant) {
        if self.conn != Conn::Connected {
            return;
        }
        self.schedule_retry(now);
    }

    fn schedule_retry(&mut self, now: Instant) {
        let jitter = Duration::from_secs_f64(self.rng.gen::<f64>() * 0.25);
        let retry_at = now + backoff(self.attempt) + jitter;
        self.attempt = self.attempt.saturating_add(1);
        self.conn = Conn::Waiting(retry_at);
        self.events
            .push_back(MailboxEvent::Disconnected { retry_at });
    }

    /// Gives up at once (e.g. the layer above timed out waiting for `closed`).
    pub fn stop(&mut self) {
        if self.conn != Conn::Stopped {
            if matches!(self.conn, Conn::Connected | Conn::Connecting) {
                self.actions.push_back(Action::Disconnect);
            }
            self.conn = Conn::Stopped;
        }
    }

    // ---- commands ---------------------------------------------------------------------------

    pub fn allocate(&mut self) {
        if !self.allocate_wanted {
            self.allocate_wanted = true;
            self.send_if_connected(ClientMessage::Allocate);
        }
    }

    pub fn list(&mut self) {
        self.list_wanted = true;
        self.send_if_connected(ClientMessage::List);
    }

    pub fn ping(&mut self, ping: i64) {
        self.send_if_connected(ClientMessage::Ping { ping });
    }

    /// Claims `nameplate` (once); the mailbox is opened when the server answers `claimed`.
    pub fn claim(&mut self, nameplate: &str) {
        if self.nameplate.is_some() {
            return;
        }
        self.nameplate = Some(Nameplate {
            id: nameplate.into(),
            claimed: false,
            release_wanted: false,
            released: false,
        });
        self.send_if_connected(ClientMessage::Claim {
            nameplate: nameplate.into(),
        });
    }

    /// Opens `mailbox` directly, without a nameplate (a rendezvous both peers derived from a
    /// shared secret); ignored once a mailbox is known.
    pub fn open(&mut self, mailbox: &str) {
        if self.mailbox.is_some() || self.nameplate.is_some() {
            return;
        }
        self.mailbox = Some(mailbox.into());
        if self.is_connected() {
            self.open_and_flush();
        }
    }

    /// Releases the nameplate (once), as soon as it is claimed.
    pub fn release(&mut self) {
        let Some(np) = self.nameplate.as_mut() else {
            return;
        };
        if np.release_wanted {
            return;
        }
        np.release_wanted = true;
        if np.claimed {
            let msg = ClientMessage::Release {
                nameplate: np.id.clone(),
            };
            self.send_if_connected(msg);
        }
    }

    /// Adds a message to the mailbox; kept and re-sent until the server echoes it back.
    pub fn add(&mut self, phase: &str, body: Vec<u8>) {
        self.pending_adds.push((phase.into(), body.clone()));
        if self.mailbox.is_some() {
            self.send_if_connected(ClientMessage::Add {
                phase: phase.into(),
                body,
            });
        }
    }

    /// Closes the mailbox with `mood`, releasing the nameplate first; `Closed` follows when the
    /// server confirmed both, then the connection is dropped.
    pub fn close(&mut self, mood: &str) {
        if self.close_mood.is_some() || self.conn == Conn::Stopped {
            return;
        }
        self.close_mood = Some(mood.into());
        if self.nameplate.as_ref().is_some_and(|np| np.claimed) {
            self.release();
        }
        if let Some(mailbox) = self.mailbox.clone() {
            self.send_if_connected(ClientMessage::Close {
                mailbox,
                mood: mood.into(),
            });
        }
        self.check_close_done();
    }

    // ---- server input -----------------------------------------------------------------------

    /// Handles one text frame from the server. Frames that do not parse are logged and ignored.
    pub fn received(&mut self, frame: &str) {
        tracing::trace!("mailbox received {frame}");
        let msg = match parse(frame) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::warn!("ignoring mailbox server frame: {e}");
                return;
            }
        };
        match msg {
            ServerMessage::Welcome(w) => match w.error {
                Some(error) => self.events.push_back(MailboxEvent::WelcomeError(error)),
                None => self.events.push_back(MailboxEvent::Welcome {
                    motd: w.motd,
                    welcome: w.raw,
                }),
            },
            ServerMessage::Ack => {}
            ServerMessage::Nameplates(list) => {
                self.list_wanted = false;
                self.events.push_back(MailboxEvent::Nameplates(list));
            }
            ServerMessage::Allocated(nameplate) => {
                if self.allocate_wanted && self.nameplate.is_none() {
                    self.allocate_wanted = false;
                    self.events.push_back(MailboxEvent::Allocated(nameplate));
                }
            }
            ServerMessage::Claimed(mailbox) => self.got_claimed(mailbox),
            ServerMessage::Released => {
                if let Some(np) = self.nameplate.as_mut() {
                    if np.release_wanted && !np.released {
                        np.released = true;
                        self.events.push_back(MailboxEvent::Released);
                        self.check_close_done();
                    }
                }
            }
            ServerMessage::Message { side, phase, body } => {
                if side == self.side {
                    if let Some(i) = self.pending_adds.iter().position(|(p, _)| *p == phase) {
                        self.pending_adds.remove(i);
                    }
                } else if self.fresh_phase(&phase) {
                    self.events
                        .push_back(MailboxEvent::PeerMessage { side, phase, body });
                }
            }
            ServerMessage::Closed => {
                if self.close_mood.is_some() && !self.closed {
                    self.closed = true;
                    self.check_close_done();
                }
            }
            ServerMessage::Pong(LIVENESS_PING) => {}
            ServerMessage::Pong(n) => self.events.push_back(MailboxEvent::Pong(n)),
            ServerMessage::Error { error, .. } => {
                self.events.push_back(MailboxEvent::ServerError(error));
            }
            ServerMessage::Unknown(kind) => {
                tracing::debug!("ignoring unknown mailbox message type {kind:?}")
            }
        }
    }

    fn got_claimed(&mut self, mailbox: String) {
        let Some(np) = self.nameplate.as_mut() else {
            return;
        };
        if np.claimed {
            return;
        }
        np.claimed = true;
        let release = np.release_wanted;
        let id = np.id.clone();
        if release {
            self.send_if_connected(ClientMessage::Release { nameplate: id });
        }
        if self.mailbox.is_none() {
            self.mailbox = Some(mailbox.clone());
            self.events.push_back(MailboxEvent::Claimed(mailbox));
            if self.is_connected() {
                self.open_and_flush();
            }
        }
    }

    fn open_and_flush(&mut self) {
        let Some(mailbox) = self.mailbox.clone() else {
            return;
        };
        self.send(ClientMessage::Open {
            mailbox: mailbox.clone(),
        });
        let adds: Vec<_> = self.pending_adds.clone();
        for (phase, body) in adds {
            self.send(ClientMessage::Add { phase, body });
        }
        if let (Some(mood), false) = (self.close_mood.clone(), self.closed) {
            self.send(ClientMessage::Close { mailbox, mood });
        }
    }

    fn check_close_done(&mut self) {
        if self.close_mood.is_none() || self.conn == Conn::Stopped {
            return;
        }
        let nameplate_done = match &self.nameplate {
            None => true,
            // a claim still unanswered is not waited for: the server may never answer it
            Some(np) => np.released || !np.claimed,
        };
        let mailbox_done = self.mailbox.is_none() || self.closed;
        if nameplate_done && mailbox_done {
            self.events.push_back(MailboxEvent::Closed);
            self.stop();
        }
    }

    fn send_if_connected(&mut self, msg: ClientMessage) {
        if self.is_connected() {
            self.send(msg);
        }
    }

    fn send(&mut self, msg: ClientMessage) {
        tracing::trace!("mailbox send {}", msg.kind());
        let id = format!("{:04x}", self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        self.actions.push_back(Action::Send(msg.to_frame(&id)));
    }
}
