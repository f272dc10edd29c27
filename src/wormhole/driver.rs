//! [`Wormhole`]: the tokio driver of [`WormholeCore`] over a mailbox WebSocket, and the handle
//! the application holds.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Mood, WormholeConfig, WormholeCore, WormholeError, WormholeEvent};
use crate::key::Key;
use crate::mailbox::{self, Action, Frame, MailboxClient, MailboxSocket, TransportError};

enum Command {
    Allocate(usize),
    SetCode(String, oneshot::Sender<Result<(), WormholeError>>),
    Rendezvous(String, String, oneshot::Sender<Result<(), WormholeError>>),
    Send(Vec<u8>),
    SendDilate(Vec<u8>),
    List,
    Ping(i64),
    Close,
}

/// A running wormhole session; dropping it closes the session politely in the background.
/// Events arrive in order through [`Wormhole::next_event`]; the
/// `wait`-style helpers keep the events they skip for later calls.
pub struct Wormhole {
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<WormholeEvent>,
    stash: VecDeque<WormholeEvent>,
    outcome: Option<Result<Mood, WormholeError>>,
    task: JoinHandle<()>,
    /// The session key, once confirmed (the Dilation key and others derive from it).
    key: Option<Key>,
    peer_can_dilate: Option<Vec<String>>,
}

impl Wormhole {
    /// Connects to the mailbox server. Fails with an error naming the URL when the first
    /// connection does not succeed within `config.connect_timeout`.
    pub async fn connect(config: WormholeConfig) -> Result<Wormhole, WormholeError> {
        Wormhole::connect_with_side(config, &MailboxClient::random_side()).await
    }

    /// As [`Wormhole::connect`] with a chosen mailbox side (tests).
    pub async fn connect_with_side(
        config: WormholeConfig,
        side: &str,
    ) -> Result<Wormhole, WormholeError> {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let core = WormholeCore::new(config.clone(), side, rand::random());
        let task = tokio::spawn(run(core, config, command_rx, event_tx));
        let mut wormhole = Wormhole {
            commands,
            events,
            stash: VecDeque::new(),
            outcome: None,
            task,
            key: None,
            peer_can_dilate: None,
        };
        wormhole
            .wait_for(|e| matches!(e, WormholeEvent::MailboxConnected).then_some(()))
            .await?;
        Ok(wormhole)
    }

    /// Asks for a nameplate; [`Wormhole::allocated_code`] returns the code.
    pub fn allocate_code(&self, num_words: usize) {
        let _ = self.commands.send(Command::Allocate(num_words));
    }

    /// Sets the code given by the user; errors when it is malformed.
    pub async fn set_code(&self, code: &str) -> Result<(), WormholeError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::SetCode(code.into(), tx))
            .map_err(|_| WormholeError::SessionClosed)?;
        rx.await.map_err(|_| WormholeError::SessionClosed)?
    }

    /// Meets the peer in `mailbox` (opened directly, no nameplate) with the full-entropy
    /// `password` instead of a code; see [`WormholeCore::set_rendezvous`].
    pub async fn set_rendezvous(&self, mailbox: &str, password: &str) -> Result<(), WormholeError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Rendezvous(mailbox.into(), password.into(), tx))
            .map_err(|_| WormholeError::SessionClosed)?;
        rx.await.map_err(|_| WormholeError::SessionClosed)?
    }

    /// A key of its own for `purpose`, derived from the session key once it is confirmed (as
    /// Python's `derive_key`); `None` before.
    pub fn derive_key(&self, purpose: &[u8]) -> Option<Key> {
        self.key.map(|k| crate::key::derive_key(&k, purpose))
    }

    /// Sends the next application message (encrypted, in order).
    pub fn send_message(&self, message: Vec<u8>) {
        let _ = self.commands.send(Command::Send(message));
    }

    /// Sends the next Dilation message (phase `dilate-N`).
    pub fn send_dilate(&self, message: Vec<u8>) {
        let _ = self.commands.send(Command::SendDilate(message));
    }

    /// Asks the server for its nameplates; they arrive as [`WormholeEvent::Nameplates`].
    pub fn list_nameplates(&self) {
        let _ = self.commands.send(Command::List);
    }

    /// Pings the mailbox server with `n`; the answer arrives as [`WormholeEvent::Pong`].
    pub fn ping(&self, n: i64) {
        let _ = self.commands.send(Command::Ping(n));
    }

    /// The next event, or `None` after `Closed` was returned. Cancel-safe.
    pub async fn next_event(&mut self) -> Option<WormholeEvent> {
        match self.stash.pop_front() {
            Some(e) => Some(e),
            None => self.recv_event().await,
        }
    }

    async fn recv_event(&mut self) -> Option<WormholeEvent> {
        let event = self.events.recv().await?;
        match &event {
            WormholeEvent::KeyConfirmed { key, .. } => {
                self.key = Some(*key);
            }
            WormholeEvent::PeerVersions { can_dilate, .. } => {
                self.peer_can_dilate = Some(can_dilate.clone())
            }
            _ => {}
        }
        Some(event)
    }

    /// The Dilation key, once the key is confirmed.
    pub fn dilation_key(&self) -> Option<Key> {
        self.key.as_ref().map(crate::key::dilation_key)
    }

    /// The peer's `can-dilate` list, once its `version` arrived.
    pub fn peer_can_dilate(&self) -> Option<&[String]> {
        self.peer_can_dilate.as_deref()
    }

    /// Waits for the first event `pick` accepts, keeping the others. A `Closed` event ends the
    /// wait with the session's error.
    pub async fn wait_for<T>(
        &mut self,
        mut pick: impl FnMut(&WormholeEvent) -> Option<T>,
    ) -> Result<T, WormholeError> {
        if let Some(i) = self.stash.iter().position(|e| pick(e).is_some()) {
            let event = self.stash.remove(i).expect("position is in range");
            return Ok(pick(&event).expect("picked before"));
        }
        loop {
            if let Some(outcome) = &self.outcome {
                return Err(outcome
                    .clone()
                    .err()
                    .unwrap_or(WormholeError::SessionClosed));
            }
            let Some(event) = self.recv_event().await else {
                self.outcome = Some(Err(WormholeError::SessionClosed));
                continue;
            };
            if let Some(value) = pick(&event) {
                return Ok(value);
            }
            if let WormholeEvent::Closed(outcome) = &event {
                self.outcome = Some(outcome.clone());
            }
            self.stash.push_back(event);
        }
    }

    /// Waits for the code [`Wormhole::allocate_code`] asked for.
    pub async fn allocated_code(&mut self) -> Result<String, WormholeError> {
        self.wait_for(|e| match e {
            WormholeEvent::CodeAllocated(code) => Some(code.clone()),
            _ => None,
        })
        .await
    }

    /// Waits for the key to be confirmed and returns the verifier both users can compare.
    pub async fn verifier(&mut self) -> Result<Key, WormholeError> {
        self.wait_for(|e| match e {
            WormholeEvent::KeyConfirmed { verifier, .. } => Some(*verifier),
            _ => None,
        })
        .await
    }

    /// The peer's `app_versions`.
    pub async fn peer_versions(&mut self) -> Result<Value, WormholeError> {
        self.wait_for(|e| match e {
            WormholeEvent::PeerVersions { app_versions, .. } => Some(app_versions.clone()),
            _ => None,
        })
        .await
    }

    /// Waits for the peer's next application message.
    pub async fn recv_message(&mut self) -> Result<Vec<u8>, WormholeError> {
        self.wait_for(|e| match e {
            WormholeEvent::Message(m) => Some(m.clone()),
            _ => None,
        })
        .await
    }

    /// Closes the session and returns how it ended (or the error that ended it).
    pub async fn close(mut self) -> Result<Mood, WormholeError> {
        let _ = self.commands.send(Command::Close);
        let result = self
            .wait_for(|e| match e {
                WormholeEvent::Closed(outcome) => Some(outcome.clone()),
                _ => None,
            })
            .await;
        let _ = (&mut self.task).await;
        match result {
            Ok(outcome) => outcome,
            Err(WormholeError::SessionClosed) => self
                .outcome
                .take()
                .unwrap_or(Err(WormholeError::SessionClosed)),
            Err(e) => Err(e),
        }
    }
}

/// How often the mailbox connection's local address is looked for among the interfaces.
const ADDRESS_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

/// Whether `ip` is still an address of one of the host's interfaces.
fn address_present(ip: std::net::IpAddr) -> bool {
    let ip = ip.to_canonical();
    // an interface list that cannot be read proves nothing
    if_addrs::get_if_addrs().map_or(true, |ifs| {
        ip.is_loopback() || ifs.iter().any(|i| i.ip() == ip)
    })
}

type Connecting = Pin<Box<dyn Future<Output = Result<MailboxSocket, TransportError>> + Send>>;

async fn run(
    mut core: WormholeCore,
    config: WormholeConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<WormholeEvent>,
) {
    let mut socket: Option<MailboxSocket> = None;
    let mut connecting: Option<Connecting> = None;
    let mut commands_open = true;
    // a connection whose local address went away (a new network) is replaced at once
    let mut address_check = tokio::time::interval(ADDRESS_CHECK);
    address_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    core.start();
    loop {
        while let Some(action) = core.poll_action() {
            match action {
                Action::Connect => {
                    let url = config.mailbox_url.clone();
                    let roots = config.extra_root_certificates.clone();
                    let proxy = config.proxy.clone();
                    let limit = core.connect_limit().unwrap_or(config.connect_timeout);
                    connecting = Some(Box::pin(async move {
                        let connect = mailbox::connect(&url, &roots, proxy.as_ref());
                        match tokio::time::timeout(limit, connect).await {
                            Ok(result) => result,
                            Err(_) => Err(TransportError(format!("no answer within {limit:?}"))),
                        }
                    }));
                }
                Action::Send(text) => {
                    if let Some(s) = socket.as_mut() {
                        if let Err(e) = s.send(text).await {
                            tracing::info!("mailbox connection lost while sending: {e}");
                            socket = None;
                            core.connection_lost(Instant::now());
                        }
                    }
                }
                Action::Abandon => socket = None,
                Action::Disconnect => {
                    connecting = None;
                    if let Some(s) = socket.take() {
                        s.close().await;
                    }
                }
            }
        }
        while let Some(event) = core.poll_event() {
            let _ = events.send(event);
        }
        if core.is_done() {
            break;
        }
        let deadline = core.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            result = async { connecting.as_mut().expect("guarded").await }, if connecting.is_some() => {
                connecting = None;
                match result {
                    Ok(s) => {
                        socket = Some(s);
                        core.connection_made(Instant::now());
                    }
                    Err(e) => core.connection_failed(Instant::now(), &e.0),
                }
            }
            frame = async { socket.as_mut().expect("guarded").recv().await }, if socket.is_some() => {
                match frame {
                    Frame::Text(text) => core.received(Instant::now(), &text),
                    Frame::Closed(reason) => {
                        tracing::info!("mailbox connection closed: {}", reason.map(|r| r.0).unwrap_or_default());
                        socket = None;
                        core.connection_lost(Instant::now());
                    }
                }
            }
            command = commands.recv(), if commands_open => {
                let now = Instant::now();
                match command {
                    None => {
                        commands_open = false;
                        core.close(now);
                    }
                    Some(Command::Allocate(n)) => core.allocate_code(n, now),
                    Some(Command::SetCode(code, reply)) => {
                        let _ = reply.send(core.set_code(&code, now));
                    }
                    Some(Command::Send(m)) => core.send_message(m),
                    Some(Command::SendDilate(m)) => core.send_dilate(m),
                    Some(Command::Rendezvous(mailbox, password, reply)) => {
                        let _ = reply.send(core.set_rendezvous(&mailbox, &password, now));
                    }
                    Some(Command::List) => core.list_nameplates(),
                    Some(Command::Ping(n)) => core.ping(n),
                    Some(Command::Close) => core.close(now),
                }
            }
            _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                core.handle_timeout(Instant::now());
            }
            _ = address_check.tick(), if socket.is_some() => {
                let local = socket.as_ref().and_then(MailboxSocket::local_ip);
                if let Some(ip) = local.filter(|ip| !address_present(*ip)) {
                    tracing::info!("mailbox connection's local address {ip} is gone: replacing it");
                    socket = None;
                    core.connection_lost(Instant::now());
                }
            }
        }
    }
    if let Some(s) = socket.take() {
        s.close().await;
    }
}
