//! The sockets of a Dilation: the listener of a generation and one task per TCP connection,
//! which carries handshake bytes between the socket and the endpoint and, once its connection is
//! selected, becomes the link: a reader that decrypts and decodes records and a writer that
//! encodes and encrypts them, so each direction's crypto runs on its own core. Nothing here
//! decides anything: the [`Endpoint`](crate::dilation::endpoint::Endpoint) does.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::dilation::endpoint::ConnId;
use crate::dilation::l2::{RecvHalf, SendHalf};
use crate::dilation::record::Record;
use crate::proxy::Socks5Proxy;

/// Batches in flight from the task to a link's writer, and from its reader to the task.
pub(super) const WRITE_BATCHES: usize = 4;
pub(super) const READ_BATCHES: usize = 4;
const READ_BUFFER: usize = 256 * 1024;
const HANDSHAKE_READ: usize = 16 * 1024;

/// What the sockets report to the Dilation task.
pub(super) enum NetEvent {
    Accepted {
        generation: u32,
        stream: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
    },
    Open {
        conn: ConnId,
        peer: SocketAddr,
        local: SocketAddr,
    },
    /// Bytes read before the link started; the task reads no more until told to.
    Data {
        conn: ConnId,
        data: Vec<u8>,
    },
    Records {
        conn: ConnId,
        records: Vec<Record>,
    },
    Closed {
        conn: ConnId,
        reason: String,
    },
}

/// Where connection tasks report: records through a bounded channel (which the Dilation task
/// stops reading while the endpoint does not want them), everything else through an unbounded one
/// that it always reads, so that a dead connection is noticed even then.
#[derive(Clone)]
pub(super) struct Reports {
    pub records: mpsc::Sender<NetEvent>,
    pub other: mpsc::UnboundedSender<NetEvent>,
    /// TCP_USER_TIMEOUT of every connection: data unacknowledged this long ends it (a dead
    /// path noticed by the kernel even while we do not read).
    pub user_timeout: Duration,
}

/// From the Dilation task to one connection's task.
pub(super) enum ConnCommand {
    Write(Vec<u8>),
    /// Read the next chunk of handshake bytes.
    Read,
    /// Become the link: records to write arrive on `batches`.
    Link {
        send: SendHalf,
        recv: RecvHalf,
        batches: mpsc::Receiver<Vec<Arc<Record>>>,
    },
}

/// A connection's task, stopped when dropped.
pub(super) struct ConnHandle {
    pub commands: mpsc::UnboundedSender<ConnCommand>,
    task: tokio::task::AbortHandle,
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Spawns the task of a connection we dial.
pub(super) fn dial(
    tasks: &mut JoinSet<()>,
    conn: ConnId,
    host: String,
    port: u16,
    relay: bool,
    proxy: Option<Socks5Proxy>,
    reports: Reports,
) -> ConnHandle {
    let (commands, rx) = mpsc::unbounded_channel();
    let task = tasks.spawn(async move {
        let connected = match &proxy {
            Some(proxy) => proxy.connect(&host, port).await,
            None => TcpStream::connect((host.as_str(), port)).await,
        };
        match connected {
            Ok(stream) => {
                let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
                let peer = stream.peer_addr().unwrap_or(unknown);
                let local = stream.local_addr().unwrap_or(unknown);
                let _ = reports.other.send(NetEvent::Open { conn, peer, local });
                run_conn(conn, stream, relay, rx, reports).await;
            }
            Err(e) => {
                let _ = reports.other.send(NetEvent::Closed {
                    conn,
                    reason: format!("connect to {host}:{port}: {e}"),
                });
            }
        }
    });
    ConnHandle { commands, task }
}

/// Spawns the task of a connection our listener accepted.
pub(super) fn accepted(
    tasks: &mut JoinSet<()>,
    conn: ConnId,
    stream: TcpStream,
    reports: Reports,
) -> ConnHandle {
    let (commands, rx) = mpsc::unbounded_channel();
    let task = tasks.spawn(run_conn(conn, stream, false, rx, reports));
    ConnHandle { commands, task }
}

/// Reads smaller than this on a relay connection are acknowledged at once (see [`ack_now`]).
const QUICK_ACK_BELOW: usize = 16 << 10;

/// Acknowledges at once what was just read, on a connection through a relay: a relay that
/// does not set TCP_NODELAY (Python's) holds a small segment until the one before it is
/// acknowledged, and a delayed ACK (up to 40 ms) would stall a request that left us as two small
/// writes (an OPEN, then its first DATA). Linux clears the flag again as it sees fit: it is set
/// after every small read. Large reads (a bulk transfer) keep the usual delayed ACKs, which
/// let the relay send fewer, fuller segments.
fn ack_now(stream: &TcpStream, relay: bool, read: usize) {
    if relay && read < QUICK_ACK_BELOW {
        let _ = socket2::SockRef::from(stream).set_tcp_quickack(true);
    }
}

async fn run_conn(
    conn: ConnId,
    mut stream: TcpStream,
    relay: bool,
    mut commands: mpsc::UnboundedReceiver<ConnCommand>,
    reports: Reports,
) {
    let _ = stream.set_nodelay(true);
    let _ = socket2::SockRef::from(&stream).set_tcp_user_timeout(Some(reports.user_timeout));
    let closed = |reason: String| {
        let _ = reports.other.send(NetEvent::Closed { conn, reason });
    };
    let mut buf = vec![0u8; HANDSHAKE_READ];
    let mut want_read = true;
    loop {
        tokio::select! {
            // commands first: a `Link` queued behind a `Read` must win over a read in progress
            biased;
            cmd = commands.recv() => match cmd {
                Some(ConnCommand::Write(bytes)) => {
                    if let Err(e) = stream.write_all(&bytes).await {
                        return closed(e.to_string());
                    }
                }
                Some(ConnCommand::Read) => want_read = true,
                Some(ConnCommand::Link { send, recv, batches }) => {
                    return run_link(conn, stream, relay, send, recv, batches, reports).await;
                }
                None => return,
            },
            read = stream.read(&mut buf), if want_read => match read {
                Ok(0) => return closed("connection closed by the peer".into()),
                Ok(n) => {
                    ack_now(&stream, relay, n);
                    want_read = false;
                    let _ = reports.other.send(NetEvent::Data { conn, data: buf[..n].to_vec() });
                }
                Err(e) => return closed(e.to_string()),
            },
        }
    }
}

async fn run_link(
    conn: ConnId,
    stream: TcpStream,
    relay: bool,
    send: SendHalf,
    recv: RecvHalf,
    batches: mpsc::Receiver<Vec<Arc<Record>>>,
    reports: Reports,
) {
    let (read, write) = stream.into_split();
    let reader = read_loop(conn, read, relay, recv, reports.clone());
    let writer = write_loop(conn, write, send, batches, reports);
    // either ending ends the link (a failed writer was reported; a finished reader too)
    tokio::select! {
        _ = reader => {}
        _ = writer => {}
    }
}

async fn read_loop(
    conn: ConnId,
    mut read: tokio::net::tcp::OwnedReadHalf,
    relay: bool,
    mut recv: RecvHalf,
    reports: Reports,
) {
    let reason = loop {
        // first whatever the handshake left in the frame reader
        let mut records = Vec::new();
        if let Err(e) = recv.process(&mut records) {
            break e.to_string();
        }
        if !records.is_empty()
            && reports
                .records
                .send(NetEvent::Records { conn, records })
                .await
                .is_err()
        {
            return;
        }
        let buf = recv.buffer();
        buf.reserve(READ_BUFFER);
        // at most READ_BUFFER per read, whatever capacity the buffer grew to: the records of one
        // read are copied once more on their way to the task (bounded by READ_BATCHES)
        match read
            .read_buf(&mut bytes::BufMut::limit(buf, READ_BUFFER))
            .await
        {
            Ok(0) => break "connection closed by the peer".to_string(),
            Ok(n) => ack_now(read.as_ref(), relay, n),
            Err(e) => break e.to_string(),
        };
    };
    let _ = reports.other.send(NetEvent::Closed { conn, reason });
}

async fn write_loop(
    conn: ConnId,
    mut write: tokio::net::tcp::OwnedWriteHalf,
    mut send: SendHalf,
    mut batches: mpsc::Receiver<Vec<Arc<Record>>>,
    reports: Reports,
) {
    let (mut out, mut scratch) = (Vec::new(), Vec::new());
    while let Some(batch) = batches.recv().await {
        if send.worn_out() {
            // the nonce counter nears its end: a new connection (new keys) takes over
            let reason = "Noise nonces of this connection used up".to_string();
            let _ = reports.other.send(NetEvent::Closed { conn, reason });
            return;
        }
        out.clear();
        for r in &batch {
            send.seal_record(r, &mut out, &mut scratch);
        }
        if let Err(e) = write.write_all(&out).await {
            let _ = reports.other.send(NetEvent::Closed {
                conn,
                reason: e.to_string(),
            });
            return;
        }
    }
    // the task dropped the link: wait to be aborted
    std::future::pending::<()>().await
}

/// Binds the listener of a generation (127.0.0.1 with `loopback`, else dual-stack where
/// possible) and spawns its accept loop; returns its port, the addresses it can be reached at
/// (the host's interface addresses it serves), whether it serves IPv6, and its task, or `None`
/// when it cannot listen.
pub(super) async fn listen(
    tasks: &mut JoinSet<()>,
    generation: u32,
    loopback: bool,
    reports: Reports,
) -> Option<(u16, Vec<IpAddr>, bool, tokio::task::AbortHandle)> {
    let bound = match loopback {
        true => TcpListener::bind(("127.0.0.1", 0)).await,
        false => bind_listener().await,
    };
    match bound {
        Ok(listener) => {
            let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
            let dual = listener.local_addr().is_ok_and(|a| a.is_ipv6());
            let addresses = match loopback {
                true => vec![IpAddr::from([127, 0, 0, 1])],
                false => interface_addresses(dual),
            };
            let task = tasks.spawn(accept_loop(listener, generation, reports));
            Some((port, addresses, dual && !loopback, task))
        }
        Err(e) => {
            tracing::warn!("cannot listen for direct connections: {e}");
            None
        }
    }
}

async fn accept_loop(listener: TcpListener, generation: u32, reports: Reports) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Ok(local) = stream.local_addr() else {
                    continue;
                };
                let accepted = NetEvent::Accepted {
                    generation,
                    stream,
                    peer,
                    local,
                };
                if reports.other.send(accepted).is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
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

/// The host's interface addresses (IPv6 ones only for a dual-stack listener).
pub(super) fn interface_addresses(ipv6: bool) -> Vec<IpAddr> {
    if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| ip.is_ipv4() || ipv6)
        .collect()
}
