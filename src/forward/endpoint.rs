//! Local endpoints: listeners for the peer's services and connections to ours, over TCP (IPv4 or
//! IPv6) or unix sockets. Local TCP sockets get TCP_NODELAY.

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use super::policy::{ConnectTo, ListenAt};

/// A local stream of either kind.
pub trait LocalIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> LocalIo for T {}

pub type LocalStream = Box<dyn LocalIo>;

/// Backlog of our listeners: a burst of clients connecting at once is queued, not reset.
const BACKLOG: i32 = 1024;

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

/// Opens a listener; the error text names the address, like Python's.
pub async fn listen(at: &ListenAt) -> Result<Listener, String> {
    match at {
        ListenAt::Tcp { host, port } => {
            let fail = |e: &dyn std::fmt::Display| {
                format!("Couldn't listen on {}: {e}.", describe(host, *port))
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
            let listener = tokio::net::UnixListener::bind(path)
                .map_err(|e| format!("Couldn't listen on {}: {e}.", path.display()))?;
            Ok(Listener::Unix(listener, path.clone()))
        }
        #[cfg(not(unix))]
        ListenAt::Unix(path) => Err(format!("no unix sockets here: {}", path.display())),
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
                Ok(Box::new(s))
            }
            #[cfg(unix)]
            Listener::Unix(l, _) => Ok(Box::new(l.accept().await?.0)),
        }
    }
}

/// Connects to a local service. A refused TCP connection reads as Python's
/// `Connection was refused by other side: 111: Connection refused.`
pub async fn connect(to: &ConnectTo) -> Result<LocalStream, String> {
    match to {
        ConnectTo::Tcp { host, port } => match TcpStream::connect((bare_host(host), *port)).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                Ok(Box::new(s))
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(format!(
                "Connection was refused by other side: {}: Connection refused.",
                e.raw_os_error().unwrap_or(111)
            )),
            Err(e) => Err(format!(
                "Couldn't connect to {}: {e}.",
                describe(host, *port)
            )),
        },
        #[cfg(unix)]
        ConnectTo::Unix(path) => match tokio::net::UnixStream::connect(path).await {
            Ok(s) => Ok(Box::new(s)),
            Err(e) => Err(format!("Couldn't connect to {}: {e}.", path.display())),
        },
        #[cfg(not(unix))]
        ConnectTo::Unix(path) => Err(format!("no unix sockets here: {}", path.display())),
    }
}

/// A free TCP port on `host` right now (nothing listens on it; the user's service is to).
pub fn free_port(host: &str) -> Result<u16, String> {
    std::net::TcpListener::bind((bare_host(host), 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on {host}: {e}"))
}
