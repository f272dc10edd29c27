//! One fowld session: the wormhole until the key is confirmed, then the dilated session with the
//! forwarding engine, and the graceful close (reference §3.2, §4.5, §5.2).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::commands::{Command, DEFAULT_CLOSE_TIMEOUT};
use super::io::{self, Input};
use crate::dilation::{Dilated, DilationEvent, RelayLocation};
use crate::forward::Engine;
use crate::forward::{app_versions, dilation_config};
use crate::forward::{Event, EventQueue, Status};
use crate::remember::{
    self, Generation, Meeting, PeerFile, PeerStore, RememberAction, RememberMessage, Remembering,
};
use crate::wormhole::{Mood, Wormhole, WormholeConfig, WormholeError, WormholeEvent};

/// Exit status after `closed` was reported.
pub const EXIT_CLOSED: i32 = 0;
/// Exit status when a `session-close` timeout expired before the session closed (no `closed`).
pub const EXIT_CLOSE_TIMEOUT: i32 = 1;
/// How long a closing side waits for the peer's `closing` (as Python's fowld).
const WAIT_FOR_CLOSING: Duration = Duration::from_millis(1200);
/// The refusal of a second `allocate-code`, `set-code` or `connect`.
const CODE_GIVEN: &str = "a code was already allocated or set for this session";
/// How long closing a wormhole that never met its peer may take.
const LONELY_CLOSE: Duration = Duration::from_secs(1);

/// How fowld runs.
#[derive(Debug, Clone)]
pub struct FowldOptions {
    /// The mailbox server's URL (`ws://` or `wss://`).
    pub mailbox_url: String,
    /// Transit relay for Dilation; `None`: no relay, direct connections only.
    pub relay: Option<RelayLocation>,
    /// Offer no direct hints (no listener for direct connections).
    pub no_listen: bool,
    /// The Dilation liveness interval ([`DilationConfig::liveness_interval`](crate::dilation::DilationConfig::liveness_interval)).
    pub liveness: Duration,
    /// Opt-in status kinds: `dilation-connected`, `dilation-lost`, `dilation-reconnecting`.
    pub status_events: bool,
    /// Extra CA certificates (DER) for a wss:// mailbox.
    pub extra_root_certificates: Vec<Vec<u8>>,
    /// The application id (fowl's: [`crate::forward::APPID`]).
    pub appid: String,
    /// Privacy mode: the mailbox and relays through this SOCKS5 proxy, no direct connections.
    pub proxy: Option<crate::proxy::Socks5Proxy>,
}

/// Runs fowld on stdin/stdout until the session ends; returns the exit status.
pub async fn run(opts: FowldOptions) -> i32 {
    let queue = EventQueue::default();
    let writer = io::stdout_writer(queue.clone());
    let shutdown = crate::interfaces::server::shutdown_signal();
    let code = run_with(opts, io::stdin_lines(), queue.clone(), shutdown).await;
    queue.close();
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    code
}

/// Runs one session fed by `input`, reporting everything to `out` (session lines as
/// `Event::Status`, engine events as they are), until the session ends or `shutdown` completes
/// (then it closes gracefully). The human CLI drives it this way.
pub async fn run_with(
    opts: FowldOptions,
    input: mpsc::Receiver<Input>,
    out: EventQueue,
    shutdown: impl std::future::Future<Output = ()>,
) -> i32 {
    let meeting = Meeting {
        mailbox_url: opts.mailbox_url.clone(),
        appid: opts.appid.clone(),
        relay: opts.relay.as_ref().map(|r| r.to_string()),
    };
    let session = Session {
        out,
        pings: HashMap::new(),
        next_ping: 1,
        opts,
        remembering: Remembering::pairing(meeting),
        store: None,
        peer_name: None,
    };
    session.run(input, shutdown).await
}

struct Session {
    out: EventQueue,
    opts: FowldOptions,
    /// Mailbox ping number -> (the controller's ping_id, when sent).
    pings: HashMap<i64, (Value, Instant)>,
    next_ping: i64,
    /// Remembering the peer: asked for, or rotating after a reconnection by name.
    remembering: Remembering,
    /// The remembered peers' folder, once needed.
    store: Option<PeerStore>,
    /// The remembered peer this session meets (after `connect`).
    peer_name: Option<String>,
}

/// How the first phase ended.
enum Keyed {
    Ready {
        wormhole: Box<Wormhole>,
        verifier: String,
        versions: Value,
        pending: Vec<Command>,
    },
    /// `connect`: meet this remembered peer instead (its file loaded).
    Connect {
        file: Box<PeerFile>,
        wormhole: Box<Wormhole>,
        pending: Vec<Command>,
    },
    Exit(i32),
}

/// A mailbox where a remembered peer may be met (`connect`).
struct Candidate {
    w: Wormhole,
    generation: Generation,
    verifier: Option<crate::key::Key>,
    versions: Option<Value>,
}

impl Candidate {
    fn met(&self) -> bool {
        self.verifier.is_some() && self.versions.is_some()
    }
}

fn is_closing(message: &[u8]) -> bool {
    serde_json::from_slice::<Value>(message)
        .ok()
        .and_then(|v| v.as_object().map(|o| o.contains_key("closing")))
        .unwrap_or(false)
}

impl Session {
    fn emit(&self, status: Status) {
        self.out.push(Event::Status(status));
    }

    fn error(&self, message: impl Into<String>) {
        self.out.push(Event::Error(message.into()));
    }

    fn report_closed(&self, result: Result<Mood, WormholeError>) -> i32 {
        match result {
            Ok(mood) => self.emit(Status::Closed { mood }),
            Err(WormholeError::WrongCode) if self.peer_name.is_some() => {
                let name = self.peer_name.as_deref().unwrap_or_default();
                self.error(format!(
                    "key confirmation with the remembered peer {name} failed: its secret differs \
                     from ours (a stale or edited file on one side, or someone else at the \
                     rendezvous); `fowl forget {name}` and pair again with a code"
                ));
                self.emit(Status::Closed { mood: Mood::Scary });
            }
            Err(WormholeError::WrongCode) => {
                self.error(
                    "wrong code: key confirmation failed (a typo in the code, or someone guessing it)",
                );
                self.emit(Status::Closed { mood: Mood::Scary });
            }
            Err(e) => {
                self.error(e.to_string());
                self.emit(Status::Closed { mood: Mood::Errory });
            }
        }
        EXIT_CLOSED
    }

    fn ping(&mut self, ping_id: Value) -> i64 {
        let n = self.next_ping;
        self.next_ping += 1;
        self.pings.insert(n, (ping_id, Instant::now()));
        n
    }

    fn pong(&mut self, n: i64) {
        if let Some((ping_id, sent)) = self.pings.remove(&n) {
            let time_of_flight = sent.elapsed().as_secs_f64();
            self.emit(Status::Pong {
                ping_id,
                time_of_flight,
            });
        }
    }

    async fn run(
        mut self,
        mut input: mpsc::Receiver<Input>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> i32 {
        let mut shutdown = std::pin::pin!(shutdown);
        let wormhole = match Wormhole::connect(self.wormhole_config(false)).await {
            Ok(w) => w,
            Err(e) => return self.report_closed(Err(e)),
        };
        let mut keyed = self.until_keyed(wormhole, &mut input, &mut shutdown).await;
        if let Keyed::Connect {
            file,
            wormhole,
            pending,
        } = keyed
        {
            // the first connection named no mailbox: closing it is immediate
            let _ = tokio::time::timeout(LONELY_CLOSE, wormhole.close()).await;
            keyed = self
                .rendezvous(*file, pending, &mut input, &mut shutdown)
                .await;
        }
        let (wormhole, verifier, versions, pending) = match keyed {
            Keyed::Ready {
                wormhole,
                verifier,
                versions,
                pending,
            } => (wormhole, verifier, versions, pending),
            Keyed::Connect { .. } => unreachable!("replaced above"),
            Keyed::Exit(code) => return code,
        };
        if let Some(key) = wormhole.derive_key(remember::SECRET_PURPOSE) {
            let next = remember::Secret::from_bytes(key);
            self.remembering
                .handle_keyed(next, &versions, remember::unix_now());
            self.drive_remembering(|m| wormhole.send_message(m));
        }
        let mut config = dilation_config(self.opts.relay.clone(), self.opts.no_listen);
        config.liveness_interval = self.opts.liveness;
        config.proxy = self.opts.proxy.clone();
        let dilated = (*wormhole).dilate(config);
        let engine = Engine::start(dilated.handle(), self.out.clone());
        for cmd in pending {
            self.forwarding_command(&engine, &dilated, cmd);
        }
        self.dilated(
            dilated,
            engine,
            verifier,
            versions,
            &mut input,
            &mut shutdown,
        )
        .await
    }

    /// Phase one: codes, key confirmation, versions. `local`/`remote` wait for the engine.
    async fn until_keyed(
        &mut self,
        mut w: Wormhole,
        input: &mut mpsc::Receiver<Input>,
        shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
    ) -> Keyed {
        let (mut verifier, mut versions) = (None, None);
        let mut pending = Vec::new();
        let mut code_given = false;
        loop {
            if let (Some(v), Some(vs)) = (&verifier, &versions) {
                return Keyed::Ready {
                    verifier: hex::encode(v),
                    versions: Value::clone(vs),
                    wormhole: Box::new(w),
                    pending,
                };
            }
            tokio::select! {
                event = w.next_event() => match event {
                    Some(WormholeEvent::Welcome { welcome, .. }) => self.welcome(welcome),
                    Some(WormholeEvent::CodeAllocated(code)) => {
                        self.emit(Status::CodeAllocated { code })
                    }
                    Some(WormholeEvent::KeyConfirmed { verifier: v, .. }) => verifier = Some(v),
                    Some(WormholeEvent::PeerVersions { app_versions, .. }) => {
                        versions = Some(app_versions)
                    }
                    Some(WormholeEvent::Pong(n)) => self.pong(n),
                    Some(WormholeEvent::Closed(result)) => {
                        return Keyed::Exit(self.report_closed(result))
                    }
                    Some(_) => {}
                    None => {
                        return Keyed::Exit(self.report_closed(Err(WormholeError::SessionClosed)))
                    }
                },
                got = input.recv() => {
                    let Some(cmd) = Input::into_command(got) else {
                        return Keyed::Exit(self.close_lonely(w).await);
                    };
                    match cmd {
                        Err(e) => self.error(e.to_string()),
                        Ok(Command::AllocateCode { .. } | Command::SetCode { .. }) if code_given => {
                            self.error(CODE_GIVEN)
                        }
                        Ok(Command::AllocateCode { length }) => {
                            code_given = true;
                            w.allocate_code(length);
                        }
                        Ok(Command::SetCode { code }) => match w.set_code(&code).await {
                            Ok(()) => {
                                code_given = true;
                                self.emit(Status::CodeAllocated { code });
                            }
                            Err(e) => self.error(e.to_string()),
                        },
                        Ok(Command::Connect { .. }) if code_given => {
                            self.error(CODE_GIVEN)
                        }
                        Ok(Command::Connect { name }) => match self.load_peer(&name) {
                            Ok(file) => {
                                return Keyed::Connect {
                                    file: Box::new(file),
                                    wormhole: Box::new(w),
                                    pending,
                                }
                            }
                            Err(e) => self.error(e.to_string()),
                        },
                        Ok(Command::Remember { name }) => self.remember(&name),
                        Ok(Command::SessionClose { .. }) => {
                            return Keyed::Exit(self.close_lonely(w).await)
                        }
                        Ok(Command::Ping { ping_id }) => {
                            let n = self.ping(ping_id);
                            w.ping(n);
                        }
                        Ok(cmd @ (Command::Local(_) | Command::Remote(_))) => pending.push(cmd),
                    }
                }
                _ = &mut *shutdown => return Keyed::Exit(self.close_lonely(w).await),
            }
        }
    }

    /// The wormhole configuration for the session's mailbox server and app id, with our
    /// versions (`pending`: we wait at two generations of a remembered secret).
    fn wormhole_config(&self, pending: bool) -> WormholeConfig {
        let mut config = WormholeConfig::new(&self.opts.appid, &self.opts.mailbox_url);
        config.app_versions = app_versions();
        remember::advertise(&mut config.app_versions, pending);
        config.dilation = true;
        config.extra_root_certificates = self.opts.extra_root_certificates.clone();
        config.proxy = self.opts.proxy.clone();
        config
    }

    /// The mailbox server's `welcome`, reported.
    fn welcome(&self, welcome: Value) {
        self.emit(Status::Welcome {
            url: self.opts.mailbox_url.clone(),
            welcome,
            proxy: self.opts.proxy.as_ref().map(|p| p.to_string()),
        });
    }

    /// The session ends: a pairing that did not complete is reported (no message can go out).
    fn end_remembering(&mut self) {
        self.remembering.handle_close();
        self.drive_remembering(|_| {});
    }

    /// The remembered peers' folder (opened once).
    fn store(&mut self) -> Result<&PeerStore, remember::RememberError> {
        if self.store.is_none() {
            self.store = Some(PeerStore::open_default()?);
        }
        Ok(self.store.as_ref().expect("set above"))
    }

    fn load_peer(&mut self, name: &str) -> Result<PeerFile, remember::RememberError> {
        self.store()?.load(name)
    }

    /// `remember NAME`: asks to remember the peer (refused when the name is taken, or when this
    /// session met a remembered peer already).
    fn remember(&mut self, name: &str) {
        if self.peer_name.is_some() {
            return self.error("this session met a remembered peer: it is remembered already");
        }
        if let Some(asked) = self.remembering.name() {
            return self.error(format!("already asked to remember the peer as {asked:?}"));
        }
        let taken = match self.store() {
            Ok(store) => store.contains(name),
            Err(e) => return self.error(e.to_string()),
        };
        if taken {
            return self.error(remember::RememberError::Exists(name.into()).to_string());
        }
        self.remembering.handle_request(name, remember::unix_now());
    }

    /// Carries out what the agreement asks: saves files, sends messages with `send`, reports.
    fn drive_remembering(&mut self, send: impl Fn(Vec<u8>)) {
        while let Some(action) = self.remembering.poll_action() {
            match action {
                RememberAction::Save(file) => {
                    if let Err(e) = self.store().and_then(|s| s.save(&file)) {
                        self.error(format!("could not store the remembered peer: {e}"));
                        self.remembering.handle_save_failed();
                    }
                }
                RememberAction::Send(message) => send(message.to_bytes()),
                RememberAction::Report(report) => self.emit(Status::Remember(report)),
            }
        }
    }

    /// `connect NAME`: meets the remembered peer at the rendezvous of each generation its file
    /// holds (two while a rotation is unconfirmed), and keeps the first that meets it: the newest,
    /// unless the peer there says it waits at the newer one too (then that one is awaited).
    async fn rendezvous(
        &mut self,
        file: PeerFile,
        mut pending: Vec<Command>,
        input: &mut mpsc::Receiver<Input>,
        shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
    ) -> Keyed {
        self.peer_name = Some(file.name.clone());
        self.opts.mailbox_url = file.mailbox_url.clone();
        self.opts.appid = file.appid.clone();
        if let (Some(_), Some(relay)) = (&self.opts.relay, &file.relay) {
            match relay.parse() {
                Ok(relay) => self.opts.relay = Some(relay),
                Err(e) => self.error(format!("the remembered relay is not usable: {e}")),
            }
        }
        let config = self.wormhole_config(file.pending());
        let mut candidates: Vec<Candidate> = Vec::new();
        for generation in file.meeting_points() {
            let meet = generation.secret.rendezvous();
            let started = match Wormhole::connect(config.clone()).await {
                Ok(w) => w
                    .set_rendezvous(&meet.mailbox, &meet.password)
                    .await
                    .map(|()| w),
                Err(e) => Err(e),
            };
            match started {
                Ok(w) => candidates.push(Candidate {
                    w,
                    generation,
                    verifier: None,
                    versions: None,
                }),
                Err(e) => return Keyed::Exit(self.report_closed(Err(e))),
            }
        }
        self.emit(Status::Rendezvous {
            name: file.name.clone(),
            generations: candidates.iter().map(|c| c.generation.number).collect(),
        });
        let mut welcomed = false;
        loop {
            // a candidate that met the peer: kept, or left for the newer one
            while let Some(i) = candidates.iter().position(Candidate::met) {
                let c = candidates.remove(i);
                let versions = c.versions.clone().unwrap_or_default();
                if !remember::keep_meeting(i, &versions) {
                    tracing::info!(
                        "the peer waits at generation {} too: meeting there",
                        candidates[0].generation.number
                    );
                    drop(c); // closed politely in the background
                    continue;
                }
                drop(candidates); // the others: closed in the background
                self.remembering = Remembering::reconnect(file, c.generation);
                return Keyed::Ready {
                    verifier: hex::encode(c.verifier.unwrap_or_default()),
                    versions,
                    wormhole: Box::new(c.w),
                    pending,
                };
            }
            let (first, rest) = candidates.split_at_mut(1);
            tokio::select! {
                event = first[0].w.next_event() => {
                    if let Some(code) = self.candidate_event(&mut first[0], event, &mut welcomed) {
                        return Keyed::Exit(code);
                    }
                }
                event = async { rest[0].w.next_event().await }, if !rest.is_empty() => {
                    if let Some(code) = self.candidate_event(&mut rest[0], event, &mut welcomed) {
                        return Keyed::Exit(code);
                    }
                }
                got = input.recv() => {
                    let Some(cmd) = Input::into_command(got) else {
                        return Keyed::Exit(self.close_candidates(candidates).await);
                    };
                    match cmd {
                        Err(e) => self.error(e.to_string()),
                        Ok(Command::SessionClose { .. }) => {
                            return Keyed::Exit(self.close_candidates(candidates).await)
                        }
                        Ok(Command::Ping { ping_id }) => {
                            let n = self.ping(ping_id);
                            first[0].w.ping(n);
                        }
                        Ok(cmd @ (Command::Local(_) | Command::Remote(_))) => pending.push(cmd),
                        Ok(Command::Remember { .. }) => {
                            self.error("this session meets a remembered peer: it is remembered already")
                        }
                        Ok(_) => self.error(CODE_GIVEN),
                    }
                }
                _ = &mut *shutdown => return Keyed::Exit(self.close_candidates(candidates).await),
            }
        }
    }

    /// One event of a rendezvous candidate; `Some(exit status)` when the session is over.
    fn candidate_event(
        &mut self,
        c: &mut Candidate,
        event: Option<WormholeEvent>,
        welcomed: &mut bool,
    ) -> Option<i32> {
        match event {
            Some(WormholeEvent::Welcome { welcome, .. }) if !*welcomed => {
                *welcomed = true;
                self.welcome(welcome);
            }
            Some(WormholeEvent::KeyConfirmed { verifier, .. }) => c.verifier = Some(verifier),
            Some(WormholeEvent::PeerVersions { app_versions, .. }) => {
                c.versions = Some(app_versions)
            }
            Some(WormholeEvent::Pong(n)) => self.pong(n),
            // one failing ends the whole: a wrong secret is not retried at the other mailbox
            Some(WormholeEvent::Closed(result)) => return Some(self.report_closed(result)),
            None => return Some(self.report_closed(Err(WormholeError::SessionClosed))),
            Some(_) => {}
        }
        None
    }

    async fn close_candidates(&self, candidates: Vec<Candidate>) -> i32 {
        let closes = candidates.into_iter().map(|c| c.w.close());
        let all = futures_util::future::join_all(closes);
        match tokio::time::timeout(LONELY_CLOSE, all).await {
            Ok(results) => {
                self.report_closed(results.into_iter().next().unwrap_or(Ok(Mood::Lonely)))
            }
            Err(_) => self.report_closed(Ok(Mood::Lonely)),
        }
    }

    async fn close_lonely(&self, w: Wormhole) -> i32 {
        match tokio::time::timeout(LONELY_CLOSE, w.close()).await {
            Ok(result) => self.report_closed(result),
            Err(_) => self.report_closed(Ok(Mood::Lonely)),
        }
    }

    fn forwarding_command(&mut self, engine: &Engine, d: &Dilated, cmd: Command) {
        match cmd {
            Command::Local(spec) => engine.local(spec),
            Command::Remote(spec) => engine.remote(spec),
            Command::Ping { ping_id } => {
                let n = self.ping(ping_id);
                d.handle().ping(n);
            }
            Command::AllocateCode { .. } | Command::SetCode { .. } | Command::Connect { .. } => {
                self.error(CODE_GIVEN)
            }
            Command::Remember { name } => {
                self.remember(&name);
                self.drive_remembering(|m| d.send_message(m));
            }
            Command::SessionClose { .. } => unreachable!("handled by the caller"),
        }
    }

    /// Phase two: the dilated session, until it closes.
    async fn dilated(
        &mut self,
        mut d: Dilated,
        engine: Engine,
        verifier: String,
        versions: Value,
        input: &mut mpsc::Receiver<Input>,
        shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
    ) -> i32 {
        let mut peer_connected = false;
        loop {
            tokio::select! {
                event = d.next_event() => match event {
                    Some(DilationEvent::Connected { generation, path, peer, outage }) => {
                        if !peer_connected {
                            peer_connected = true;
                            self.emit(Status::PeerConnected {
                                verifier: verifier.clone(),
                                versions: versions.clone(),
                            });
                        }
                        if self.opts.status_events {
                            self.emit(Status::DilationConnected { generation, path, peer, outage });
                        }
                    }
                    Some(DilationEvent::Lost { generation, reason }) if self.opts.status_events => {
                        self.emit(Status::DilationLost { generation, reason })
                    }
                    Some(DilationEvent::Reconnecting { generation, attempt }) if self.opts.status_events => {
                        self.emit(Status::DilationReconnecting { generation, attempt })
                    }
                    Some(DilationEvent::Failed(e)) => self.error(e.to_string()),
                    // already at most one per kind and second: never suppressed
                    Some(DilationEvent::PeerAbuse { abuse, count }) => self.error(format!(
                        "the peer went over a bound: {count} {abuse}; the session goes on"
                    )),
                    Some(DilationEvent::Wormhole(WormholeEvent::Message(m))) if is_closing(&m) => {
                        return self.close(d, &engine, DEFAULT_CLOSE_TIMEOUT, true).await
                    }
                    Some(DilationEvent::Wormhole(WormholeEvent::Message(m))) => {
                        if let Some(message) = RememberMessage::parse(&m) {
                            self.remembering.handle_message(message, remember::unix_now());
                            self.drive_remembering(|m| d.send_message(m));
                        }
                    }
                    Some(DilationEvent::Wormhole(WormholeEvent::Pong(n))) => self.pong(n),
                    Some(DilationEvent::Wormhole(WormholeEvent::Closed(result))) => {
                        self.end_remembering();
                        return self.report_closed(result)
                    }
                    Some(_) => {}
                    None => return self.report_closed(Err(WormholeError::SessionClosed)),
                },
                got = input.recv() => {
                    let Some(cmd) = Input::into_command(got) else {
                        return self.close(d, &engine, DEFAULT_CLOSE_TIMEOUT, false).await;
                    };
                    match cmd {
                        Err(e) => self.error(e.to_string()),
                        Ok(Command::SessionClose { timeout }) => {
                            return self.close(d, &engine, timeout, false).await
                        }
                        Ok(cmd) => self.forwarding_command(&engine, &d, cmd),
                    }
                }
                _ = &mut *shutdown => {
                    return self.close(d, &engine, DEFAULT_CLOSE_TIMEOUT, false).await
                }
            }
        }
    }

    /// The graceful close: stop our listeners, send `closing`, wait briefly for the peer's (unless
    /// it came first), close the wormhole. The whole is bounded by `timeout`; when that expires
    /// nothing is reported and the exit status is [`EXIT_CLOSE_TIMEOUT`].
    async fn close(
        &mut self,
        mut d: Dilated,
        engine: &Engine,
        timeout: f64,
        peer_first: bool,
    ) -> i32 {
        self.end_remembering();
        engine.stop_listeners();
        d.send_message(json!({"closing": 0}).to_string().into_bytes());
        let all = async {
            if !peer_first {
                let _ = tokio::time::timeout(
                    WAIT_FOR_CLOSING,
                    d.wait_for(|e| match e {
                        DilationEvent::Wormhole(WormholeEvent::Message(m)) if is_closing(m) => {
                            Some(())
                        }
                        DilationEvent::Wormhole(WormholeEvent::Closed(_)) => Some(()),
                        _ => None,
                    }),
                )
                .await;
            }
            d.close().await
        };
        match tokio::time::timeout(Duration::from_secs_f64(timeout), all).await {
            Ok(result) => self.report_closed(result),
            Err(_) => EXIT_CLOSE_TIMEOUT,
        }
    }
}
