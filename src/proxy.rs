//! Privacy through a SOCKS5 proxy (Tor's SOCKS port, an SSH `-D` tunnel, any SOCKS5 server).
//!
//! With a proxy, every connection a session makes (the mailbox WebSocket and the transit relay)
//! is dialed through it, and Dilation offers no listener and no direct hints and dials none of
//! the peer's: the relay is the only path, so neither the peer nor the servers learn our
//! addresses. `socks5h://` also leaves name resolution to the proxy (nothing is looked up
//! locally); `socks5://` resolves names here and hands the proxy addresses.
//!
//! ```
//! use fowl::proxy::Socks5Proxy;
//!
//! let tor: Socks5Proxy = "socks5h://127.0.0.1:9050".parse().unwrap();
//! assert!(tor.resolves_names());
//! assert_eq!(tor.to_string(), "socks5h://127.0.0.1:9050");
//! assert!("http://127.0.0.1:3128".parse::<Socks5Proxy>().is_err());
//! ```

use std::fmt;
use std::io;
use std::str::FromStr;

use tokio::net::TcpStream;
use tokio_socks::tcp::Socks5Stream;

/// A malformed proxy URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProxyUrlError(String);

/// A SOCKS5 proxy: where it listens, whether it resolves names, and optional
/// username/password authentication (Tor isolates streams by it).
#[derive(Clone, PartialEq, Eq)]
pub struct Socks5Proxy {
    host: String,
    port: u16,
    remote_names: bool,
    credentials: Option<(String, String)>,
}

impl fmt::Debug for Socks5Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // the password stays out of logs
        write!(f, "Socks5Proxy({self})")
    }
}

impl fmt::Display for Socks5Proxy {
    /// The URL, without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.remote_names {
            "socks5h"
        } else {
            "socks5"
        };
        let user = match &self.credentials {
            Some((user, _)) => format!("{user}@"),
            None => String::new(),
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://{user}[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{user}{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Socks5Proxy {
    type Err = ProxyUrlError;

    /// `socks5://[USER:PASSWORD@]HOST:PORT` or `socks5h://...`; an IPv6 host in brackets.
    fn from_str(url: &str) -> Result<Socks5Proxy, ProxyUrlError> {
        let bad = |why: &str| ProxyUrlError(format!("proxy {url:?}: {why}"));
        let (remote_names, rest) = if let Some(rest) = url.strip_prefix("socks5h://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("socks5://") {
            (false, rest)
        } else {
            return Err(bad("not a socks5:// or socks5h:// URL"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (credentials, address) = match rest.rsplit_once('@') {
            Some((userinfo, address)) => {
                let (user, password) = userinfo
                    .split_once(':')
                    .ok_or_else(|| bad("credentials are USER:PASSWORD"))?;
                if user.is_empty() || user.len() > 255 || password.len() > 255 {
                    return Err(bad("user and password are 1 to 255 bytes"));
                }
                (Some((user.to_string(), password.to_string())), address)
            }
            None => (None, rest),
        };
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| bad("no port (HOST:PORT)"))?;
        let host = match host.strip_prefix('[') {
            Some(inner) => inner
                .strip_suffix(']')
                .ok_or_else(|| bad("unclosed '[' around the IPv6 address"))?,
            None if host.contains(':') => return Err(bad("an IPv6 address goes in brackets")),
            None => host,
        };
        if host.is_empty() || host.contains(['/', '?', '#', '[', ']', '@']) {
            return Err(bad("bad host"));
        }
        let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
        if port == 0 {
            return Err(bad("port 0"));
        }
        Ok(Socks5Proxy {
            host: host.to_string(),
            port,
            remote_names,
            credentials,
        })
    }
}

impl Socks5Proxy {
    /// True for `socks5h://`: host names go to the proxy unresolved.
    pub fn resolves_names(&self) -> bool {
        self.remote_names
    }

    /// A TCP connection to `host:port` through the proxy. With `socks5h` a name is sent to the
    /// proxy as it is; with `socks5` it is resolved here and its addresses tried in turn.
    pub async fn connect(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if self.remote_names || host.parse::<std::net::IpAddr>().is_ok() {
            return self.connect_target((host, port)).await;
        }
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
        for address in tokio::net::lookup_host((host, port)).await? {
            match self.connect_target(address).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn connect_target<'t>(
        &self,
        target: impl tokio_socks::IntoTargetAddr<'t>,
    ) -> io::Result<TcpStream> {
        let proxy = (self.host.as_str(), self.port);
        let stream = match &self.credentials {
            Some((user, password)) => {
                Socks5Stream::connect_with_password(proxy, target, user, password).await
            }
            None => Socks5Stream::connect(proxy, target).await,
        };
        match stream {
            Ok(stream) => Ok(stream.into_inner()),
            Err(tokio_socks::Error::Io(e)) => Err(io::Error::new(
                e.kind(),
                format!("through the proxy {self}: {e}"),
            )),
            Err(e) => Err(io::Error::other(format!("through the proxy {self}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_and_print_without_the_password() {
        let p: Socks5Proxy = "socks5://127.0.0.1:1080".parse().unwrap();
        assert!(!p.resolves_names());
        assert_eq!(p.to_string(), "socks5://127.0.0.1:1080");
        let p: Socks5Proxy = "socks5h://alice:secret@[::1]:9050/".parse().unwrap();
        assert!(p.resolves_names());
        assert_eq!(p.to_string(), "socks5h://alice@[::1]:9050");
        assert!(!format!("{p:?}").contains("secret"));
        for bad in [
            "socks4://127.0.0.1:1080",
            "socks5://127.0.0.1",
            "socks5://127.0.0.1:0",
            "socks5://127.0.0.1:99999",
            "socks5://::1:1080",
            "socks5://[::1:1080",
            "socks5://:1080",
            "socks5://alice@127.0.0.1:1080",
            "socks5h://a/b:1080",
        ] {
            assert!(bad.parse::<Socks5Proxy>().is_err(), "{bad} accepted");
        }
    }

    /// A minimal SOCKS5 server on loopback that records the request it gets and answers it
    /// by echoing: enough to check what we send (a name for socks5h, an address for socks5).
    async fn one_request_proxy() -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut greeting = [0u8; 3];
            s.read_exact(&mut greeting).await.unwrap();
            assert_eq!(greeting, [5, 1, 0], "no authentication offered");
            s.write_all(&[5, 0]).await.unwrap();
            let mut head = [0u8; 4];
            s.read_exact(&mut head).await.unwrap();
            let mut request = head.to_vec();
            let rest = match head[3] {
                1 => 4 + 2,
                4 => 16 + 2,
                3 => {
                    let len = s.read_u8().await.unwrap();
                    request.push(len);
                    len as usize + 2
                }
                other => panic!("address type {other}"),
            };
            let mut tail = vec![0u8; rest];
            s.read_exact(&mut tail).await.unwrap();
            request.extend_from_slice(&tail);
            s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 1])
                .await
                .unwrap();
            s.write_all(b"through").await.unwrap();
            request
        });
        (port, task)
    }

    #[tokio::test]
    async fn socks5h_sends_the_name_and_socks5_an_address() {
        use tokio::io::AsyncReadExt;
        for (scheme, expected) in [
            ("socks5h", {
                let mut r = vec![5, 1, 0, 3, 9];
                r.extend_from_slice(b"localhost");
                r.extend_from_slice(&4001u16.to_be_bytes());
                r
            }),
            ("socks5", vec![5, 1, 0, 1, 127, 0, 0, 1, 0x0f, 0xa1]),
        ] {
            let (port, proxy_task) = one_request_proxy().await;
            let proxy: Socks5Proxy = format!("{scheme}://127.0.0.1:{port}").parse().unwrap();
            // "localhost" resolves to 127.0.0.1 first on the test machines (and in the
            // loopback-only namespace); ::1 would show as address type 4
            let mut stream = proxy.connect("localhost", 4001).await.unwrap();
            let mut got = [0u8; 7];
            stream.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"through");
            let request = proxy_task.await.unwrap();
            if scheme == "socks5" && request[3] == 4 {
                continue; // resolved to ::1 here: an address all the same
            }
            assert_eq!(request, expected, "{scheme}");
        }
    }
}
