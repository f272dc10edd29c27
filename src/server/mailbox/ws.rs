//! The WebSocket driver of the mailbox server: `ws://HOST:PORT/v1`, text frames.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use super::state::{ConnId, MailboxConfig, MailboxState, TlsFiles};
use super::store::Store;
use crate::mailbox::messages::MAX_SERVER_MESSAGE;
use crate::server::metrics::{Mood, ServerMetrics};
use crate::server::{AddressLimit, Refusals};

/// A connection's writer: frames to send, and the bytes of those not yet sent.
struct Sender {
    frames: mpsc::UnboundedSender<String>,
    queued: Arc<AtomicUsize>,
}

struct Shared {
    state: MailboxState,
    metrics: ServerMetrics,
    /// With `--db`: what changes is written here before the frames that depend on it go out.
    store: Option<Store>,
    senders: HashMap<ConnId, Sender>,
    next_id: ConnId,
    max_send_queue: usize,
}

impl Shared {
    /// Hands every pending frame to its connection's writer. A connection whose unsent frames
    /// would pass the send-queue bound (a client that does not read) is disconnected.
    fn flush(&mut self) {
        if let Some(store) = self.store.as_mut() {
            if let Err(e) = store.apply(self.state.take_changes()) {
                tracing::error!("mailbox server: {e}");
            }
            if let Err(e) = store.record_usage(self.state.take_usage()) {
                tracing::error!("mailbox server: usage record: {e}");
            }
        }
        for mood in self.state.take_moods() {
            self.metrics
                .mailbox_closes
                .get_or_create(&Mood::of(&mood))
                .inc();
        }
        self.metrics
            .mailbox_mailboxes
            .set(self.state.mailboxes() as i64);
        self.metrics
            .mailbox_stored_bytes
            .set(self.state.stored_bytes() as i64);
        while let Some((to, frame)) = self.state.poll_transmit() {
            let Some(tx) = self.senders.get(&to) else {
                continue;
            };
            let queued = tx.queued.fetch_add(frame.len(), Ordering::Relaxed) + frame.len();
            if queued > self.max_send_queue {
                tracing::warn!("mailbox server: disconnecting a client that does not read ({queued} bytes queued)");
                self.senders.remove(&to); // its writer sees the end and closes
                continue;
            }
            let _ = tx.frames.send(frame);
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A running mailbox server; dropping it stops accepting connections.
pub struct MailboxServerHandle {
    /// The address the server listens on.
    pub addr: SocketAddr,
    tls: bool,
    task: JoinHandle<()>,
}

impl MailboxServerHandle {
    /// The URL clients use (`wss://` when it serves TLS; the certificate must name the host
    /// clients connect to).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/v1", self.addr)
    }
}

impl Drop for MailboxServerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the mailbox protocol on `listener` until the handle is dropped.
pub fn serve(listener: TcpListener, config: MailboxConfig) -> std::io::Result<MailboxServerHandle> {
    let addr = listener.local_addr()?;
    let (state, store) = match &config.db {
        None => (MailboxState::new(config.clone()), None),
        Some(path) => {
            let store = Store::open(path).map_err(std::io::Error::other)?;
            let snapshot = store.load().map_err(std::io::Error::other)?;
            tracing::info!(
                "mailbox server: {} nameplates and {} mailboxes restored from {}",
                snapshot.nameplates.len(),
                snapshot.mailboxes.len(),
                path.display()
            );
            let state = MailboxState::restore(config.clone(), snapshot, now());
            (state, Some(store))
        }
    };
    let shared = Arc::new(Mutex::new(Shared {
        state,
        metrics: config.metrics.clone(),
        store,
        senders: HashMap::new(),
        next_id: 0,
        max_send_queue: config.max_send_queue,
    }));
    let bind_timeout = Duration::from_secs_f64(config.bind_timeout);
    let handshake_timeout = Duration::from_secs_f64(config.handshake_timeout);
    let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
    let tls_enabled = tls.is_some();
    let usage_retention = config.usage_retention;
    let metrics = config.metrics.clone();
    let addresses = AddressLimit::new(config.max_per_address);
    let prune_every = Duration::from_secs_f64(config.prune_interval);
    let max_connections = config.max_connections;
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        let mut prune = tokio::time::interval(prune_every);
        let mut refused = Refusals::new("mailbox server", metrics.mailbox_refused.clone());
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) if conns.len() < max_connections => {
                        let Some(slot) = addresses.admit(peer.ip()) else {
                            refused.refused("per_address", format_args!("{} has its fill of connections", peer.ip()));
                            continue;
                        };
                        let shared = shared.clone();
                        let tls = tls.clone();
                        conns.spawn(async move {
                            // the TLS handshake and the upgrade share one deadline
                            let accepted = accept(stream, tls, shared, bind_timeout);
                            match tokio::time::timeout(handshake_timeout, accepted).await {
                                Ok(Some(session)) => session.await,
                                Ok(None) => {}
                                Err(_) => tracing::debug!("mailbox server: WebSocket upgrade timed out"),
                            }
                            drop(slot);
                        });
                    }
                    Ok(_) => refused.refused("limit", format_args!("connection limit reached")),
                    Err(e) => {
                        tracing::warn!("mailbox server: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                _ = prune.tick() => {
                    let mut s = lock(&shared);
                    let pruned = s.state.prune(now());
                    let evicted = s.state.take_evicted();
                    for id in &evicted {
                        s.senders.remove(id); // its writer sees the end and closes
                    }
                    s.flush(); // the deletions reach the database
                    let before = now() - usage_retention;
                    if let Some(Err(e)) = s.store.as_mut().map(|st| st.forget_usage_before(before)) {
                        tracing::error!("mailbox server: usage record: {e}");
                    }
                    if pruned > 0 {
                        tracing::info!(
                            "mailbox server: pruned {pruned} expired mailboxes, closed {} \
                             connections listening to idle ones; {} bytes stored",
                            evicted.len(),
                            s.state.stored_bytes()
                        );
                    }
                }
            }
        }
    });
    Ok(MailboxServerHandle {
        addr,
        tls: tls_enabled,
        task,
    })
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

type Ws<S> = tokio_tungstenite::WebSocketStream<S>;

/// A TLS acceptor for the PEM files of `tls`.
fn tls_acceptor(tls: &TlsFiles) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        std::io::Error::other(format!("{what} {}: {e}", path.display()))
    };
    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|e| bad("TLS certificate", &tls.cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("TLS certificate", &tls.cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| bad("TLS key", &tls.key, &e))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("TLS certificate", &tls.cert, &e))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

type Session = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The TLS handshake (with `tls`) and the WebSocket upgrade of an accepted connection; the
/// session to run, or `None` if either fails.
async fn accept(
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Mutex<Shared>>,
    bind_timeout: Duration,
) -> Option<Session> {
    // the server answers with several small frames in a row (ack, then the answer): with
    // Nagle's algorithm the second waited for the client's delayed ACK, 40 ms per exchange
    let _ = stream.set_nodelay(true);
    Some(match tls {
        None => Box::pin(connection(upgrade(stream).await?, shared, bind_timeout)),
        Some(tls) => {
            let stream = tls.accept(stream).await.ok()?;
            Box::pin(connection(upgrade(stream).await?, shared, bind_timeout))
        }
    })
}

/// Longest wait for one frame to go out to a client.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// The WebSocket upgrade on path `/v1`; `None` if it fails.
#[allow(clippy::result_large_err)] // the handshake callback type is tungstenite's
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Option<Ws<S>> {
    let check_path = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if req.uri().path() == "/v1" {
            Ok(resp)
        } else {
            let mut e = ErrorResponse::new(Some("not found".into()));
            *e.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::NOT_FOUND;
            Err(e)
        }
    };
    let config = WebSocketConfig {
        max_message_size: Some(MAX_SERVER_MESSAGE),
        max_frame_size: Some(MAX_SERVER_MESSAGE),
        ..Default::default()
    };
    tokio_tungstenite::accept_hdr_async_with_config(stream, check_path, Some(config))
        .await
        .ok()
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: Ws<S>,
    shared: Arc<Mutex<Shared>>,
    bind_timeout: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let gauge = lock(&shared).metrics.mailbox_connections.clone();
    gauge.inc();
    lock(&shared).metrics.mailbox_connections_total.inc();
    let id = {
        let mut s = lock(&shared);
        let id = s.next_id;
        s.next_id += 1;
        let sender = Sender {
            frames: tx,
            queued: queued.clone(),
        };
        s.senders.insert(id, sender);
        s.state.connected(id, now());
        s.flush();
        id
    };
    let bind_deadline = tokio::time::sleep(bind_timeout);
    tokio::pin!(bind_deadline);
    let mut bound = false;
    loop {
        tokio::select! {
            _ = &mut bind_deadline, if !bound => {
                bound = lock(&shared).state.is_bound(id);
                if !bound {
                    tracing::debug!("mailbox server: closing a connection that never bound");
                    break;
                }
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let mut s = lock(&shared);
                    s.state.received(id, &text, now());
                    s.flush();
                }
                Some(Ok(Message::Binary(bytes))) => {
                    if let Ok(text) = std::str::from_utf8(&bytes) {
                        let mut s = lock(&shared);
                        s.state.received(id, text, now());
                        s.flush();
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            out = rx.recv() => match out {
                Some(out) => {
                    let n = out.len();
                    // a client that stops reading cannot hold this task for ever
                    let sent = tokio::time::timeout(SEND_TIMEOUT, ws.send(Message::text(out))).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        break;
                    }
                    queued.fetch_sub(n, Ordering::Relaxed);
                }
                None => break, // disconnected by the server (it does not read)
            },
        }
    }
    let mut s = lock(&shared);
    s.senders.remove(&id);
    s.state.disconnected(id);
    gauge.dec();
}
