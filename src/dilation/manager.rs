//! The Dilation manager (reference §3.4): roles, generations and the exact L1 message sequences
//! of the Python manager, so that a Python peer never receives an out-of-state message.
//!
//! Our one extension: a Leader whose generation has not connected within `generation_timeout`
//! starts a fresh one (`reconnect`), which the Python Follower accepts while connecting. Python
//! connectors never retry, so this is what rescues a session whose relay was briefly down.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::hints::Hint;
use super::l1::{find_shared_version, L1Message};
use super::l2::Role;

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum ManagerAction {
    /// Send this message as the next `dilate-N` phase.
    Send(L1Message),
    /// Start a connector for a new generation: a fresh listener, our hints (through
    /// [`Manager::send_hints`]), our relay.
    StartConnecting { role: Role, generation: u32 },
    /// Dial these peer hints within the current generation.
    UseHints(Vec<Hint>),
    /// Stop the current connector: pending attempts, candidates and its listener.
    StopConnecting,
    /// Drop the selected connection.
    DropConnection,
    /// Check at once that the selected connection still reaches the peer.
    Probe,
    /// The peer (one of ours) says it lost the connection: drop it.
    PeerLost,
}

/// Status for the layers above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagerEvent {
    /// Roles are known; a generation is connecting.
    Connecting {
        role: Role,
        generation: u32,
    },
    Connected {
        generation: u32,
    },
    /// The connection was lost; a new generation follows.
    Reconnecting {
        generation: u32,
    },
    /// Dilation cannot happen.
    Failed(DilationError),
}

/// Why Dilation, or a subchannel request, failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DilationError {
    /// The peer's `can-dilate` has no version we speak (its versions).
    #[error("the peer cannot dilate (it offers Dilation versions {0:?}, we speak \"ged\")")]
    PeerCannotDilate(Vec<String>),
    /// The peer's `please` carries our own side: our messages come back to us.
    #[error("the peer's Dilation side equals ours: a reflected message")]
    Reflection,
    /// The session ended (or never started).
    #[error("Dilation was stopped")]
    Stopped,
    /// [`Endpoint::open`](super::endpoint::Endpoint::open) with an empty name.
    #[error("a subchannel needs a non-empty subprotocol name")]
    EmptySubprotocol,
    /// `max_subchannels` subchannels are open already.
    #[error("too many subchannels are open")]
    TooManySubchannels,
    /// 2^32 records were sent: no sequence number is left for more.
    #[error("Dilation sequence numbers exhausted")]
    SeqnumsExhausted,
    /// 2^32 generations were used up: no reconnection is possible any more.
    #[error("no Dilation generation number is left")]
    GenerationsExhausted,
}

/// The manager's states (reference §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Before the key is confirmed and the peer's versions are known.
    Waiting,
    /// Our `please` is sent; waiting for the peer's.
    Wanting,
    /// A generation is connecting.
    Connecting,
    /// A connection is selected.
    Connected,
    /// Leader: lost the connection, sent `reconnect`, waits for `reconnecting`.
    Flushing,
    /// Follower: lost the connection, waits for the Leader's `reconnect`.
    Lonely,
    /// Follower: got `reconnect` while connected; dropping the connection.
    Abandoning,
    /// Dilation ended.
    Stopped,
}

pub struct Manager {
    side: String,
    versions: &'static [&'static str],
    role: Option<Role>,
    state: State,
    generation: u32,
    generation_timeout: Duration,
    deadline: Option<Instant>,
    early_please: Option<(String, bool, Option<u32>)>,
    peer_half_close: bool,
    /// Our receive window per subchannel, announced in `please` (our extension).
    window: Option<u32>,
    /// The peer's, from its `please`.
    peer_window: Option<u32>,
    actions: VecDeque<ManagerAction>,
    events: VecDeque<ManagerEvent>,
}

impl Manager {
    pub fn new(side: &str, generation_timeout: Duration) -> Manager {
        Manager {
            side: side.into(),
            versions: crate::wormhole::DILATION_VERSIONS,
            role: None,
            state: State::Waiting,
            generation: 0,
            generation_timeout,
            deadline: None,
            early_please: None,
            peer_half_close: false,
            window: None,
            peer_window: None,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn role(&self) -> Option<Role> {
        self.role
    }

    pub fn side(&self) -> &str {
        &self.side
    }

    /// Announces `window` (bytes per subchannel) in our `please`: per-subchannel flow control
    /// with a peer that announces one too.
    pub fn set_window(&mut self, window: Option<u32>) {
        self.window = window;
    }

    /// The peer's receive window per subchannel, when both announced one (flow control on).
    pub fn peer_window(&self) -> Option<u32> {
        self.window.and(self.peer_window)
    }

    /// Whether the peer announced half-close support in its `please`.
    pub fn peer_half_close(&self) -> bool {
        self.peer_half_close
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    pub fn poll_action(&mut self) -> Option<ManagerAction> {
        self.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ManagerEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// `dilate()` was called and the peer's `version` (its `can-dilate`) is known.
    pub fn start(&mut self, now: Instant, peer_versions: &[String]) {
        if self.state != State::Waiting {
            return;
        }
        let Some(version) = find_shared_version(self.versions, peer_versions) else {
            self.state = State::Stopped;
            self.events
                .push_back(ManagerEvent::Failed(DilationError::PeerCannotDilate(
                    peer_versions.to_vec(),
                )));
            return;
        };
        self.state = State::Wanting;
        self.send(L1Message::Please {
            side: self.side.clone(),
            use_version: Some(version.into()),
            half_close: true,
            window: self.window,
        });
        if let Some((side, half_close, window)) = self.early_please.take() {
            self.peer_half_close = half_close;
            self.peer_window = window;
            self.got_please(now, &side);
        }
    }

    /// A hints list from our connector for the current generation.
    pub fn send_hints(&mut self, hints: Vec<Hint>) {
        if self.state == State::Connecting && !hints.is_empty() {
            self.send(L1Message::ConnectionHints(hints));
        }
    }

    /// A message from the peer, in `dilate-N` order.
    pub fn received(&mut self, now: Instant, msg: L1Message) {
        match (msg, self.state) {
            (
                L1Message::Please {
                    side,
                    half_close,
                    window,
                    ..
                },
                State::Waiting,
            ) => self.early_please = Some((side, half_close, window)),
            (
                L1Message::Please {
                    side,
                    half_close,
                    window,
                    ..
                },
                State::Wanting,
            ) => {
                self.peer_half_close = half_close;
                self.peer_window = window;
                self.got_please(now, &side);
            }
            (L1Message::ConnectionHints(hints), State::Connecting) => {
                self.actions.push_back(ManagerAction::UseHints(hints))
            }
            // (extension) hints while connected: the peer may have lost its side of the
            // connection (its address changed); check ours (Python ignores them)
            (L1Message::ConnectionHints(hints), State::Connected) => {
                // an empty list from a peer of ours says outright that it lost the connection
                let action = match hints.is_empty() && self.peer_half_close {
                    true => ManagerAction::PeerLost,
                    false => ManagerAction::Probe,
                };
                self.actions.push_back(action)
            }
            (L1Message::Reconnect, state) if self.role == Some(Role::Follower) => match state {
                State::Lonely => self.follower_restart(now),
                State::Connected => {
                    self.state = State::Abandoning;
                    self.actions.push_back(ManagerAction::DropConnection);
                }
                State::Connecting => {
                    self.actions.push_back(ManagerAction::StopConnecting);
                    self.follower_restart(now);
                }
                _ => tracing::debug!("ignoring reconnect in {state:?}"),
            },
            (L1Message::Reconnecting, State::Flushing) if self.role == Some(Role::Leader) => {
                self.new_generation(now)
            }
            (L1Message::Unknown(kind), _) => {
                tracing::info!("ignoring unknown Dilation message {kind:?}")
            }
            (msg, state) => tracing::debug!("ignoring Dilation message {msg:?} in {state:?}"),
        }
    }

    /// The connector selected a connection.
    pub fn connection_made(&mut self, _now: Instant) {
        if self.state == State::Connecting {
            self.state = State::Connected;
            self.deadline = None;
            self.events.push_back(ManagerEvent::Connected {
                generation: self.generation,
            });
        }
    }

    /// (extension) A Follower that lost its connection for a reason the Leader cannot see (its
    /// local address went away) sends an empty `connection-hints`: our Leader probes its link at
    /// once; Python's ignores it.
    pub fn nudge(&mut self) {
        if self.role == Some(Role::Follower) && self.state == State::Lonely {
            self.send(L1Message::ConnectionHints(Vec::new()));
        }
    }

    /// The selected connection is gone.
    pub fn connection_lost(&mut self, now: Instant) {
        match (self.state, self.role) {
            (State::Connected, Some(Role::Leader)) => {
                self.leader_flush();
            }
            (State::Connected, Some(Role::Follower)) => {
                self.state = State::Lonely;
                self.events.push_back(ManagerEvent::Reconnecting {
                    generation: self.generation,
                });
            }
            (State::Abandoning, _) => {
                self.events.push_back(ManagerEvent::Reconnecting {
                    generation: self.generation,
                });
                self.follower_restart(now);
            }
            _ => {}
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| now >= d)
            && self.state == State::Connecting
            && self.role == Some(Role::Leader)
        {
            tracing::info!(
                "generation {} did not connect in time; starting a new one",
                self.generation
            );
            self.actions.push_back(ManagerAction::StopConnecting);
            self.leader_flush();
        }
    }

    pub fn stop(&mut self) {
        match self.state {
            State::Connected | State::Abandoning => {
                self.actions.push_back(ManagerAction::DropConnection)
            }
            State::Connecting => self.actions.push_back(ManagerAction::StopConnecting),
            _ => {}
        }
        self.state = State::Stopped;
        self.deadline = None;
    }

    fn got_please(&mut self, now: Instant, their_side: &str) {
        let role = match self.side.as_str().cmp(their_side) {
            std::cmp::Ordering::Greater => Role::Leader,
            std::cmp::Ordering::Less => Role::Follower,
            std::cmp::Ordering::Equal => {
                self.state = State::Stopped;
                self.events
                    .push_back(ManagerEvent::Failed(DilationError::Reflection));
                return;
            }
        };
        self.role = Some(role);
        self.start_generation(now);
    }

    fn leader_flush(&mut self) {
        self.state = State::Flushing;
        self.deadline = None;
        self.events.push_back(ManagerEvent::Reconnecting {
            generation: self.generation,
        });
        self.send(L1Message::Reconnect);
    }

    fn follower_restart(&mut self, now: Instant) {
        self.send(L1Message::Reconnecting);
        self.new_generation(now);
    }

    fn new_generation(&mut self, now: Instant) {
        let Some(next) = self.generation.checked_add(1) else {
            tracing::error!("no generation number left");
            self.state = State::Stopped;
            self.events
                .push_back(ManagerEvent::Failed(DilationError::GenerationsExhausted));
            return;
        };
        self.generation = next;
        self.start_generation(now);
    }

    fn start_generation(&mut self, now: Instant) {
        let role = self.role.expect("roles are chosen before connecting");
        self.state = State::Connecting;
        if role == Role::Leader {
            self.deadline = Some(now + self.generation_timeout);
        }
        self.events.push_back(ManagerEvent::Connecting {
            role,
            generation: self.generation,
        });
        self.actions.push_back(ManagerAction::StartConnecting {
            role,
            generation: self.generation,
        });
    }

    fn send(&mut self, msg: L1Message) {
        self.actions.push_back(ManagerAction::Send(msg));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    fn actions(m: &mut Manager) -> Vec<ManagerAction> {
        std::iter::from_fn(|| m.poll_action()).collect()
    }

    fn ged() -> Vec<String> {
        vec!["ged".into()]
    }

    fn please(side: &str) -> L1Message {
        L1Message::Please {
            side: side.into(),
            use_version: Some("ged".into()),
            half_close: true,
            window: None,
        }
    }

    fn started(side: &str, peer: &str) -> (Manager, Instant) {
        let now = Instant::now();
        let mut m = Manager::new(side, T);
        m.start(now, &ged());
        m.received(now, please(peer));
        actions(&mut m);
        (m, now)
    }

    #[test]
    fn leader_sequence() {
        let now = Instant::now();
        let mut m = Manager::new("bbbbbbbbbbbbbbbb", T);
        assert!(actions(&mut m).is_empty());
        m.start(now, &ged());
        assert_eq!(
            actions(&mut m),
            vec![ManagerAction::Send(please("bbbbbbbbbbbbbbbb"))]
        );
        // hints before please are too early
        m.received(
            now,
            L1Message::ConnectionHints(vec![Hint::direct("127.0.0.1", 1)]),
        );
        assert!(actions(&mut m).is_empty());
        m.received(now, please("aaaaaaaaaaaaaaaa"));
        assert_eq!(m.role(), Some(Role::Leader));
        assert_eq!(
            actions(&mut m),
            vec![ManagerAction::StartConnecting {
                role: Role::Leader,
                generation: 0
            }]
        );
        m.send_hints(vec![Hint::direct("127.0.0.1", 5)]);
        m.received(
            now,
            L1Message::ConnectionHints(vec![Hint::direct("127.0.0.1", 6)]),
        );
        assert_eq!(
            actions(&mut m),
            vec![
                ManagerAction::Send(L1Message::ConnectionHints(vec![Hint::direct(
                    "127.0.0.1",
                    5
                )])),
                ManagerAction::UseHints(vec![Hint::direct("127.0.0.1", 6)]),
            ]
        );
        m.connection_made(now);
        assert_eq!(m.state(), State::Connected);
        // a repeated please is ignored, never answered; hints while connected make us check
        // the link (our extension), never answered either
        m.received(now, please("aaaaaaaaaaaaaaaa"));
        assert!(actions(&mut m).is_empty());
        m.received(
            now,
            L1Message::ConnectionHints(vec![Hint::direct("127.0.0.1", 7)]),
        );
        assert_eq!(actions(&mut m), vec![ManagerAction::Probe]);
        // an empty list from a peer of ours (half-close): it says it lost the connection
        m.received(now, L1Message::ConnectionHints(vec![]));
        assert_eq!(actions(&mut m), vec![ManagerAction::PeerLost]);
        m.connection_lost(now);
        assert_eq!(
            actions(&mut m),
            vec![ManagerAction::Send(L1Message::Reconnect)]
        );
        assert_eq!(m.state(), State::Flushing);
        m.received(
            now,
            L1Message::ConnectionHints(vec![Hint::direct("127.0.0.1", 6)]),
        ); // stale
        assert!(actions(&mut m).is_empty());
        m.received(now, L1Message::Reconnecting);
        assert_eq!(
            actions(&mut m),
            vec![ManagerAction::StartConnecting {
                role: Role::Leader,
                generation: 1
            }]
        );
        // a second reconnecting is out of state: ignored
        m.received(now, L1Message::Reconnecting);
        assert!(actions(&mut m).is_empty());
        let events: Vec<_> = std::iter::from_fn(|| m.poll_event()).collect();
        assert_eq!(
            events,
            vec![
                ManagerEvent::Connecting {
                    role: Role::Leader,
                    generation: 0
                },
                ManagerEvent::Connected { generation: 0 },
                ManagerEvent::Reconnecting { generation: 0 },
                ManagerEvent::Connecting {
                    role: Role::Leader,
                    generation: 1
                },
            ]
        );
    }

    #[test]
    fn follower_sequences() {
        let (mut m, now) = started("aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb");
        assert_eq!(m.role(), Some(Role::Follower));
        m.connection_made(now);
        // the follower never speaks first after a loss
        m.connection_lost(now);
        assert!(actions(&mut m).is_empty());
        assert_eq!(m.state(), State::Lonely);
        m.received(now, L1Message::Reconnect);
        assert_eq!(
            actions(&mut m),
            vec![
                ManagerAction::Send(L1Message::Reconnecting),
                ManagerAction::StartConnecting {
                    role: Role::Follower,
                    generation: 1
                },
            ]
        );
        // reconnect while connected: drop, then answer once the connection is gone
        m.connection_made(now);
        m.received(now, L1Message::Reconnect);
        assert_eq!(actions(&mut m), vec![ManagerAction::DropConnection]);
        assert_eq!(m.state(), State::Abandoning);
        m.connection_lost(now);
        assert_eq!(
            actions(&mut m),
            vec![
                ManagerAction::Send(L1Message::Reconnecting),
                ManagerAction::StartConnecting {
                    role: Role::Follower,
                    generation: 2
                },
            ]
        );
        // reconnect while connecting: restart the connector, answer exactly once
        m.received(now, L1Message::Reconnect);
        assert_eq!(
            actions(&mut m),
            vec![
                ManagerAction::StopConnecting,
                ManagerAction::Send(L1Message::Reconnecting),
                ManagerAction::StartConnecting {
                    role: Role::Follower,
                    generation: 3
                },
            ]
        );
        // the follower never times out by itself
        m.handle_timeout(now + Duration::from_secs(3600));
        assert!(actions(&mut m).is_empty());
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn follower_ignores_reconnecting_and_leader_ignores_reconnect() {
        let (mut f, now) = started("aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb");
        f.connection_made(now);
        f.received(now, L1Message::Reconnecting);
        assert!(actions(&mut f).is_empty());
        let (mut l, now) = started("bbbbbbbbbbbbbbbb", "aaaaaaaaaaaaaaaa");
        l.connection_made(now);
        l.received(now, L1Message::Reconnect);
        assert!(actions(&mut l).is_empty());
        assert_eq!(l.state(), State::Connected);
    }

    #[test]
    fn please_before_start_is_kept() {
        let now = Instant::now();
        let mut m = Manager::new("bbbbbbbbbbbbbbbb", T);
        m.received(now, please("aaaaaaaaaaaaaaaa"));
        assert!(actions(&mut m).is_empty());
        m.start(now, &ged());
        assert_eq!(
            actions(&mut m),
            vec![
                ManagerAction::Send(please("bbbbbbbbbbbbbbbb")),
                ManagerAction::StartConnecting {
                    role: Role::Leader,
                    generation: 0
                },
            ]
        );
    }

    #[test]
    fn leader_starts_a_new_generation_when_connecting_takes_too_long() {
        let (mut m, now) = started("bbbbbbbbbbbbbbbb", "aaaaaaaaaaaaaaaa");
        assert_eq!(m.poll_timeout(), Some(now + T));
        m.handle_timeout(now + T - Duration::from_millis(1));
        assert!(actions(&mut m).is_empty());
        m.handle_timeout(now + T);
        assert_eq!(
            actions(&mut m),
            vec![
                ManagerAction::StopConnecting,
                ManagerAction::Send(L1Message::Reconnect)
            ]
        );
        assert_eq!(m.poll_timeout(), None);
        m.received(now + T, L1Message::Reconnecting);
        assert_eq!(
            actions(&mut m),
            vec![ManagerAction::StartConnecting {
                role: Role::Leader,
                generation: 1
            }]
        );
        assert_eq!(m.poll_timeout(), Some(now + T + T));
        m.connection_made(now + T);
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn no_shared_version_or_reflection_fails() {
        let now = Instant::now();
        let mut m = Manager::new("aaaaaaaaaaaaaaaa", T);
        m.start(now, &["1".to_string()]);
        assert!(
            actions(&mut m).is_empty(),
            "nothing is sent to a peer that cannot dilate"
        );
        assert!(matches!(
            m.poll_event(),
            Some(ManagerEvent::Failed(DilationError::PeerCannotDilate(_)))
        ));
        let mut m = Manager::new("aaaaaaaaaaaaaaaa", T);
        m.start(now, &ged());
        actions(&mut m);
        m.received(now, please("aaaaaaaaaaaaaaaa"));
        assert!(actions(&mut m).is_empty());
        assert_eq!(
            m.poll_event(),
            Some(ManagerEvent::Failed(DilationError::Reflection))
        );
    }

    #[test]
    fn the_last_generation_number_ends_dilation_cleanly() {
        let (mut m, now) = started("bbbbbbbbbbbbbbbb", "aaaaaaaaaaaaaaaa");
        m.connection_made(now);
        m.generation = u32::MAX;
        m.connection_lost(now);
        m.received(now, L1Message::Reconnecting);
        assert_eq!(m.state(), State::Stopped);
        assert_eq!(m.generation(), u32::MAX);
        let events: Vec<ManagerEvent> = std::iter::from_fn(|| m.poll_event()).collect();
        assert!(events.contains(&ManagerEvent::Failed(DilationError::GenerationsExhausted)));
    }

    #[test]
    fn stop_from_every_state() {
        let (mut m, now) = started("bbbbbbbbbbbbbbbb", "aaaaaaaaaaaaaaaa");
        m.stop();
        assert_eq!(actions(&mut m), vec![ManagerAction::StopConnecting]);
        let (mut m, now2) = started("bbbbbbbbbbbbbbbb", "aaaaaaaaaaaaaaaa");
        m.connection_made(now2);
        m.stop();
        assert_eq!(actions(&mut m), vec![ManagerAction::DropConnection]);
        // after stop, nothing is answered (a late reconnect during close is harmless)
        m.connection_lost(now);
        m.received(now, L1Message::Reconnecting);
        assert!(actions(&mut m).is_empty());
        assert_eq!(m.state(), State::Stopped);
    }
}
