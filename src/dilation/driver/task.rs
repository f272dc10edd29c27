//! The Dilation task: owns the wormhole, the manager, the session, the current connector and the
//! selected connection, and moves events between them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, Notify, Semaphore};

use super::connector::{Candidate, Connector, ConnectorConfig, ConnectorEvent, PathKind};
use super::link::{Link, LinkEvent, LinkReports, READ_BATCHES};
use super::subchannel::{Shared, SubCommand, Subchannel};
use super::{DilationConfig, DilationEvent, TaskCommand};
use crate::dilation::l1::{random_side, L1Message};
use crate::dilation::l2::{L2Event, Role};
use crate::dilation::manager::{
    DilationError, Manager, ManagerAction, ManagerEvent, State as ManagerState,
};
use crate::dilation::record::Scid;
use crate::dilation::session::{Liveness, Session, SessionEvent};
use crate::key::Key;
use crate::wormhole::{Mood, Wormhole, WormholeError, WormholeEvent};

/// Most record bytes handed to the writer in one batch.
const TRANSMIT_BATCH: usize = 256 * 1024;

struct Task {
    config: DilationConfig,
    manager: Manager,
    session: Option<Session>,
    psk: Option<Key>,
    events: mpsc::UnboundedSender<DilationEvent>,
    sub_tx: mpsc::UnboundedSender<SubCommand>,
    budget: Arc<Semaphore>,
    resume: Arc<Notify>,
    subs: HashMap<Scid, Arc<Shared>>,
    paused: HashSet<Scid>,
    listeners: HashMap<String, mpsc::UnboundedSender<Subchannel>>,
    pending_incoming: HashMap<String, VecDeque<Subchannel>>,
    pending_opens: Vec<(
        String,
        tokio::sync::oneshot::Sender<Result<Subchannel, DilationError>>,
    )>,
    conn_tx: mpsc::Sender<ConnectorEvent>,
    connector: Option<Connector>,
    candidates: Vec<Candidate>,
    grace: Option<Instant>,
    link_reports: LinkReports,
    link: Option<Link>,
    next_link: u64,
    outgoing: Vec<Vec<u8>>,
    closing: Option<Instant>,
}

pub(super) async fn run(
    mut wormhole: Wormhole,
    config: DilationConfig,
    mut commands: mpsc::UnboundedReceiver<TaskCommand>,
    events: mpsc::UnboundedSender<DilationEvent>,
) -> Result<Mood, WormholeError> {
    let (sub_tx, mut sub_rx) = mpsc::unbounded_channel();
    let (conn_tx, mut conn_rx) = mpsc::channel(16);
    let (link_tx, mut link_rx) = mpsc::channel(READ_BATCHES);
    let (lost_tx, mut lost_rx) = mpsc::unbounded_channel();
    let side = config.side.clone().unwrap_or_else(random_side);
    let mut t = Task {
        manager: Manager::new(&side, config.generation_timeout),
        budget: Arc::new(Semaphore::new(config.write_budget)),
        config,
        session: None,
        psk: wormhole.dilation_key(),
        events,
        sub_tx,
        resume: Arc::new(Notify::new()),
        subs: HashMap::new(),
        paused: HashSet::new(),
        listeners: HashMap::new(),
        pending_incoming: HashMap::new(),
        pending_opens: Vec::new(),
        conn_tx,
        connector: None,
        candidates: Vec::new(),
        grace: None,
        link_reports: LinkReports {
            records: link_tx,
            lost: lost_tx,
        },
        link: None,
        next_link: 0,
        outgoing: Vec::new(),
        closing: None,
    };
    let mut commands_open = true;
    t.maybe_start(&wormhole);
    let outcome = loop {
        t.drive(&mut wormhole).await;
        if t.closing
            .is_some_and(|deadline| Instant::now() >= deadline || t.flushed())
        {
            break None;
        }
        let writer = t.link.as_ref().map(|l| l.writer.clone());
        let paused = !t.paused.is_empty();
        // While we do not read, the peer's ACKs cannot arrive: keeping the tight cap then lets two
        // peers that each wait for the other (an echo through both) deadlock.
        let limit = match paused {
            true => t.config.unacked_limit.max(t.config.paused_unacked_limit),
            false => t.config.unacked_limit,
        };
        if let Some(s) = t.session.as_mut() {
            s.set_unacked_limit(limit);
        }
        let wants_transmit =
            writer.is_some() && t.session.as_ref().is_some_and(Session::wants_transmit);
        let deadline = t.next_deadline().map(tokio::time::Instant::from_std);
        tracing::trace!(
            paused,
            wants_transmit,
            unacked = t.session.as_ref().map(Session::unacked_bytes),
            budget = t.budget.available_permits(),
            "dilation task waits"
        );
        tokio::select! {
            event = wormhole.next_event() => match event {
                Some(WormholeEvent::Closed(outcome)) => break Some(outcome),
                Some(event) => t.wormhole_event(&wormhole, event),
                None => break Some(Err(WormholeError::SessionClosed)),
            },
            cmd = commands.recv(), if commands_open => match cmd {
                Some(TaskCommand::SendMessage(m)) => wormhole.send_message(m),
                Some(TaskCommand::Ping(n)) => wormhole.ping(n),
                Some(cmd) => t.command(cmd),
                None => {
                    commands_open = false;
                    t.command(TaskCommand::Close);
                }
            },
            Some(cmd) = sub_rx.recv() => t.sub_command(cmd),
            Some(event) = conn_rx.recv() => t.connector_event(event).await,
            Some(event) = link_rx.recv(), if !paused => t.link_event(event),
            Some(event) = lost_rx.recv() => t.link_event(event),
            permit = async { writer.as_ref().expect("guarded").reserve().await }, if wants_transmit => {
                match (permit, t.session.as_mut()) {
                    (Ok(permit), Some(session)) => {
                        let mut batch = Vec::new();
                        session.transmit(TRANSMIT_BATCH, |r| batch.push(r.clone()));
                        permit.send(batch);
                    }
                    // the writer task is gone: the connection failed under it
                    (Err(_), _) => t.drop_link(Instant::now(), "writer stopped"),
                    (Ok(_), None) => {}
                }
            }
            _ = t.resume.notified(), if paused => t.recheck_paused(),
            _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                t.timeout(Instant::now()).await;
            }
        }
    };
    // stop everything below the wormhole, then close it
    t.manager.stop();
    t.connector = None;
    t.link = None;
    for shared in t.subs.values() {
        shared.reset();
    }
    t.budget.close();
    let outcome = match outcome {
        Some(outcome) => outcome,
        None => wormhole.close().await,
    };
    t.subs.clear();
    outcome
}

impl Task {
    fn emit(&self, event: DilationEvent) {
        let _ = self.events.send(event);
    }

    fn flushed(&self) -> bool {
        self.session.as_ref().is_none_or(|s| s.unacked_bytes() == 0)
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.manager.poll_timeout(),
            self.session.as_ref().and_then(Session::poll_timeout),
            self.grace,
            self.closing,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Starts Dilation once the key is confirmed and the peer's versions are known.
    fn maybe_start(&mut self, wormhole: &Wormhole) {
        if self.manager.state() != ManagerState::Waiting {
            return;
        }
        if let (Some(_), Some(can_dilate)) = (self.psk, wormhole.peer_can_dilate()) {
            self.manager.start(Instant::now(), can_dilate);
        }
    }

    /// Carries out what the manager and the session want, until nothing is left.
    async fn drive(&mut self, wormhole: &mut Wormhole) {
        loop {
            for m in self.outgoing.drain(..) {
                wormhole.send_dilate(m);
            }
            let mut progressed = false;
            while let Some(action) = self.manager.poll_action() {
                progressed = true;
                self.manager_action(action).await;
            }
            while let Some(event) = self.manager.poll_event() {
                progressed = true;
                self.manager_event(event);
            }
            while let Some(event) = self.session.as_mut().and_then(Session::poll_event) {
                progressed = true;
                self.session_event(event);
            }
            if !progressed && self.outgoing.is_empty() {
                return;
            }
        }
    }

    async fn manager_action(&mut self, action: ManagerAction) {
        let now = Instant::now();
        match action {
            ManagerAction::Send(msg) => self.outgoing.push(msg.encode()),
            ManagerAction::StartConnecting { role, generation } => {
                self.ensure_session(role);
                self.candidates.clear();
                self.grace = None;
                let Some(psk) = self.psk else { return };
                let cfg = ConnectorConfig {
                    role,
                    generation,
                    psk,
                    side: self.manager.side().to_string(),
                    relay: self.config.relay.clone(),
                    no_listen: self.config.no_listen,
                    connect_timeout: self.config.connect_timeout,
                    handshake_timeout: self.config.handshake_timeout,
                    relay_grace: self.config.relay_grace,
                    direct_possible: Default::default(),
                };
                self.connector = Some(Connector::start(cfg, self.conn_tx.clone()).await);
            }
            ManagerAction::UseHints(hints) => {
                if let Some(c) = self.connector.as_mut() {
                    c.use_hints(hints);
                }
            }
            ManagerAction::StopConnecting => {
                self.connector = None;
                self.candidates.clear();
                self.grace = None;
            }
            ManagerAction::DropConnection => self.drop_link(now, "dropped on request"),
        }
    }

    fn manager_event(&mut self, event: ManagerEvent) {
        match event {
            ManagerEvent::Connecting { role, generation } => {
                self.emit(DilationEvent::Connecting { role, generation })
            }
            ManagerEvent::Connected { .. } => {} // reported with its path at selection
            ManagerEvent::Reconnecting { generation } => {
                self.emit(DilationEvent::Reconnecting { generation })
            }
            ManagerEvent::Failed(e) => {
                for (_, reply) in self.pending_opens.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
                self.emit(DilationEvent::Failed(e));
            }
        }
    }

    fn ensure_session(&mut self, role: Role) {
        if self.session.is_some() {
            return;
        }
        let c = &self.config;
        self.session = Some(Session::new(
            role,
            c.unacked_limit,
            c.ping_interval,
            self.manager.peer_half_close(),
        ));
        for (name, reply) in std::mem::take(&mut self.pending_opens) {
            let _ = reply.send(self.open(&name));
        }
    }

    fn new_subchannel(&mut self, scid: Scid, subprotocol: &str) -> Subchannel {
        let shared = Shared::new(self.config.inbound_limit, self.resume.clone());
        self.subs.insert(scid, shared.clone());
        Subchannel::new(
            scid,
            subprotocol,
            shared,
            self.sub_tx.clone(),
            self.budget.clone(),
        )
    }

    fn open(&mut self, subprotocol: &str) -> Result<Subchannel, DilationError> {
        let session = self.session.as_mut().ok_or(DilationError::Stopped)?;
        let scid = session
            .open(subprotocol)
            .map_err(|_| DilationError::Stopped)?;
        Ok(self.new_subchannel(scid, subprotocol))
    }

    fn command(&mut self, cmd: TaskCommand) {
        match cmd {
            TaskCommand::Open { subprotocol, reply } => {
                if subprotocol.is_empty() {
                    let _ = reply.send(Err(DilationError::EmptySubprotocol));
                } else if self.session.is_some() {
                    let _ = reply.send(self.open(&subprotocol));
                } else {
                    self.pending_opens.push((subprotocol, reply));
                }
            }
            TaskCommand::Listen {
                subprotocol,
                accept,
            } => {
                for sub in self
                    .pending_incoming
                    .remove(&subprotocol)
                    .unwrap_or_default()
                {
                    let _ = accept.send(sub);
                }
                self.listeners.insert(subprotocol, accept);
            }
            TaskCommand::SendMessage(_) | TaskCommand::Ping(_) => {
                unreachable!("handled by the loop")
            }
            TaskCommand::Close => {
                if self.closing.is_none() {
                    self.closing = Some(Instant::now() + self.config.flush_timeout);
                }
            }
        }
    }

    fn sub_command(&mut self, cmd: SubCommand) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        match cmd {
            SubCommand::Data { scid, data } => {
                let n = data.len();
                if session.send_data(scid, data).is_err() {
                    self.budget.add_permits(n);
                }
            }
            SubCommand::Close { scid } => {
                let _ = session.close(scid);
            }
            SubCommand::Dropped { scid } => {
                self.subs.remove(&scid);
                self.paused.remove(&scid);
            }
        }
    }

    /// A subchannel the peer opened: to its listener, or held until one appears (bounded).
    fn incoming(&mut self, scid: Scid, subprotocol: String) {
        let pending = self
            .pending_incoming
            .get(&subprotocol)
            .map_or(0, VecDeque::len);
        let listener = self.listeners.get(&subprotocol).filter(|l| !l.is_closed());
        let refuse = if self.subs.len() >= self.config.max_subchannels {
            Some("too many subchannels")
        } else if listener.is_none() && pending >= self.config.max_pending_opens {
            Some("too many waiting for a listener")
        } else {
            None
        };
        if let Some(why) = refuse {
            tracing::warn!("closing subchannel {scid} ({subprotocol:?}): {why}");
            if let Some(s) = self.session.as_mut() {
                let _ = s.close(scid);
            }
            return;
        }
        let sub = self.new_subchannel(scid, &subprotocol);
        match self.listeners.get(&subprotocol) {
            Some(accept) => {
                if let Err(mpsc::error::SendError(sub)) = accept.send(sub) {
                    self.listeners.remove(&subprotocol);
                    self.pending_incoming
                        .entry(subprotocol)
                        .or_default()
                        .push_back(sub);
                }
            }
            None => self
                .pending_incoming
                .entry(subprotocol)
                .or_default()
                .push_back(sub),
        }
    }

    fn session_event(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Incoming { scid, subprotocol } => self.incoming(scid, subprotocol),
            SessionEvent::Data { scid, data } => {
                if let Some(shared) = self.subs.get(&scid) {
                    if shared.push(data) {
                        self.paused.insert(scid);
                    }
                }
            }
            SessionEvent::ReadClosed { scid } => {
                if let Some(shared) = self.subs.get(&scid) {
                    shared.finish();
                }
            }
            SessionEvent::Closed { scid } => {
                if let Some(shared) = self.subs.get(&scid) {
                    shared.refuse_writes();
                }
            }
            SessionEvent::Sent { data_bytes } => self.budget.add_permits(data_bytes),
        }
    }

    fn recheck_paused(&mut self) {
        let subs = &self.subs;
        self.paused
            .retain(|scid| subs.get(scid).is_some_and(|s| s.is_over_limit()));
    }

    async fn connector_event(&mut self, event: ConnectorEvent) {
        match event {
            ConnectorEvent::Hints { generation, hints } => {
                if generation == self.manager.generation() {
                    self.manager.send_hints(hints);
                }
            }
            ConnectorEvent::Candidate(c) => {
                if c.generation != self.manager.generation()
                    || self.connector.is_none()
                    || self.link.is_some()
                {
                    return; // stale or redundant: dropped
                }
                match (self.manager.role(), c.path) {
                    (Some(Role::Follower), _) | (Some(Role::Leader), PathKind::Direct) => {
                        self.select(c).await
                    }
                    (Some(Role::Leader), PathKind::Relay) => {
                        self.candidates.push(*c);
                        if self.grace.is_none() {
                            self.grace = Some(Instant::now() + self.config.relay_grace);
                        }
                    }
                    (None, _) => {}
                }
            }
        }
    }

    async fn select(&mut self, mut c: Box<Candidate>) {
        use tokio::io::AsyncWriteExt;
        let now = Instant::now();
        if self.manager.role() == Some(Role::Leader) {
            c.l2.select();
            let kcm = c.l2.take_output();
            if let Err(e) = c.stream.write_all(&kcm).await {
                tracing::info!("selected connection failed at once: {e}");
                return;
            }
        }
        self.connector = None;
        self.candidates.clear();
        self.grace = None;
        let id = self.next_link;
        self.next_link += 1;
        let Candidate {
            stream,
            l2,
            events,
            path,
            peer,
            ..
        } = *c;
        let Some(link) = Link::start(id, stream, l2, self.link_reports.clone()) else {
            return;
        };
        self.link = Some(link);
        let session = self
            .session
            .as_mut()
            .expect("a session exists once connecting");
        session.connection_made(now);
        for event in events {
            if let L2Event::Record(r) = event {
                session.received(r);
            }
        }
        self.manager.connection_made(now);
        tracing::info!(
            "dilation connected: generation {}, {path} via {peer}",
            self.manager.generation()
        );
        self.emit(DilationEvent::Connected {
            generation: self.manager.generation(),
            path,
            peer,
        });
    }

    fn link_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Records { link, records } => {
                if self.link.as_ref().is_some_and(|l| l.id == link) {
                    if let Some(session) = self.session.as_mut() {
                        for r in records {
                            session.received(r);
                        }
                    }
                }
            }
            LinkEvent::Lost { link, reason } => {
                if self.link.as_ref().is_some_and(|l| l.id == link) {
                    self.drop_link(Instant::now(), &reason);
                }
            }
        }
    }

    /// Drops the selected connection, if any, and starts what follows its loss.
    fn drop_link(&mut self, now: Instant, reason: &str) {
        if self.link.take().is_none() {
            return;
        }
        tracing::info!("dilation connection lost: {reason}");
        if let Some(s) = self.session.as_mut() {
            s.connection_lost();
        }
        self.manager.connection_lost(now);
    }

    async fn timeout(&mut self, now: Instant) {
        if self.grace.is_some_and(|g| now >= g) {
            self.grace = None;
            if !self.candidates.is_empty() {
                let c = self.candidates.remove(0);
                self.select(Box::new(c)).await;
            }
        }
        if let Some(session) = self.session.as_mut() {
            if session.handle_timeout(now) == Liveness::Dead {
                self.drop_link(now, "no PONG for a whole ping interval");
            }
        }
        self.manager.handle_timeout(now);
    }

    fn wormhole_event(&mut self, wormhole: &Wormhole, event: WormholeEvent) {
        match event {
            WormholeEvent::Dilate(bytes) => match L1Message::parse(&bytes) {
                Ok(msg) => self.manager.received(Instant::now(), msg),
                Err(e) => tracing::warn!("ignoring Dilation message: {e}"),
            },
            other => {
                if let WormholeEvent::KeyConfirmed { dilation_key, .. } = &other {
                    self.psk = Some(*dilation_key);
                }
                self.emit(DilationEvent::Wormhole(other));
            }
        }
        self.maybe_start(wormhole);
    }
}
