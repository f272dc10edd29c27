//! The tokio driver of Dilation: [`Wormhole::dilate`] turns a wormhole into a [`Dilated`]
//! session that opens and accepts [`Subchannel`] streams over the best connection it can find,
//! and re-establishes that connection whenever it is lost.

mod net;
mod subchannel;
mod task;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use subchannel::{FullyClosed, Subchannel, SubchannelReader, SubchannelWriter, MAX_DATA};

use super::config::{DilationConfig, DilationEvent};
use super::manager::DilationError;
use crate::wormhole::{Mood, Wormhole, WormholeError};

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

    /// The next event of the session (`None` once it ended).
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
