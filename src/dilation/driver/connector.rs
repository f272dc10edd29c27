//! The connector of one generation: a fresh listener and our hints, dials to every peer hint and
//! to the relays (retried with backoff until the generation ends), and the L2 handshake on each
//! connection. Connections whose peer KCM arrived are handed to the Dilation task as candidates.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::dilation::hints::{Hint, RelayLocation};
use crate::dilation::l2::{relay_line, L2Connection, L2Error, L2Event, Role};
use crate::key::{self, Key};

/// How a connection reaches the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Direct,
    Relay,
}

impl std::fmt::Display for PathKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PathKind::Direct => "direct",
            PathKind::Relay => "relay",
        })
    }
}

/// A connection whose handshake completed and whose peer KCM arrived.
pub(crate) struct Candidate {
    pub generation: u32,
    pub stream: TcpStream,
    pub l2: L2Connection,
    /// Events that arrived after the KCM, in the same reads.
    pub events: Vec<L2Event>,
    pub path: PathKind,
    pub peer: SocketAddr,
}

pub(crate) enum ConnectorEvent {
    Hints { generation: u32, hints: Vec<Hint> },
    Candidate(Box<Candidate>),
}

/// Everything a generation's connector needs.
#[derive(Clone)]
pub(crate) struct ConnectorConfig {
    pub role: Role,
    pub generation: u32,
    pub psk: Key,
    pub side: String,
    pub relay: Option<RelayLocation>,
    pub no_listen: bool,
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    /// Follower: how long our KCM waits on a relay connection while a direct path is possible.
    pub relay_grace: Duration,
    /// Set once a direct path is possible in this generation (we listen, or the peer gave direct
    /// hints).
    pub direct_possible: Arc<AtomicBool>,
}

/// Dial retry backoff: 250 ms doubling to 5 s.
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(5);

pub(crate) struct Connector {
    config: ConnectorConfig,
    events: mpsc::Sender<ConnectorEvent>,
    tasks: JoinSet<()>,
}

impl Connector {
    /// Starts a generation: listener and hints (reported as an event), our own relay.
    pub async fn start(config: ConnectorConfig, events: mpsc::Sender<ConnectorEvent>) -> Connector {
        let mut c = Connector {
            config,
            events,
            tasks: JoinSet::new(),
        };
        let mut hints = Vec::new();
        if !c.config.no_listen {
            match bind_listener().await {
                Ok(listener) => {
                    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
                    let dual = listener.local_addr().is_ok_and(|a| a.is_ipv6());
                    hints.extend(direct_hints(port, dual));
                    c.config.direct_possible.store(true, Ordering::Relaxed);
                    let (config, events) = (c.config.clone(), c.events.clone());
                    c.tasks.spawn(accept_loop(listener, config, events));
                }
                Err(e) => tracing::warn!("cannot listen for direct connections: {e}"),
            }
        }
        if let Some(relay) = c.config.relay.clone() {
            hints.push(relay.hint());
            c.dial(relay.host.clone(), relay.port, PathKind::Relay);
        }
        let _ = c
            .events
            .send(ConnectorEvent::Hints {
                generation: c.config.generation,
                hints,
            })
            .await;
        c
    }

    /// Dials the peer's hints (Tor hints are skipped: we do not speak Tor).
    pub fn use_hints(&mut self, hints: Vec<Hint>) {
        for hint in hints {
            match hint {
                Hint::DirectTcp { hostname, port, .. } => {
                    self.config.direct_possible.store(true, Ordering::Relaxed);
                    self.dial(hostname, port, PathKind::Direct)
                }
                Hint::Relay(inner) => {
                    for h in inner {
                        if let Hint::DirectTcp { hostname, port, .. } = h {
                            let ours = self
                                .config
                                .relay
                                .as_ref()
                                .is_some_and(|r| r.host == hostname && r.port == port);
                            if !ours {
                                self.dial(hostname, port, PathKind::Relay);
                            }
                        }
                    }
                }
                Hint::TorTcp { .. } => tracing::debug!("skipping a Tor hint"),
            }
        }
    }

    fn dial(&mut self, host: String, port: u16, path: PathKind) {
        let (config, events) = (self.config.clone(), self.events.clone());
        self.tasks.spawn(async move {
            let mut delay = FIRST_RETRY;
            loop {
                match dial_once(&config, &host, port, path).await {
                    Ok(candidate) => {
                        let _ = events
                            .send(ConnectorEvent::Candidate(Box::new(candidate)))
                            .await;
                        return;
                    }
                    Err(e) => tracing::debug!(
                        "{path} connection to {host}:{port} failed: {e}; retrying in {delay:?}"
                    ),
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY);
            }
        });
    }
}

async fn dial_once(
    config: &ConnectorConfig,
    host: &str,
    port: u16,
    path: PathKind,
) -> Result<Candidate, String> {
    let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let line =
        (path == PathKind::Relay).then(|| relay_line(&key::relay_token(&config.psk), &config.side));
    handshake(config, stream, line, path).await
}

async fn accept_loop(
    listener: TcpListener,
    config: ConnectorConfig,
    events: mpsc::Sender<ConnectorEvent>,
) {
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (config, events) = (config.clone(), events.clone());
                    handshakes.spawn(async move {
                        match handshake(&config, stream, None, PathKind::Direct).await {
                            Ok(c) => { let _ = events.send(ConnectorEvent::Candidate(Box::new(c))).await; }
                            Err(e) => tracing::debug!("inbound connection failed: {e}"),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
        }
    }
}

/// Runs the L2 handshake until the peer's KCM arrives.
async fn handshake(
    config: &ConnectorConfig,
    mut stream: TcpStream,
    relay: Option<Vec<u8>>,
    path: PathKind,
) -> Result<Candidate, String> {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().map_err(|e| e.to_string())?;
    let mut l2 = L2Connection::new(config.role, &config.psk, relay);
    if config.role == Role::Follower && path == PathKind::Relay {
        l2.hold_kcm();
    }
    let run = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let out = l2.take_output();
            if !out.is_empty() {
                stream.write_all(&out).await.map_err(|e| e.to_string())?;
            }
            if l2.kcm_held() {
                // give a direct connection the chance to reach the Leader first
                if config.direct_possible.load(Ordering::Relaxed) {
                    tokio::time::sleep(config.relay_grace).await;
                }
                l2.release_kcm();
                continue;
            }
            let mut events = Vec::new();
            let mut ready = false;
            while let Some(e) = l2.poll_event() {
                if ready {
                    events.push(e);
                } else {
                    ready = e == L2Event::Ready;
                }
            }
            if ready {
                return Ok(events);
            }
            let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err(L2Error::Closed.to_string());
            }
            l2.receive(&buf[..n]).map_err(|e| e.to_string())?;
        }
    };
    let events = tokio::time::timeout(config.handshake_timeout, run)
        .await
        .map_err(|_| "handshake timed out".to_string())??;
    Ok(Candidate {
        generation: config.generation,
        stream,
        l2,
        events,
        path,
        peer,
    })
}

async fn bind_listener() -> std::io::Result<TcpListener> {
    let dual = (|| {
        let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None)?;
        s.set_only_v6(false)?;
        s.set_nonblocking(true)?;
        s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)).into())?;
        s.listen(1024)?;
        TcpListener::from_std(s.into())
    })();
    match dual {
        Ok(l) => Ok(l),
        Err(_) => TcpListener::bind(("0.0.0.0", 0)).await,
    }
}

/// One direct hint per non-loopback interface address (IPv6 link-local ones need a scope and are
/// left out); loopback only when nothing else exists, as Python does.
fn direct_hints(port: u16, ipv6: bool) -> Vec<Hint> {
    let addrs: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .filter(|ip| match ip {
            IpAddr::V4(_) => true,
            IpAddr::V6(v6) => ipv6 && (v6.segments()[0] & 0xffc0) != 0xfe80,
        })
        .collect();
    let addrs = if addrs.is_empty() {
        vec![IpAddr::from([127, 0, 0, 1])]
    } else {
        addrs
    };
    addrs
        .into_iter()
        .map(|ip| Hint::direct(&ip.to_string(), port))
        .collect()
}
