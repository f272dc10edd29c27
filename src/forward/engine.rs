//! The forwarding engine (tokio): answers the peer's listener requests, asks the peer to listen
//! for our services, runs our listeners and forwards every stream over its own `fowl` subchannel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::task::AbortHandle;

use super::endpoint::{self, Listener, LocalStream};
use super::events::{Event, EventQueue, StreamId};
use super::frame;
use super::messages::{Command, Handshake, ListenerResponse, Reply};
use super::policy::{ConnectPlan, ConnectTo, LocalSpec, RemoteSpec, Services};
use super::{ForwardError, COMMANDS, STREAMS};
use crate::dilation::{DilatedHandle, Subchannel};

/// How long a peer may take to send a handshake or a reply.
const PEER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting to a local service may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

struct Inner {
    dilated: DilatedHandle,
    services: Mutex<Services>,
    events: EventQueue,
    next_id: AtomicU64,
    listeners: Mutex<Vec<AbortHandle>>,
    /// Our `fowl-commands` subchannels, kept open for the session: Python's roost stops the
    /// listener of a request whose subchannel closes.
    requests: Mutex<Vec<Subchannel>>,
}

/// A running engine; cheap to clone.
#[derive(Clone)]
pub struct Engine(Arc<Inner>);

impl Engine {
    /// Starts answering the peer on `dilated`; reports go to `events`.
    pub fn start(dilated: DilatedHandle, events: EventQueue) -> Engine {
        let engine = Engine(Arc::new(Inner {
            dilated,
            services: Mutex::new(Services::default()),
            events,
            next_id: AtomicU64::new(1),
            listeners: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
        }));
        let e = engine.clone();
        tokio::spawn(async move {
            let mut requests = e.0.dilated.listen(COMMANDS);
            while let Some(sub) = requests.accept().await {
                tokio::spawn(e.clone().serve_requests(sub));
            }
        });
        let e = engine.clone();
        tokio::spawn(async move {
            let mut streams = e.0.dilated.listen(STREAMS);
            while let Some(sub) = streams.accept().await {
                tokio::spawn(e.clone().serve_stream(sub));
            }
        });
        engine
    }

    fn services(&self) -> std::sync::MutexGuard<'_, Services> {
        self.0.services.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, event: Event) {
        self.0.events.push(event);
    }

    /// An `error` the peer caused (rate-limited: see [`super::EventQueue::push_peer_error`]).
    fn peer_error(&self, text: String) {
        self.0.events.push_peer_error(text);
    }

    fn next_id(&self) -> StreamId {
        self.0.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// `local`: the peer may ask us to listen for `spec.name`. Nothing is sent.
    pub fn local(&self, spec: LocalSpec) {
        self.services().add_local(spec);
    }

    /// `remote`: asks the peer to listen for `spec.name`; reports `awaiting-connect` or `error`.
    pub fn remote(&self, spec: RemoteSpec) {
        let request = match self.services().begin_remote(&spec) {
            Ok(r) => r,
            Err(e) => return self.emit(Event::Error(e.to_string())),
        };
        let e = self.clone();
        tokio::spawn(async move {
            if let Err(err) = e
                .request_listener(&spec, Command::RequestListener(request))
                .await
            {
                e.emit(Event::Error(err.to_string()));
            }
        });
    }

    async fn request_listener(
        &self,
        spec: &RemoteSpec,
        request: Command,
    ) -> Result<(), ForwardError> {
        let failed = |e: &dyn std::fmt::Display| ForwardError::Request {
            name: spec.name.clone(),
            reason: e.to_string(),
        };
        let mut sub = self
            .0
            .dilated
            .open(COMMANDS)
            .await
            .map_err(|e| failed(&e))?;
        sub.write_all(&request.encode())
            .await
            .map_err(|e| failed(&e))?;
        let fields = frame::read(&mut sub).await.map_err(|e| failed(&e))?;
        self.0
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sub);
        let response = match Command::decode(&fields).map_err(|e| failed(&e))? {
            Command::ListenerResponse(r) => r,
            other => return Err(failed(&format!("unexpected reply {other:?}"))),
        };
        let plan = self.services().on_response(spec, &response)?;
        let to = match plan {
            ConnectPlan::Ready(to) => to,
            ConnectPlan::NeedsPort { host } => {
                let to = ConnectTo::Tcp {
                    port: endpoint::free_port(&host)?,
                    host,
                };
                self.services().record(&spec.name, to.clone());
                to
            }
        };
        let (port, path) = match &to {
            ConnectTo::Tcp { port, .. } => (Some(*port), None),
            ConnectTo::Unix(p) => (None, Some(p.display().to_string())),
        };
        self.emit(Event::AwaitingConnect {
            name: spec.name.clone(),
            port,
            path,
        });
        Ok(())
    }

    /// Roost side: answers listener requests on one `fowl-commands` subchannel.
    async fn serve_requests(self, mut sub: Subchannel) {
        loop {
            let fields = match frame::read(&mut sub).await {
                Ok(f) => f,
                // the peer closed the subchannel, or the session ended: nothing to report
                Err(frame::FrameError::Truncated | frame::FrameError::Io(_)) => return,
                Err(e) => return self.peer_error(format!("bad listener request: {e}")),
            };
            let request = match Command::decode(&fields) {
                Ok(Command::RequestListener(r)) => r,
                Ok(Command::Unknown(kind)) => {
                    self.peer_error(format!("Unknown control command: {kind}"));
                    continue;
                }
                Ok(other) => {
                    self.peer_error(format!("Unknown control command: {other:?}"));
                    continue;
                }
                Err(e) => return self.peer_error(format!("bad listener request: {e}")),
            };
            let name = request.name.clone();
            let plan = self.services().on_request(&request);
            let opened = match plan {
                Ok(plan) => {
                    let opened = endpoint::listen(&plan.at).await;
                    if opened.is_err() {
                        self.services().listen_failed(&name);
                    }
                    opened
                        .map(|l| (l, plan.desired_port))
                        .map_err(ForwardError::from)
                }
                Err(e) => Err(ForwardError::from(e)),
            };
            let reply = match &opened {
                Ok((_, desired_port)) => ListenerResponse::Listening {
                    name: name.clone(),
                    desired_port: *desired_port,
                },
                Err(reason) => ListenerResponse::Refused {
                    name: name.clone(),
                    reason: reason.to_string(),
                },
            };
            if sub
                .write_all(&Command::ListenerResponse(reply).encode())
                .await
                .is_err()
            {
                return;
            }
            match opened {
                Ok((listener, _)) => {
                    self.emit(Event::Listening {
                        name: name.clone(),
                        port: listener.port(),
                        path: listener.path(),
                    });
                    let task = tokio::spawn(self.clone().run_listener(name, listener));
                    self.0
                        .listeners
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(task.abort_handle());
                }
                Err(reason) => {
                    self.peer_error(format!("Failed to listen on \"{name}\": {reason}"));
                    let reason = reason.to_string();
                    self.emit(Event::ListeningFailed { name, reason });
                }
            }
        }
    }

    /// Roost side: every local client gets its own `fowl` subchannel.
    async fn run_listener(self, name: String, listener: Listener) {
        loop {
            match listener.accept().await {
                Ok(local) => {
                    tokio::spawn(self.clone().outgoing(name.clone(), local));
                }
                Err(e) => {
                    tracing::warn!("listener for {name}: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn outgoing(self, name: String, local: LocalStream) {
        let id = self.next_id();
        let result = async {
            let mut sub = self.0.dilated.open(STREAMS).await?;
            let hs = Handshake { name: name.clone() }.encode()?;
            sub.write_all(&hs).await?;
            self.emit(Event::OutgoingConnection {
                name: name.clone(),
                id,
            });
            let reply = tokio::time::timeout(PEER_TIMEOUT, frame::read(&mut sub))
                .await
                .map_err(|_| ForwardError::NoReply)??;
            match Reply::decode(&reply) {
                Reply::Connected => super::copy::forward(local, sub, id, &self.0.events).await,
                Reply::Refused(reason) => Err(ForwardError::Refused(reason)),
            }
        }
        .await;
        if let Err(reason) = result {
            self.emit(Event::OutgoingLost {
                name: name.clone(),
                id,
                reason: reason.to_string(),
            });
        }
        self.emit(Event::OutgoingDone { name, id });
    }

    /// Fledge side: a stream for one of our services.
    async fn serve_stream(self, mut sub: Subchannel) {
        let handshake = match tokio::time::timeout(PEER_TIMEOUT, frame::read(&mut sub)).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => return tracing::debug!("bad stream handshake: {e}"),
            Err(_) => return tracing::debug!("no stream handshake from the peer"),
        };
        let id = self.next_id();
        let name = Handshake::decode(&handshake);
        self.emit(Event::IncomingConnection {
            name: name.clone(),
            id,
        });
        let target = self.services().on_stream(name.as_deref());
        let to = match target {
            Ok(to) => to,
            Err(reason) => {
                return self
                    .refuse_stream(sub, id, "Against local policy", reason.to_string())
                    .await
            }
        };
        let local = match tokio::time::timeout(CONNECT_TIMEOUT, endpoint::connect(&to)).await {
            Ok(Ok(local)) => local,
            Ok(Err(reason)) => {
                let reason = reason.to_string();
                return self.refuse_stream(sub, id, &reason, reason.clone()).await;
            }
            Err(_) => {
                let reason = "connection timed out";
                return self.refuse_stream(sub, id, reason, reason.into()).await;
            }
        };
        if sub.write_all(&Reply::Connected.encode()).await.is_err() {
            return self.emit(Event::IncomingLost {
                id,
                reason: "the peer closed the stream".into(),
            });
        }
        match super::copy::forward(local, sub, id, &self.0.events).await {
            Ok(()) => self.emit(Event::IncomingDone { id }),
            Err(reason) => self.emit(Event::IncomingLost {
                id,
                reason: reason.to_string(),
            }),
        }
    }

    /// Refuses a stream: the peer is told `told`, our controller `reason` (they differ for a
    /// policy refusal, where Python words the two differently).
    async fn refuse_stream(&self, mut sub: Subchannel, id: StreamId, told: &str, reason: String) {
        let _ = sub.write_all(&Reply::Refused(told.into()).encode()).await;
        let _ = sub.shutdown().await;
        self.emit(Event::IncomingLost { id, reason });
    }

    /// Stops every listener opened for the peer (on close); streams already forwarded go on.
    pub fn stop_listeners(&self) {
        for l in self
            .0
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            l.abort();
        }
    }
}
