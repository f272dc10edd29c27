//! [`Remembering`]: the sans-IO agreement to remember a peer (both ask, both store, both
//! confirm) and the rotation after a reconnection.

use std::collections::VecDeque;

use serde_json::{json, Value};

use super::{peer_can_remember, Generation, PeerFile, Secret};

/// A message of the agreement, sent as a wormhole application message (a JSON object under the
/// key `remember`, see `protocol/remember.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RememberMessage {
    /// `{"remember": {"offer": 1}}`: the sender's user asked to remember this session.
    Offer,
    /// `{"remember": {"stored": N}}`: the sender stored generation N.
    Stored(u64),
}

impl RememberMessage {
    /// The message in an application message, or `None` when it is not one of ours.
    pub fn parse(bytes: &[u8]) -> Option<RememberMessage> {
        let value: Value = serde_json::from_slice(bytes).ok()?;
        let body = value.as_object()?.get("remember")?.as_object()?;
        if body.get("offer").and_then(Value::as_u64) == Some(1) {
            return Some(RememberMessage::Offer);
        }
        body.get("stored")
            .and_then(Value::as_u64)
            .map(RememberMessage::Stored)
    }

    /// Its bytes.
    pub fn to_bytes(self) -> Vec<u8> {
        let value = match self {
            RememberMessage::Offer => json!({"remember": {"offer": 1}}),
            RememberMessage::Stored(n) => json!({"remember": {"stored": n}}),
        };
        value.to_string().into_bytes()
    }
}

/// What the user is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RememberReport {
    /// The peer asked to remember this session: ask too to agree.
    PeerAsked,
    /// We asked, but the peer cannot remember peers (not this project, or an older version).
    PeerCannot {
        /// Our name for the peer.
        name: String,
    },
    /// Our file holds a new generation; the peer's confirmation is awaited.
    Stored {
        /// Our name for the peer.
        name: String,
        /// The generation stored.
        generation: u64,
    },
    /// The peer confirmed: both hold this generation; `fowl connect NAME` uses it.
    Remembered {
        /// Our name for the peer.
        name: String,
        /// The generation both hold.
        generation: u64,
    },
    /// The session ends and the peer is not remembered (why).
    NotRemembered {
        /// Our name for the peer.
        name: String,
        /// Why not.
        reason: String,
    },
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum RememberAction {
    /// Write this file (atomically); when that fails, call
    /// [`Remembering::handle_save_failed`] and skip the actions queued after it.
    Save(PeerFile),
    /// Send this application message to the peer.
    Send(RememberMessage),
    /// Tell the user.
    Report(RememberReport),
}

/// Where the session met its peer: stored in a new pairing's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meeting {
    /// The mailbox server's URL.
    pub mailbox_url: String,
    /// The application id.
    pub appid: String,
    /// The transit relay (`tcp:HOST:PORT`), if any.
    pub relay: Option<String>,
}

enum Mode {
    /// A session met with a code: remembered once both ask.
    Pairing {
        meeting: Meeting,
        asked: Option<String>,
        peer_asked: bool,
        offer_sent: bool,
    },
    /// A session met by name at generation `used`: the secret rotates.
    Reconnect { used: Generation },
}

/// The agreement of one session. Feed it the user's request, the key and the peer's messages;
/// poll its actions.
pub struct Remembering {
    mode: Mode,
    /// Set once the key is confirmed: the next secret and whether the peer can remember.
    keyed: Option<(Secret, bool)>,
    file: Option<PeerFile>,
    peer_stored: Option<u64>,
    stored: bool,
    confirmed: bool,
    failed: bool,
    actions: VecDeque<RememberAction>,
}

impl Remembering {
    /// A session met with a code (nothing is stored unless both ask).
    pub fn pairing(meeting: Meeting) -> Remembering {
        Remembering::with(Mode::Pairing {
            meeting,
            asked: None,
            peer_asked: false,
            offer_sent: false,
        })
    }

    /// A session that met by name, at generation `used` of `file`.
    pub fn reconnect(file: PeerFile, used: Generation) -> Remembering {
        let mut r = Remembering::with(Mode::Reconnect { used });
        r.file = Some(file);
        r
    }

    fn with(mode: Mode) -> Remembering {
        Remembering {
            mode,
            keyed: None,
            file: None,
            peer_stored: None,
            stored: false,
            confirmed: false,
            failed: false,
            actions: VecDeque::new(),
        }
    }

    /// The name asked for (pairing) or met by (reconnect), if any.
    pub fn name(&self) -> Option<&str> {
        match &self.mode {
            Mode::Pairing { asked, .. } => asked.as_deref(),
            Mode::Reconnect { .. } => self.file.as_ref().map(|f| f.name.as_str()),
        }
    }

    /// The next action.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<RememberAction> {
        self.actions.pop_front()
    }

    /// The user asks to remember the peer as `name` (checked by the caller: valid, not taken).
    pub fn handle_request(&mut self, name: &str, now: u64) {
        if let Mode::Pairing { asked, .. } = &mut self.mode {
            if asked.is_none() {
                *asked = Some(name.into());
                self.progress(now);
            }
        }
    }

    /// The key is confirmed and the peer's `app_versions` are known; `next` is the secret this
    /// session's key gives ([`Secret::from_session_key`]).
    pub fn handle_keyed(&mut self, next: Secret, peer_versions: &Value, now: u64) {
        if self.keyed.is_none() {
            self.keyed = Some((next, peer_can_remember(peer_versions)));
            self.progress(now);
        }
    }

    /// An application message of the peer (others than ours are ignored).
    pub fn handle_message(&mut self, message: RememberMessage, now: u64) {
        match message {
            RememberMessage::Offer => {
                if let Mode::Pairing {
                    peer_asked, asked, ..
                } = &mut self.mode
                {
                    if !*peer_asked {
                        *peer_asked = true;
                        if asked.is_none() {
                            self.report(RememberReport::PeerAsked);
                        }
                    }
                }
            }
            RememberMessage::Stored(n) => self.peer_stored = Some(n),
        }
        self.progress(now);
    }

    /// A [`RememberAction::Save`] failed: nothing more is done (the error is the driver's to
    /// report), and what was queued after it is dropped.
    pub fn handle_save_failed(&mut self) {
        self.failed = true;
        self.actions.clear();
    }

    /// The session is closing: reports a pairing that did not complete.
    pub fn handle_close(&mut self) {
        if self.failed || self.confirmed {
            return;
        }
        let Mode::Pairing {
            asked: Some(name),
            peer_asked,
            ..
        } = &self.mode
        else {
            return;
        };
        let can = self.keyed.is_some_and(|(_, can)| can);
        let reason = if self.keyed.is_none() {
            "the session ended before the peer was met"
        } else if !can {
            "the peer cannot remember peers"
        } else if !peer_asked {
            "the peer did not ask to remember this session"
        } else {
            "the peer's confirmation did not arrive (the unconfirmed secret is kept; `fowl connect` \
             meets the peer only if it stored it too)"
        };
        let report = RememberReport::NotRemembered {
            name: name.clone(),
            reason: reason.into(),
        };
        self.report(report);
    }

    fn report(&mut self, report: RememberReport) {
        self.actions.push_back(RememberAction::Report(report));
    }

    fn progress(&mut self, now: u64) {
        if self.failed {
            return;
        }
        let Some((next, peer_can)) = self.keyed else {
            return;
        };
        if !self.stored {
            self.store(next, peer_can, now);
        }
        self.confirm();
    }

    fn store(&mut self, next: Secret, peer_can: bool, now: u64) {
        match &mut self.mode {
            Mode::Reconnect { used } => {
                let used = *used;
                let Some(file) = self.file.as_mut() else {
                    return;
                };
                file.met(used, next, now);
                let (name, file) = (file.name.clone(), file.clone());
                self.stored(file, name, used.number + 1);
            }
            Mode::Pairing {
                meeting,
                asked: Some(name),
                peer_asked,
                offer_sent,
            } => {
                if !peer_can {
                    if !*offer_sent {
                        *offer_sent = true; // reported once
                        let name = name.clone();
                        self.report(RememberReport::PeerCannot { name });
                    }
                    return;
                }
                if !*offer_sent {
                    *offer_sent = true;
                    self.actions
                        .push_back(RememberAction::Send(RememberMessage::Offer));
                }
                if *peer_asked {
                    let file = PeerFile::new(
                        name,
                        &meeting.mailbox_url,
                        &meeting.appid,
                        meeting.relay.clone(),
                        next,
                        now,
                    );
                    let name = name.clone();
                    self.file = Some(file.clone());
                    self.stored(file, name, 1);
                }
            }
            Mode::Pairing { asked: None, .. } => {}
        }
    }

    fn stored(&mut self, file: PeerFile, name: String, generation: u64) {
        self.stored = true;
        self.actions.push_back(RememberAction::Save(file));
        self.actions
            .push_back(RememberAction::Send(RememberMessage::Stored(generation)));
        self.report(RememberReport::Stored { name, generation });
    }

    fn confirm(&mut self) {
        if self.confirmed {
            return;
        }
        let (Some(file), Some(n)) = (self.file.as_mut(), self.peer_stored) else {
            return;
        };
        if !file.confirmed(n) {
            return;
        }
        self.confirmed = true;
        let file = file.clone();
        let name = file.name.clone();
        self.actions.push_back(RememberAction::Save(file));
        self.report(RememberReport::Remembered {
            name,
            generation: n,
        });
    }
}
