//! The TCP driver of the transit relay: reads handshakes, parks waiting connections, splices pairs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::state::{parse_handshake, Arrival, RelayConnId, RelayState, MAX_HANDSHAKE_LINE};
use crate::server::{AddressLimit, AddressSlot, Refusals, ServerMetrics};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

/// Limits of the relay; see `protocol/relay-server.md`.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Open connections at most (waiting, handshaking and spliced); more are closed at once.
    pub max_connections: usize,
    /// Connections waiting for a partner at most; more get `crowded\n`.
    pub max_waiting: usize,
    /// Time allowed for the handshake line.
    pub handshake_timeout: Duration,
    /// How long a connection may wait for its partner.
    pub waiting_timeout: Duration,
    /// A spliced pair with no byte in either direction for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections from one client address at most; more are closed at once.
    pub max_per_address: usize,
    /// Where the relay counts what happens (see `fowl server --metrics-listen`).
    pub metrics: ServerMetrics,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            max_connections: 4096,
            max_waiting: 2048,
            handshake_timeout: Duration::from_secs(30),
            waiting_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(600),
            max_per_address: 128,
            metrics: ServerMetrics::default(),
        }
    }
}

/// Bytes read per system call while splicing, per direction.
const SPLICE_BUFFER: usize = 64 * 1024;

/// A connection with what it counts against: a connection permit and its address's slot
/// (handed over with the socket, so a spliced pair holds two of each).
struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    _slot: AddressSlot,
    _open: OpenGauge,
}

/// Counts one open connection in a gauge while it lives.
struct OpenGauge(Gauge);

impl OpenGauge {
    fn new(gauge: &Gauge) -> OpenGauge {
        gauge.inc();
        OpenGauge(gauge.clone())
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

struct Shared {
    state: RelayState,
    /// Waiting connections: where to hand a partner's socket.
    waiters: HashMap<RelayConnId, oneshot::Sender<Counted>>,
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running relay; dropping it stops accepting (pairs already spliced run on).
pub struct RelayServerHandle {
    /// The address the relay listens on.
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    permits: Arc<Semaphore>,
    max_connections: usize,
    task: JoinHandle<()>,
}

impl RelayServerHandle {
    /// The hint clients are given: `tcp:HOST:PORT`.
    pub fn hint(&self) -> String {
        format!("tcp:{}:{}", self.addr.ip(), self.addr.port())
    }

    /// Connections waiting for a partner now.
    pub fn waiting(&self) -> usize {
        lock(&self.shared).state.waiting()
    }

    /// Connections open now, in any state.
    pub fn connections(&self) -> usize {
        self.max_connections - self.permits.available_permits()
    }
}

impl Drop for RelayServerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the transit relay protocol on `listener` until the handle is dropped.
pub fn serve(listener: TcpListener, config: RelayConfig) -> std::io::Result<RelayServerHandle> {
    let addr = listener.local_addr()?;
    let shared = Arc::new(Mutex::new(Shared {
        state: RelayState::new(config.max_waiting),
        waiters: HashMap::new(),
    }));
    let max_connections = config.max_connections;
    let permits = Arc::new(Semaphore::new(max_connections));
    let (task_shared, task_permits) = (shared.clone(), permits.clone());
    let addresses = AddressLimit::new(config.max_per_address);
    let task = tokio::spawn(async move {
        let config = Arc::new(config);
        let mut next_id: RelayConnId = 0;
        let mut refused = Refusals::new("relay", config.metrics.relay_refused.clone());
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // out of descriptors, typically: back off instead of spinning
                    tracing::warn!("relay: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = task_permits.clone().try_acquire_owned() else {
                refused.refused("limit", format_args!("connection limit reached"));
                continue;
            };
            let Some(slot) = addresses.admit(peer.ip()) else {
                let (ip, max) = (peer.ip(), config.max_per_address);
                refused.refused(
                    "per_address",
                    format_args!("{ip} has {max} connections open"),
                );
                continue;
            };
            next_id += 1;
            let (id, shared, config) = (next_id, task_shared.clone(), config.clone());
            let counted = Counted {
                stream,
                _permit: permit,
                _slot: slot,
                _open: OpenGauge::new(&config.metrics.relay_connections),
            };
            tokio::spawn(async move { connection(counted, id, shared, &config).await });
        }
    });
    Ok(RelayServerHandle {
        addr,
        shared,
        permits,
        max_connections,
        task,
    })
}

/// Why a waiting connection stopped waiting.
enum Left {
    Closed,
    Impatient,
    TimedOut,
}

async fn connection(
    mut counted: Counted,
    id: RelayConnId,
    shared: Arc<Mutex<Shared>>,
    config: &RelayConfig,
) {
    let stream = &mut counted.stream;
    let _ = stream.set_nodelay(true);
    let line = match tokio::time::timeout(config.handshake_timeout, read_line(stream)).await {
        Err(_) => return tracing::debug!("relay: handshake timed out"),
        Ok(Err(e)) => return tracing::debug!("relay: handshake read failed: {e}"),
        Ok(Ok(line)) => line,
    };
    let (line, early) = match line {
        Line::Complete { line, early } => (line, early),
        Line::Closed => return,
        Line::TooLong => {
            refuse(counted.stream, b"bad handshake\n").await;
            return;
        }
    };
    let Some(hs) = parse_handshake(&line) else {
        refuse(counted.stream, b"bad handshake\n").await;
        return;
    };
    if early {
        refuse(counted.stream, b"impatient\n").await;
        return;
    }
    let token = hs.token.clone();
    let (tx, rx) = oneshot::channel();
    let arrival = {
        let mut s = lock(&shared);
        let arrival = s.state.arrive(id, hs);
        match &arrival {
            Arrival::Wait => {
                s.waiters.insert(id, tx);
            }
            Arrival::Paired { partner, redundant } => {
                for r in redundant {
                    s.waiters.remove(r); // its task sees the sender dropped and closes
                }
                if let Some(waiter) = s.waiters.remove(partner) {
                    // the waiter splices; a send error means it is already gone, and we close
                    let _ = waiter.send(counted);
                }
                return;
            }
            Arrival::Full => {}
        }
        arrival
    };
    if arrival == Arrival::Full {
        tracing::debug!("relay: too many waiting connections");
        refuse(counted.stream, b"crowded\n").await;
        return;
    }
    let mut rx = rx;
    let mut probe = [0u8; 1];
    let left = tokio::select! {
        partner = &mut rx => match partner {
            Ok(partner) => return splice(counted, partner, config).await,
            Err(_) => return, // redundant: another pair formed for this token
        },
        read = counted.stream.read(&mut probe) => match read {
            Ok(0) | Err(_) => Left::Closed,
            Ok(_) => Left::Impatient,
        },
        _ = tokio::time::sleep(config.waiting_timeout) => Left::TimedOut,
    };
    let still_waiting = {
        let mut s = lock(&shared);
        let waiting = s.state.leave(id, &token);
        if waiting {
            s.waiters.remove(&id);
        }
        waiting
    };
    if !still_waiting {
        // a partner took us in the meantime; its socket is on its way
        let Ok(partner) = rx.await else { return };
        if matches!(left, Left::TimedOut) {
            return splice(counted, partner, config).await;
        }
        return; // we are closed or impatient: the partner is closed as well
    }
    if matches!(left, Left::Impatient) {
        refuse(counted.stream, b"impatient\n").await;
    }
    tracing::debug!("relay: a waiting connection left");
}

/// Sends a refusal and closes gracefully: our side is shut down first and what the client still
/// sends is read away for a moment, so the reply is not lost to a TCP reset.
async fn refuse(mut stream: TcpStream, reply: &[u8]) {
    if stream.write_all(reply).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

enum Line {
    /// The line without its newline; `early` when bytes followed it already.
    Complete {
        line: Vec<u8>,
        early: bool,
    },
    Closed,
    TooLong,
}

async fn read_line(stream: &mut TcpStream) -> std::io::Result<Line> {
    let mut buf = Vec::with_capacity(160);
    let mut chunk = [0u8; 256];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Line::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let early = pos + 1 < buf.len();
            buf.truncate(pos);
            return Ok(Line::Complete { line: buf, early });
        }
        if buf.len() > MAX_HANDSHAKE_LINE {
            return Ok(Line::TooLong);
        }
    }
}

/// Says `ok` to both ends and copies bytes both ways until either end closes or errs, or the pair
/// stays idle for `idle`; then both are closed.
async fn splice(mut a: Counted, mut b: Counted, config: &RelayConfig) {
    let idle = config.idle_timeout;
    let (a, b) = (&mut a.stream, &mut b.stream);
    if a.write_all(b"ok\n").await.is_err() || b.write_all(b"ok\n").await.is_err() {
        return;
    }
    config.metrics.relay_pairs_total.inc();
    let bytes = &config.metrics.relay_bytes_total;
    let start = Instant::now();
    let last = AtomicU64::new(0); // milliseconds after `start` of the latest byte
    let (mut ar, mut aw) = a.split();
    let (mut br, mut bw) = b.split();
    let watchdog = async {
        loop {
            let deadline = start + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
            if Instant::now() >= deadline {
                tracing::debug!("relay: closing an idle pair");
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    };
    tokio::select! {
        _ = pump(&mut ar, &mut bw, start, &last, bytes) => {}
        _ = pump(&mut br, &mut aw, start, &last, bytes) => {}
        _ = watchdog => {}
    }
}

async fn pump<R, W>(from: &mut R, to: &mut W, start: Instant, last: &AtomicU64, bytes: &Counter)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; SPLICE_BUFFER];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
                bytes.inc_by(n as u64);
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
