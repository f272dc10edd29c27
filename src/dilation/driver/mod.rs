//! The tokio driver of Dilation: [`Wormhole::dilate`] turns a wormhole into a [`Dilated`]
//! session that opens and accepts [`Subchannel`] streams over the best connection it can find,
//! and re-establishes that connection whenever it is lost.

mod connector;
mod link;
mod subchannel;
mod task;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use connector::PathKind;
pub use subchannel::{FullyClosed, Subchannel, MAX_DATA};

use super::hints::RelayLocation;
use super::l2::Role;
use super::manager::DilationError;
use crate::wormhole::{Mood, Wormhole, WormholeError, WormholeEvent};

/// How a Dilation behaves.
#[derive(Debug, Clone)]
pub struct DilationConfig {
    /// Transit relay for our relay hint (and our own relay connection); `None`: no relay of ours.
    pub relay: Option<RelayLocation>,
    /// No listener and no direct hints.
    pub no_listen: bool,
    /// The Leader's ping interval; a connection without PONG for a whole interval is dropped.
    pub ping_interval: Duration,
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
    /// Subchannels open at once; more from the peer are closed at once.
    pub max_subchannels: usize,
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    /// On close, how long to wait for the peer to acknowledge what we sent.
    pub flush_timeout: Duration,
    /// Fixes our Dilation side (16 hex digits) instead of a random one; the larger side leads.
    /// For tests that need a given role.
    pub side: Option<String>,
}

impl Default for DilationConfig {
    fn default() -> DilationConfig {
        DilationConfig {
            relay: None,
            no_listen: false,
            ping_interval: Duration::from_secs(30),
            generation_timeout: Duration::from_secs(10),
            relay_grace: Duration::from_millis(500),
            write_budget: 4 << 20,
            unacked_limit: super::reliability::DEFAULT_UNACKED_LIMIT,
            paused_unacked_limit: super::reliability::DEFAULT_UNACKED_LIMIT,
            inbound_limit: 1 << 20,
            max_pending_opens: 64,
            max_subchannels: 4096,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(30),
            flush_timeout: Duration::from_secs(5),
            side: None,
        }
    }
}

/// What a dilated session reports.
#[derive(Debug, Clone, PartialEq)]
pub enum DilationEvent {
    /// Everything the wormhole reports, except the Dilation messages themselves.
    Wormhole(WormholeEvent),
    Connecting {
        role: Role,
        generation: u32,
    },
    Connected {
        generation: u32,
        path: PathKind,
        peer: SocketAddr,
    },
    Reconnecting {
        generation: u32,
    },
    Failed(DilationError),
}

pub(crate) enum TaskCommand {
    Open {
        subprotocol: String,
        reply: oneshot::Sender<Result<Subchannel, DilationError>>,
    },
    Listen {
        subprotocol: String,
        accept: mpsc::UnboundedSender<Subchannel>,
    },
    SendMessage(Vec<u8>),
    Ping(i64),
    Close,
}

/// A dilated wormhole.
pub struct Dilated {
    commands: mpsc::UnboundedSender<TaskCommand>,
    events: mpsc::UnboundedReceiver<DilationEvent>,
    task: JoinHandle<Result<Mood, WormholeError>>,
}

/// Accepts the subchannels the peer opens for one subprotocol.
pub struct SubchannelListener {
    accept: mpsc::UnboundedReceiver<Subchannel>,
}

impl SubchannelListener {
    /// The next subchannel, or `None` once the session ended.
    pub async fn accept(&mut self) -> Option<Subchannel> {
        self.accept.recv().await
    }
}

impl Wormhole {
    /// Dilates this wormhole. Dilation starts once the key is confirmed and the peer's `version`
    /// says it can dilate; subchannels can be requested at once.
    pub fn dilate(self, config: DilationConfig) -> Dilated {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(task::run(self, config, command_rx, event_tx));
        Dilated {
            commands,
            events,
            task,
        }
    }
}

/// A cloneable handle to a [`Dilated`]: opens subchannels, listens, sends messages. It stops
/// working (errors, listeners ending) once the session ends.
#[derive(Clone)]
pub struct DilatedHandle {
    commands: mpsc::UnboundedSender<TaskCommand>,
}

impl DilatedHandle {
    /// Opens a subchannel for `subprotocol` (DATA may be queued before the connection exists).
    pub async fn open(&self, subprotocol: &str) -> Result<Subchannel, DilationError> {
        let (reply, rx) = oneshot::channel();
        let cmd = TaskCommand::Open {
            subprotocol: subprotocol.into(),
            reply,
        };
        self.commands
            .send(cmd)
            .map_err(|_| DilationError::Stopped)?;
        rx.await.map_err(|_| DilationError::Stopped)?
    }

    /// Accepts subchannels the peer opens for `subprotocol` (including ones that arrived before).
    pub fn listen(&self, subprotocol: &str) -> SubchannelListener {
        let (accept, rx) = mpsc::unbounded_channel();
        let _ = self.commands.send(TaskCommand::Listen {
            subprotocol: subprotocol.into(),
            accept,
        });
        SubchannelListener { accept: rx }
    }

    /// Sends an application message through the mailbox.
    pub fn send_message(&self, message: Vec<u8>) {
        let _ = self.commands.send(TaskCommand::SendMessage(message));
    }

    /// Pings the mailbox server; the answer is a `WormholeEvent::Pong(n)`.
    pub fn ping(&self, n: i64) {
        let _ = self.commands.send(TaskCommand::Ping(n));
    }
}

impl Dilated {
    /// A handle for opening and accepting subchannels from other tasks.
    pub fn handle(&self) -> DilatedHandle {
        DilatedHandle {
            commands: self.commands.clone(),
        }
    }

    /// Opens a subchannel for `subprotocol` (DATA may be queued before the connection exists).
    pub async fn open(&self, subprotocol: &str) -> Result<Subchannel, DilationError> {
        self.handle().open(subprotocol).await
    }

    /// Accepts subchannels the peer opens for `subprotocol` (including ones that arrived before).
    pub fn listen(&self, subprotocol: &str) -> SubchannelListener {
        self.handle().listen(subprotocol)
    }

    /// Sends an application message through the mailbox.
    pub fn send_message(&self, message: Vec<u8>) {
        self.handle().send_message(message)
    }

    pub async fn next_event(&mut self) -> Option<DilationEvent> {
        self.events.recv().await
    }

    /// Waits until an event `pick` accepts; other events are dropped.
    pub async fn wait_for<T>(
        &mut self,
        mut pick: impl FnMut(&DilationEvent) -> Option<T>,
    ) -> Option<T> {
        while let Some(e) = self.events.recv().await {
            if let Some(v) = pick(&e) {
                return Some(v);
            }
        }
        None
    }

    /// Flushes what was sent (bounded by the flush timeout), stops Dilation and closes the
    /// wormhole.
    pub async fn close(self) -> Result<Mood, WormholeError> {
        let _ = self.commands.send(TaskCommand::Close);
        self.task.await.unwrap_or(Err(WormholeError::SessionClosed))
    }
}
