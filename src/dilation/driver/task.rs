//! The Dilation task: a pump between the sans-IO [`Endpoint`] and the world. It moves wormhole
//! events, application commands, socket reports and timer expiries into the endpoint, and carries
//! out the endpoint's actions; every decision is the endpoint's.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio::task::JoinSet;

use super::net::{self, ConnCommand, ConnHandle, NetEvent, Reports, READ_BATCHES, WRITE_BATCHES};
use super::subchannel::{Flow, Shared, SubCommand, Subchannel};
use super::TaskCommand;
use crate::dilation::config::{DilationConfig, DilationEvent};
use crate::dilation::endpoint::{Action, ConnId, Endpoint, Event, OpenId};
use crate::dilation::l1::random_side;
use crate::dilation::manager::DilationError;
use crate::dilation::record::{Record, Scid};
use crate::proxy::Socks5Proxy;
use crate::wormhole::{Mood, Wormhole, WormholeError, WormholeEvent};

/// Most record bytes handed to the writer in one batch.
const TRANSMIT_BATCH: usize = 256 * 1024;
/// How often the host's interface addresses are looked at (an address that went away ends the
/// connections bound to it).
const ADDRESS_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

type OpenReply = oneshot::Sender<Result<Subchannel, DilationError>>;

struct Task {
    ep: Endpoint,
    /// Every dial goes through it (the endpoint dials only relays then).
    proxy: Option<Socks5Proxy>,
    inbound_limit: usize,
    events: mpsc::UnboundedSender<DilationEvent>,
    sub_tx: mpsc::UnboundedSender<SubCommand>,
    budget: Arc<Semaphore>,
    resume: Arc<Notify>,
    subs: HashMap<Scid, Arc<Shared>>,
    listeners: HashMap<String, mpsc::UnboundedSender<Subchannel>>,
    held: HashMap<String, VecDeque<Subchannel>>,
    opens: HashMap<OpenId, OpenReply>,
    reports: Reports,
    tasks: JoinSet<()>,
    conns: HashMap<ConnId, ConnHandle>,
    listener: Option<tokio::task::AbortHandle>,
    /// The interface addresses reported to the endpoint: IPv6 ones too only while the last
    /// listener serves IPv6.
    ipv6: bool,
    /// The selected connection and its writer.
    link: Option<(ConnId, mpsc::Sender<Vec<Arc<Record>>>)>,
}

pub(super) async fn run(
    mut wormhole: Wormhole,
    config: DilationConfig,
    mut commands: mpsc::UnboundedReceiver<TaskCommand>,
    events: mpsc::UnboundedSender<DilationEvent>,
) -> Result<Mood, WormholeError> {
    let (sub_tx, mut sub_rx) = mpsc::unbounded_channel();
    let (records_tx, mut records_rx) = mpsc::channel(READ_BATCHES);
    let (other_tx, mut other_rx) = mpsc::unbounded_channel();
    let side = config.side.clone().unwrap_or_else(random_side);
    let user_timeout = config.liveness_interval * 2;
    let mut t = Task {
        proxy: config.proxy.clone(),
        inbound_limit: config.inbound_limit,
        budget: Arc::new(Semaphore::new(config.write_budget)),
        ep: Endpoint::new(config, &side),
        events,
        sub_tx,
        resume: Arc::new(Notify::new()),
        subs: HashMap::new(),
        listeners: HashMap::new(),
        held: HashMap::new(),
        opens: HashMap::new(),
        reports: Reports {
            records: records_tx,
            other: other_tx,
            user_timeout,
        },
        tasks: JoinSet::new(),
        conns: HashMap::new(),
        listener: None,
        ipv6: true,
        link: None,
    };
    let now = Instant::now();
    if let Some(psk) = wormhole.dilation_key() {
        t.ep.handle_key(now, psk);
    }
    if let Some(versions) = wormhole.peer_can_dilate() {
        t.ep.handle_peer_versions(now, versions.to_vec());
    }
    let mut commands_open = true;
    let mut address_check = tokio::time::interval(ADDRESS_CHECK);
    address_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // the endpoint's timer: one sleep, moved only when the deadline changes (not a new timer
    // for every turn of the loop, which runs for every batch of records)
    let timer = tokio::time::sleep(ADDRESS_CHECK);
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    let outcome = loop {
        t.pump(&mut wormhole).await;
        if t.ep.is_finished(Instant::now()) {
            break None;
        }
        let writer = t.link.as_ref().map(|(_, w)| w.clone());
        let reading = t.ep.wants_read();
        let wants_transmit = writer.is_some() && t.ep.wants_transmit();
        let deadline = t.ep.poll_timeout();
        if deadline != armed {
            if let Some(d) = deadline {
                timer.as_mut().reset(tokio::time::Instant::from_std(d));
            }
            armed = deadline;
        }
        tokio::select! {
            event = wormhole.next_event() => match event {
                Some(WormholeEvent::Closed(outcome)) => break Some(outcome),
                Some(event) => t.wormhole_event(&wormhole, event),
                None => break Some(Err(WormholeError::SessionClosed)),
            },
            cmd = commands.recv(), if commands_open => {
                if matches!(cmd, Some(TaskCommand::Close) | None) {
                    // what the streams wrote before close() was called is queued before the
                    // flush starts (the two channels are not ordered with each other)
                    while let Ok(sub) = sub_rx.try_recv() {
                        t.sub_command(sub);
                    }
                }
                match cmd {
                    Some(TaskCommand::SendMessage(m)) => wormhole.send_message(m),
                    Some(TaskCommand::Ping(n)) => wormhole.ping(n),
                    Some(cmd) => t.command(cmd),
                    None => {
                        commands_open = false;
                        t.ep.close(Instant::now());
                    }
                }
            }
            Some(cmd) = sub_rx.recv() => t.sub_command(cmd),
            Some(event) = other_rx.recv() => t.net_event(event),
            Some(event) = records_rx.recv(), if reading => t.net_event(event),
            permit = async { writer.as_ref().expect("guarded").reserve().await }, if wants_transmit => {
                match permit {
                    Ok(permit) => {
                        let mut batch = Vec::new();
                        let _ = t.ep.poll_transmit(TRANSMIT_BATCH, |r| batch.push(r.clone()));
                        permit.send(batch);
                    }
                    // the writer is gone: the connection failed under it
                    Err(_) => {
                        if let Some((conn, _)) = t.link.take() {
                            t.ep.handle_conn_closed(Instant::now(), conn, "writer stopped");
                        }
                    }
                }
            }
            _ = t.resume.notified(), if !reading => t.recheck_paused(),
            _ = address_check.tick() => {
                let addresses = net::interface_addresses(t.ipv6);
                t.ep.handle_addresses(Instant::now(), addresses);
            }
            () = &mut timer, if armed.is_some() => {
                armed = None;
                t.ep.handle_timeout(Instant::now());
            }
        }
    };
    // stop everything below the wormhole, then close it
    t.ep.stop(Instant::now());
    t.conns.clear();
    t.link = None;
    t.tasks.abort_all();
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

    /// Carries out the endpoint's actions and delivers its events, until none are left.
    async fn pump(&mut self, wormhole: &mut Wormhole) {
        loop {
            let mut progressed = false;
            while let Some(action) = self.ep.poll_action() {
                progressed = true;
                self.action(wormhole, action).await;
            }
            while let Some(event) = self.ep.poll_event() {
                progressed = true;
                self.event(event);
            }
            if !progressed {
                return;
            }
        }
    }

    async fn action(&mut self, wormhole: &mut Wormhole, action: Action) {
        match action {
            Action::SendDilate(body) => wormhole.send_dilate(body),
            Action::Listen {
                generation,
                loopback,
            } => {
                let reports = self.reports.clone();
                let listening = net::listen(&mut self.tasks, generation, loopback, reports).await;
                let reachable = listening.map(|(port, addresses, ipv6, task)| {
                    self.listener = Some(task);
                    self.ipv6 = ipv6;
                    (port, addresses)
                });
                self.ep
                    .handle_listening(Instant::now(), generation, reachable);
            }
            Action::StopListening => {
                if let Some(l) = self.listener.take() {
                    l.abort();
                }
            }
            Action::Dial {
                conn,
                host,
                port,
                path,
                ..
            } => {
                let proxy = self.proxy.clone();
                let reports = self.reports.clone();
                let relay = path == crate::dilation::PathKind::Relay;
                let handle = net::dial(&mut self.tasks, conn, host, port, relay, proxy, reports);
                self.conns.insert(conn, handle);
            }
            Action::Transmit { conn, bytes } => {
                if let Some(c) = self.conns.get(&conn) {
                    let _ = c.commands.send(ConnCommand::Write(bytes));
                }
            }
            Action::Close { conn } => {
                self.conns.remove(&conn);
                if self.link.as_ref().is_some_and(|(id, _)| *id == conn) {
                    self.link = None;
                }
            }
            Action::StartLink { conn, send, recv } => {
                let (writer, batches) = mpsc::channel(WRITE_BATCHES);
                if let Some(c) = self.conns.get(&conn) {
                    let _ = c.commands.send(ConnCommand::Link {
                        send,
                        recv,
                        batches,
                    });
                }
                self.link = Some((conn, writer));
            }
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Status(status) => self.emit(status),
            Event::ConnectionLost { .. } => {}
            Event::Opened {
                id,
                subprotocol,
                result,
            } => {
                let sub = result.map(|scid| self.new_subchannel(scid, &subprotocol));
                if let Some(reply) = self.opens.remove(&id) {
                    let _ = reply.send(sub);
                }
            }
            Event::Incoming {
                scid,
                subprotocol,
                listened,
            } => {
                let sub = self.new_subchannel(scid, &subprotocol);
                let sub = match (listened, self.listeners.get(&subprotocol)) {
                    (true, Some(accept)) => match accept.send(sub) {
                        Ok(()) => return,
                        Err(mpsc::error::SendError(sub)) => {
                            self.listeners.remove(&subprotocol);
                            self.ep.listener_gone(&subprotocol, scid);
                            sub
                        }
                    },
                    _ => sub,
                };
                self.held.entry(subprotocol).or_default().push_back(sub);
            }
            Event::Data { scid, data } => {
                if let Some(shared) = self.subs.get(&scid) {
                    if shared.push(data) {
                        self.ep.handle_backlog(scid, true);
                    }
                }
            }
            Event::ReadClosed { scid } => {
                if let Some(shared) = self.subs.get(&scid) {
                    shared.finish();
                }
            }
            Event::Closed { scid } => {
                if let Some(shared) = self.subs.get(&scid) {
                    shared.refuse_writes();
                }
            }
            Event::Sent { data_bytes } => self.budget.add_permits(data_bytes),
            Event::Credit { scid, consumed } => {
                if let Some(shared) = self.subs.get(&scid) {
                    shared.credit(consumed);
                }
            }
        }
    }

    fn new_subchannel(&mut self, scid: Scid, subprotocol: &str) -> Subchannel {
        // with flow control the peer cannot send more than our window: the pause (at twice it)
        // is left for a peer that ignores it
        let flow = self
            .ep
            .peer_window()
            .map(|w| Flow::new(w, self.inbound_limit / 4));
        let limit = match flow {
            Some(_) => self.inbound_limit * 2,
            None => self.inbound_limit,
        };
        let shared = Shared::new(limit, self.resume.clone(), flow);
        self.subs.insert(scid, shared.clone());
        Subchannel::new(
            scid,
            subprotocol,
            shared,
            self.sub_tx.clone(),
            self.budget.clone(),
        )
    }

    fn command(&mut self, cmd: TaskCommand) {
        match cmd {
            TaskCommand::Open { subprotocol, reply } => {
                let id = self.ep.open(&subprotocol);
                self.opens.insert(id, reply);
            }
            TaskCommand::Listen {
                subprotocol,
                accept,
            } => {
                for sub in self.held.remove(&subprotocol).unwrap_or_default() {
                    let _ = accept.send(sub);
                }
                self.listeners.insert(subprotocol.clone(), accept);
                self.ep.listen(&subprotocol);
            }
            TaskCommand::SendMessage(_) | TaskCommand::Ping(_) => {
                unreachable!("handled by the loop")
            }
            TaskCommand::Close => self.ep.close(Instant::now()),
        }
    }

    fn sub_command(&mut self, cmd: SubCommand) {
        match cmd {
            SubCommand::Data { scid, data } => {
                let _ = self.ep.send_data(Instant::now(), scid, data);
            }
            SubCommand::Close { scid } => self.ep.close_subchannel(scid),
            SubCommand::Consumed { scid, total } => self.ep.consumed(scid, total),
            SubCommand::Dropped { scid } => {
                self.subs.remove(&scid);
                self.ep.subchannel_dropped(scid);
            }
        }
    }

    fn recheck_paused(&mut self) {
        let drained: Vec<Scid> = self
            .ep
            .paused()
            .filter(|scid| self.subs.get(scid).is_none_or(|s| !s.is_over_limit()))
            .collect();
        for scid in drained {
            self.ep.handle_backlog(scid, false);
        }
    }

    fn net_event(&mut self, event: NetEvent) {
        let now = Instant::now();
        match event {
            NetEvent::Accepted {
                generation,
                stream,
                peer,
                local,
            } => {
                if let Some(conn) = self.ep.handle_accepted(now, generation, peer, local) {
                    let handle = net::accepted(&mut self.tasks, conn, stream, self.reports.clone());
                    self.conns.insert(conn, handle);
                }
            }
            NetEvent::Open { conn, peer, local } => {
                self.ep.handle_conn_open(now, conn, peer, local)
            }
            NetEvent::Data { conn, data } => {
                self.ep.handle_conn_data(now, conn, &data);
                // read on only while it is handshaking: once selected (perhaps by these very
                // bytes, its link not started yet), what follows belongs to the link
                if let (true, Some(c)) = (self.ep.wants_conn_data(conn), self.conns.get(&conn)) {
                    let _ = c.commands.send(ConnCommand::Read);
                }
            }
            NetEvent::Records { conn, records } => self.ep.handle_records(now, conn, records),
            NetEvent::Closed { conn, reason } => {
                self.conns.remove(&conn);
                self.ep.handle_conn_closed(now, conn, &reason);
            }
        }
    }

    fn wormhole_event(&mut self, wormhole: &Wormhole, event: WormholeEvent) {
        let now = Instant::now();
        match event {
            WormholeEvent::Dilate(bytes) => self.ep.handle_dilate(now, &bytes),
            other => {
                if let WormholeEvent::KeyConfirmed { dilation_key, .. } = &other {
                    self.ep.handle_key(now, *dilation_key);
                }
                self.emit(DilationEvent::Wormhole(other));
            }
        }
        if let Some(versions) = wormhole.peer_can_dilate() {
            self.ep.handle_peer_versions(now, versions.to_vec());
        }
    }
}
