//! Local endpoints: listeners for the peer's services and connections to ours, over TCP (IPv4 or
//! IPv6) or unix sockets. Local TCP sockets get TCP_NODELAY.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use tokio::net::{TcpListener, TcpStream};

use super::policy::{ConnectTo, ListenAt};

/// A local stream of either kind.
pub enum LocalStream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

/// The reading half of a [`LocalStream`]: readiness first, then a read that does not wait, so
/// that a buffer is taken only once there is something to read (and room to send it).
pub enum LocalReader {
    Tcp(tokio::net::tcp::OwnedReadHalf),
    #[cfg(unix)]
    Unix(tokio::net::unix::OwnedReadHalf),
}

/// The writing half of a [`LocalStream`] (dropping it shuts the stream down for writing).
pub enum LocalWriter {
    Tcp(tokio::net::tcp::OwnedWriteHalf),
    #[cfg(unix)]
    Unix(tokio::net::unix::OwnedWriteHalf),
}

impl LocalStream {
    pub fn into_split(self) -> (LocalReader, LocalWriter) {
        match self {
            LocalStream::Tcp(s) => {
                let (r, w) = s.into_split();
                (LocalReader::Tcp(r), LocalWriter::Tcp(w))
            }
            #[cfg(unix)]
            LocalStream::Unix(s) => {
                let (r, w) = s.into_split();
                (LocalReader::Unix(r), LocalWriter::Unix(w))
            }
        }
    }
}

impl LocalReader {
    /// Waits until a read would not block (data, the end of the stream or an error).
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            LocalReader::Tcp(r) => r.readable().await,
            #[cfg(unix)]
            LocalReader::Unix(r) => r.readable().await,
        }
    }

    /// Reads what is there into `buf`'s spare capacity without waiting (`WouldBlock` if
    /// nothing is); 0 at the end of the stream.
    pub fn try_read_buf(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            LocalReader::Tcp(r) => r.try_read_buf(buf),
            #[cfg(unix)]
            LocalReader::Unix(r) => r.try_read_buf(buf),
        }
    }
}

impl AsyncWrite for LocalWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            LocalWriter::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            #[cfg(unix)]
            LocalWriter::Unix(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LocalWriter::Tcp(w) => Pin::new(w).poll_flush(cx),
            #[cfg(unix)]
            LocalWriter::Unix(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            LocalWriter::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            #[cfg(unix)]
            LocalWriter::Unix(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

/// Backlog of our listeners: a burst of clients connecting at once is queued, not reset.
/// (Linux caps it at `net.core.somaxconn`, 4096 by default.)
const BACKLOG: i32 = 4096;

/// An open listener. A unix socket file we created is removed when it is dropped.
pub enum Listener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener, PathBuf),
}

impl Drop for Listener {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `[::1]` and `::1` both name an IPv6 host.
fn bare_host(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

fn describe(host: &str, port: u16) -> String {
    match bare_host(host).contains(':') {
        true => format!("[{}]:{port}", bare_host(host)),
        false => format!("{host}:{port}"),
    }
}

/// Why a local socket could not be had. The texts are Python fowl's where it has one (they are
/// reported to the controller and, for connects, to the peer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("Couldn't listen on {at}: {reason}.")]
    /// A listener could not be opened.
    Listen {
        /// The address or socket path we tried to listen on.
        at: String,
        /// The underlying I/O error, as text.
        reason: String,
    },
    #[error("Connection was refused by other side: {errno}: Connection refused.")]
    /// A TCP connect to a local service was refused.
    Refused {
        /// The OS error number (111, `ECONNREFUSED` on Linux, if the OS gave none).
        errno: i32,
    },
    #[error("Couldn't connect to {at}: {reason}.")]
    /// A connect to a local service failed other than by refusal.
    Connect {
        /// The address or socket path we tried to connect to.
        at: String,
        /// The underlying I/O error, as text.
        reason: String,
    },
    #[error("no unix sockets here: {0}")]
    /// A unix socket (path given) was asked for on a platform without them.
    NoUnix(String),
    #[error("no free port on {host}: {reason}")]
    /// No free TCP port could be found on a host (for a stream target neither side named).
    NoFreePort {
        /// The host we tried to bind on.
        host: String,
        /// The underlying I/O error, as text.
        reason: String,
    },
}

/// Opens a listener; the error text names the address, like Python's.
pub async fn listen(at: &ListenAt) -> Result<Listener, EndpointError> {
    match at {
        ListenAt::Tcp { host, port } => {
            let fail = |e: &dyn std::fmt::Display| EndpointError::Listen {
                at: describe(host, *port),
                reason: e.to_string(),
            };
            let addr: SocketAddr = tokio::net::lookup_host((bare_host(host), *port))
                .await
                .map_err(|e| fail(&e))?
                .next()
                .ok_or_else(|| fail(&"no address"))?;
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                None,
            )
            .map_err(|e| fail(&e))?;
            socket.set_reuse_address(true).map_err(|e| fail(&e))?;
            socket.set_nonblocking(true).map_err(|e| fail(&e))?;
            socket.bind(&addr.into()).map_err(|e| fail(&e))?;
            socket.listen(BACKLOG).map_err(|e| fail(&e))?;
            let listener = TcpListener::from_std(socket.into()).map_err(|e| fail(&e))?;
            Ok(Listener::Tcp(listener))
        }
        #[cfg(unix)]
        ListenAt::Unix(path) => {
            let listener =
                tokio::net::UnixListener::bind(path).map_err(|e| EndpointError::Listen {
                    at: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            Ok(Listener::Unix(listener, path.clone()))
        }
        #[cfg(not(unix))]
        ListenAt::Unix(path) => Err(EndpointError::NoUnix(path.display().to_string())),
    }
}

impl Listener {
    /// The TCP port, for TCP listeners.
    pub fn port(&self) -> Option<u16> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok().map(|a| a.port()),
            #[cfg(unix)]
            Listener::Unix(..) => None,
        }
    }

    /// The socket path, for unix listeners.
    pub fn path(&self) -> Option<String> {
        match self {
            Listener::Tcp(_) => None,
            #[cfg(unix)]
            Listener::Unix(_, p) => Some(p.display().to_string()),
        }
    }

    pub async fn accept(&self) -> std::io::Result<LocalStream> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok(LocalStream::Tcp(s))
            }
            #[cfg(unix)]
            Listener::Unix(l, _) => Ok(LocalStream::Unix(l.accept().await?.0)),
        }
    }
}

/// Connects to a local service. A refused TCP connection reads as Python's
/// `Connection was refused by other side: 111: Connection refused.`
pub async fn connect(to: &ConnectTo) -> Result<LocalStream, EndpointError> {
    match to {
        ConnectTo::Tcp { host, port } => match TcpStream::connect((bare_host(host), *port)).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                Ok(LocalStream::Tcp(s))
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Err(EndpointError::Refused {
                    errno: e.raw_os_error().unwrap_or(111),
                })
            }
            Err(e) => Err(EndpointError::Connect {
                at: describe(host, *port),
                reason: e.to_string(),
            }),
        },
        #[cfg(unix)]
        ConnectTo::Unix(path) => match tokio::net::UnixStream::connect(path).await {
            Ok(s) => Ok(LocalStream::Unix(s)),
            Err(e) => Err(EndpointError::Connect {
                at: path.display().to_string(),
                reason: e.to_string(),
            }),
        },
        #[cfg(not(unix))]
        ConnectTo::Unix(path) => Err(EndpointError::NoUnix(path.display().to_string())),
    }
}

/// A free TCP port on `host` right now (nothing listens on it; the user's service is to).
pub fn free_port(host: &str) -> Result<u16, EndpointError> {
    std::net::TcpListener::bind((bare_host(host), 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| EndpointError::NoFreePort {
            host: host.into(),
            reason: e.to_string(),
        })
}
