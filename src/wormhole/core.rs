//! [`WormholeCore`]: the sans-IO wormhole client (reference §2.6 ordering rules) on top of the
//! sans-IO [`MailboxClient`].

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use serde_json::Value;

use super::{version_message, Mood, WormholeConfig, WormholeError};
use crate::code::Code;
use crate::key::{self, Key, Pake};
use crate::mailbox::{Action, MailboxClient, MailboxEvent};

/// Bound on out-of-order phases buffered per kind (application, Dilation): a peer that skips a
/// phase number cannot make us buffer without limit.
pub const MAX_BUFFERED_PHASES: usize = 1024;

/// What the session tells the application.
#[derive(Debug, Clone, PartialEq)]
pub enum WormholeEvent {
    /// A connection to the mailbox server is up (the first, or a reconnection).
    MailboxConnected,
    /// The connection to the mailbox server dropped; it is retried.
    MailboxDisconnected {
        /// When the next connection attempt starts.
        retry_at: Instant,
    },
    /// The server's message of the day.
    Welcome {
        /// The welcome's `motd`, if it has one.
        motd: Option<String>,
        /// The server's whole welcome object.
        welcome: Value,
    },
    /// `allocate_code` finished: tell this code to the peer.
    CodeAllocated(String),
    /// The nameplates in use on the server, answering
    /// [`list_nameplates`](WormholeCore::list_nameplates).
    Nameplates(Vec<String>),
    /// The first peer message decrypted: the key is confirmed; compare the verifier.
    /// `dilation_key` is the Noise PSK of the Dilation layer.
    KeyConfirmed {
        /// The verifier both users can compare (see [`key::verifier`]).
        verifier: Key,
        /// The Noise PSK of the Dilation layer (see [`key::dilation_key`]).
        dilation_key: Key,
        /// The session key itself: derive keys of your own from it with [`key::derive_key`]
        /// and a purpose no one else uses (Python's `derive_key`).
        key: Key,
    },
    /// The peer's `version` phase.
    PeerVersions {
        /// The peer's `app_versions` (its own JSON; `{}` if it sent none).
        app_versions: Value,
        /// The Dilation versions the peer offers (its `can-dilate` list; empty if none).
        can_dilate: Vec<String>,
    },
    /// An application message, in order, once.
    Message(Vec<u8>),
    /// A `dilate-N` payload, in order, once: for the Dilation layer.
    Dilate(Vec<u8>),
    /// The server's `pong` to [`ping`](WormholeCore::ping) with this number.
    Pong(i64),
    /// The session is over; nothing follows.
    Closed(Result<Mood, WormholeError>),
}

/// The sans-IO wormhole client.
pub struct WormholeCore {
    config: WormholeConfig,
    mailbox: MailboxClient,
    num_words: usize,
    code: Option<Code>,
    pake: Option<Pake>,
    peer_pake: Option<Vec<u8>>,
    key: Option<Key>,
    seen_peer: bool,
    confirmed: bool,
    waiting_for_key: Vec<(String, String, Vec<u8>)>,
    unconfirmed_out: Vec<(String, Vec<u8>)>,
    next_out: [u64; 2],
    next_in: [u64; 2],
    buffered_in: [BTreeMap<u64, Vec<u8>>; 2],
    outcome: Option<Result<Mood, WormholeError>>,
    close_deadline: Option<Instant>,
    done: bool,
    events: VecDeque<WormholeEvent>,
}

const APP: usize = 0;
const DILATE: usize = 1;

impl WormholeCore {
    /// A session for `config`, with mailbox side `side` (16 hex digits; `Wormhole` picks one at random).
    pub fn new(config: WormholeConfig, side: &str, seed: u64) -> WormholeCore {
        let mailbox = MailboxClient::new(&config.appid, side, seed);
        WormholeCore {
            config,
            mailbox,
            num_words: 2,
            code: None,
            pake: None,
            peer_pake: None,
            key: None,
            seen_peer: false,
            confirmed: false,
            waiting_for_key: Vec::new(),
            unconfirmed_out: Vec::new(),
            next_out: [0; 2],
            next_in: [0; 2],
            buffered_in: [BTreeMap::new(), BTreeMap::new()],
            outcome: None,
            close_deadline: None,
            done: false,
            events: VecDeque::new(),
        }
    }

    /// Our mailbox side.
    pub fn side(&self) -> &str {
        self.mailbox.side()
    }

    /// The code, once allocated or set.
    pub fn code(&self) -> Option<&str> {
        self.code.as_ref().map(Code::as_str)
    }

    /// The shared key once the peer's pake arrived (confirmed only after `KeyConfirmed`).
    pub fn key(&self) -> Option<&Key> {
        self.key.as_ref()
    }

    /// Whether the session is over (`Closed` was queued).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether a close (by the application or a failure) is under way.
    pub fn is_closing(&self) -> bool {
        self.outcome.is_some()
    }

    /// The next thing the driver must do with the mailbox connection.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.mailbox.poll_action()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<WormholeEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.mailbox.poll_timeout(), self.close_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    // ---- I/O inputs -------------------------------------------------------------------------

    /// Starts the first connection to the mailbox server.
    pub fn start(&mut self) {
        self.mailbox.start();
    }

    /// How long the next connection attempt may take: `None` for the first (the caller's
    /// limit), a short one for reconnections.
    pub fn connect_limit(&self) -> Option<std::time::Duration> {
        self.mailbox.connect_limit()
    }

    /// The driver's connection to the mailbox server is up.
    pub fn connection_made(&mut self, now: Instant) {
        self.mailbox.connection_made(now);
        self.pump(now);
    }

    /// A connection attempt failed; the very first failing ends the session.
    pub fn connection_failed(&mut self, now: Instant, reason: &str) {
        self.mailbox.connection_failed(now, reason);
        self.pump(now);
    }

    /// The connection to the mailbox server dropped; a reconnection is scheduled.
    pub fn connection_lost(&mut self, now: Instant) {
        self.mailbox.connection_lost(now);
        self.pump(now);
    }

    /// One text frame from the mailbox server.
    pub fn received(&mut self, now: Instant, frame: &str) {
        self.mailbox.heard(now);
        self.mailbox.received(frame);
        self.pump(now);
    }

    /// Time has reached [`poll_timeout`](Self::poll_timeout): retries a connection, or gives
    /// up on a close the server did not confirm.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.close_deadline.is_some_and(|d| now >= d) {
            tracing::warn!("mailbox server did not confirm close in time; closing anyway");
            self.mailbox.stop();
            self.finish();
            return;
        }
        self.mailbox.handle_timeout(now);
        self.pump(now);
    }

    // ---- application commands ---------------------------------------------------------------

    /// Asks the server for a nameplate and builds a code of `num_words` words on it.
    pub fn allocate_code(&mut self, num_words: usize, now: Instant) {
        if self.code.is_none() && !self.is_closing() {
            self.num_words = num_words.max(1);
            self.mailbox.allocate();
            self.pump(now);
        }
    }

    /// Uses a code the user typed or received.
    pub fn set_code(&mut self, code: &str, now: Instant) -> Result<(), WormholeError> {
        let code = Code::parse(code)?;
        if self.code.is_some() {
            return Err(WormholeError::Peer("a code is already set".into()));
        }
        self.got_code(now, code);
        self.pump(now);
        Ok(())
    }

    /// Meets the peer in `mailbox`, opened directly (no nameplate, no code), with `password`
    /// for SPAKE2: a rendezvous both peers derived from a secret they share (remembered peers,
    /// see `protocol/remember.md`). The password must carry full entropy: it is not a code.
    pub fn set_rendezvous(
        &mut self,
        mailbox: &str,
        password: &str,
        now: Instant,
    ) -> Result<(), WormholeError> {
        if self.code.is_some() || self.pake.is_some() || self.key.is_some() {
            return Err(WormholeError::Peer("a code is already set".into()));
        }
        self.mailbox.open(mailbox);
        self.start_pake(now, password);
        self.pump(now);
        Ok(())
    }

    /// Asks the server for its nameplates; the answer comes as [`WormholeEvent::Nameplates`].
    pub fn list_nameplates(&mut self) {
        self.mailbox.list();
    }

    /// Pings the mailbox server with `n`; the answer comes as [`WormholeEvent::Pong`].
    pub fn ping(&mut self, n: i64) {
        self.mailbox.ping(n);
    }

    /// Sends the next application message (phases "0", "1", ...).
    pub fn send_message(&mut self, plaintext: Vec<u8>) {
        self.send_phase(APP, plaintext);
    }

    /// Sends the next Dilation message (phases "dilate-0", "dilate-1", ...).
    pub fn send_dilate(&mut self, plaintext: Vec<u8>) {
        self.send_phase(DILATE, plaintext);
    }

    /// Ends the session: `happy` once the key was confirmed, `lonely` before.
    pub fn close(&mut self, now: Instant) {
        let mood = if self.confirmed {
            Mood::Happy
        } else {
            Mood::Lonely
        };
        self.start_close(now, Ok(mood));
        self.pump(now);
    }

    // ---- internals --------------------------------------------------------------------------

    fn send_phase(&mut self, kind: usize, plaintext: Vec<u8>) {
        if self.is_closing() {
            return;
        }
        let n = self.next_out[kind];
        self.next_out[kind] += 1;
        let phase = if kind == APP {
            n.to_string()
        } else {
            format!("dilate-{n}")
        };
        if self.confirmed {
            self.add_encrypted(&phase, &plaintext);
        } else {
            self.unconfirmed_out.push((phase, plaintext));
        }
    }

    fn add_encrypted(&mut self, phase: &str, plaintext: &[u8]) {
        let key = self
            .key
            .expect("encrypted phases are sent only once the key exists");
        let phase_key = key::derive_phase_key(&key, self.mailbox.side(), phase);
        self.mailbox.add(phase, key::encrypt(&phase_key, plaintext));
    }

    fn got_code(&mut self, now: Instant, code: Code) {
        self.mailbox.claim(code.nameplate());
        let password = code.as_str().to_owned();
        self.code = Some(code);
        self.start_pake(now, &password);
    }

    fn start_pake(&mut self, now: Instant, password: &str) {
        let pake = Pake::start(password, &self.config.appid);
        self.mailbox.add("pake", pake.body().to_vec());
        self.pake = Some(pake);
        if let Some(body) = self.peer_pake.take() {
            self.finish_pake(now, &body);
        }
    }

    fn pump(&mut self, now: Instant) {
        while let Some(event) = self.mailbox.poll_event() {
            self.handle_mailbox_event(now, event);
        }
    }

    fn handle_mailbox_event(&mut self, now: Instant, event: MailboxEvent) {
        match event {
            MailboxEvent::Connected => self.events.push_back(WormholeEvent::MailboxConnected),
            MailboxEvent::Disconnected { retry_at } => self
                .events
                .push_back(WormholeEvent::MailboxDisconnected { retry_at }),
            MailboxEvent::ConnectFailed(reason) => {
                let url = self.config.mailbox_url.clone();
                self.outcome = Some(Err(WormholeError::ServerConnection { url, reason }));
                self.finish();
            }
            MailboxEvent::Welcome { motd, welcome } => self
                .events
                .push_back(WormholeEvent::Welcome { motd, welcome }),
            MailboxEvent::WelcomeError(message) => {
                let url = self.config.mailbox_url.clone();
                self.fail(now, WormholeError::Unwelcome { url, message });
            }
            MailboxEvent::Allocated(nameplate) => {
                if self.code.is_none() {
                    let code = Code::generate(&nameplate, self.num_words, &mut rand::thread_rng());
                    self.events
                        .push_back(WormholeEvent::CodeAllocated(code.to_string()));
                    self.got_code(now, code);
                }
            }
            MailboxEvent::Nameplates(list) => {
                self.events.push_back(WormholeEvent::Nameplates(list))
            }
            MailboxEvent::Claimed(_) | MailboxEvent::Released => {}
            MailboxEvent::PeerMessage { side, phase, body } => {
                self.peer_message(now, side, phase, body)
            }
            MailboxEvent::Pong(n) => self.events.push_back(WormholeEvent::Pong(n)),
            MailboxEvent::ServerError(error) => self.fail(now, WormholeError::Server(error)),
            MailboxEvent::Closed => self.finish(),
        }
    }

    fn peer_message(&mut self, now: Instant, side: String, phase: String, body: Vec<u8>) {
        if self.is_closing() {
            return;
        }
        if !self.seen_peer {
            self.seen_peer = true;
            self.mailbox.release();
        }
        if phase == "pake" {
            match self.pake.is_some() {
                true => self.finish_pake(now, &body),
                false => self.peer_pake = Some(body),
            }
            return;
        }
        if self.key.is_none() {
            self.waiting_for_key.push((side, phase, body));
            return;
        }
        self.decrypt_and_deliver(now, &side, &phase, &body);
    }

    fn finish_pake(&mut self, now: Instant, body: &[u8]) {
        let Some(pake) = self.pake.take() else { return };
        match pake.finish(body) {
            Ok(key) => {
                self.key = Some(key);
                let version = version_message(&self.config.app_versions, self.config.dilation);
                self.add_encrypted("version", &version);
                for (side, phase, body) in std::mem::take(&mut self.waiting_for_key) {
                    self.decrypt_and_deliver(now, &side, &phase, &body);
                }
            }
            Err(e) => self.fail(now, e.into()),
        }
    }

    fn decrypt_and_deliver(&mut self, now: Instant, side: &str, phase: &str, body: &[u8]) {
        if self.is_closing() {
            return;
        }
        let Some(key) = self.key else { return };
        let plaintext = match key::decrypt(&key::derive_phase_key(&key, side, phase), body) {
            Ok(p) => p,
            Err(_) => return self.fail(now, WormholeError::WrongCode),
        };
        if !self.confirmed {
            self.confirmed = true;
            self.events.push_back(WormholeEvent::KeyConfirmed {
                verifier: key::verifier(&key),
                dilation_key: key::dilation_key(&key),
                key,
            });
            for (phase, plaintext) in std::mem::take(&mut self.unconfirmed_out) {
                self.add_encrypted(&phase, &plaintext);
            }
        }
        if phase == "version" {
            self.got_version(now, &plaintext);
        } else if let Some(n) = numeric(phase) {
            self.deliver_in_order(now, APP, n, plaintext);
        } else if let Some(n) = phase.strip_prefix("dilate-").and_then(numeric) {
            self.deliver_in_order(now, DILATE, n, plaintext);
        } else {
            tracing::debug!("ignoring unknown phase {phase:?}");
        }
    }

    fn got_version(&mut self, now: Instant, plaintext: &[u8]) {
        let (app_versions, can_dilate) = match parse_version(plaintext) {
            Ok(parsed) => parsed,
            Err(e) => return self.fail(now, e),
        };
        self.events.push_back(WormholeEvent::PeerVersions {
            app_versions,
            can_dilate,
        });
    }

    fn deliver_in_order(&mut self, now: Instant, kind: usize, n: u64, plaintext: Vec<u8>) {
        if n < self.next_in[kind] {
            return;
        }
        if self.buffered_in[kind].len() >= MAX_BUFFERED_PHASES {
            return self.fail(
                now,
                WormholeError::Peer("too many out-of-order phases".into()),
            );
        }
        self.buffered_in[kind].insert(n, plaintext);
        while let Some(p) = self.buffered_in[kind].remove(&self.next_in[kind]) {
            self.next_in[kind] += 1;
            self.events.push_back(if kind == APP {
                WormholeEvent::Message(p)
            } else {
                WormholeEvent::Dilate(p)
            });
        }
    }

    fn fail(&mut self, now: Instant, error: WormholeError) {
        tracing::info!("wormhole session failed: {error}"); // the interface reports it
        self.start_close(now, Err(error));
    }

    fn start_close(&mut self, now: Instant, outcome: Result<Mood, WormholeError>) {
        if self.outcome.is_some() || self.done {
            return;
        }
        let mood = match &outcome {
            Ok(mood) => *mood,
            Err(e) => e.mood(),
        };
        self.outcome = Some(outcome);
        if self.mailbox.is_stopped() {
            return self.finish();
        }
        self.close_deadline = Some(now + self.config.close_timeout);
        self.mailbox.close(mood.as_str());
        self.pump(now);
    }

    fn finish(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        self.close_deadline = None;
        self.mailbox.stop();
        let outcome = self
            .outcome
            .take()
            .unwrap_or(Err(WormholeError::SessionClosed));
        self.events.push_back(WormholeEvent::Closed(outcome));
    }
}

fn numeric(phase: &str) -> Option<u64> {
    if phase.is_empty() || !phase.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    phase.parse().ok()
}

/// The peer's `version` phase: its `app_versions` (an empty object when absent) and the Dilation
/// versions of its `can-dilate`.
pub(crate) fn parse_version(plaintext: &[u8]) -> Result<(Value, Vec<String>), WormholeError> {
    let value: Value = match serde_json::from_slice(plaintext) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return Err(WormholeError::Peer(
                "version message is not a JSON object".into(),
            ))
        }
    };
    let app_versions = value
        .get("app_versions")
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    let can_dilate = value
        .get("can-dilate")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok((app_versions, can_dilate))
}
