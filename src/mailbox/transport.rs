//! The WebSocket transport to the mailbox server: `ws://` and `wss://` (rustls, webpki roots),
//! text frames, bounded message size.

use std::sync::{Arc, OnceLock};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::messages::MAX_SERVER_MESSAGE;
use crate::proxy::Socks5Proxy;

/// A WebSocket failure, with the underlying reason as text.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct TransportError(pub String);

/// What arrived on the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    /// The connection ended (closed, reset or failed).
    Closed(Option<TransportError>),
}

/// An open WebSocket to a mailbox server.
pub struct MailboxSocket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

fn build_tls_config(extra_roots: &[Vec<u8>]) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for der in extra_roots {
        roots
            .add(rustls::pki_types::CertificateDer::from(der.clone()))
            .map_err(|e| TransportError(format!("bad extra root certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn tls_config(extra_roots: &[Vec<u8>]) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    static DEFAULT: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    if !extra_roots.is_empty() {
        return build_tls_config(extra_roots);
    }
    Ok(DEFAULT
        .get_or_init(|| build_tls_config(&[]).expect("webpki roots are valid"))
        .clone())
}

/// Opens a WebSocket to `url` (`ws://` or `wss://`), through `proxy` if given; `wss` trusts the
/// webpki roots and `extra_roots` (DER certificates).
pub async fn connect(
    url: &str,
    extra_roots: &[Vec<u8>],
    proxy: Option<&Socks5Proxy>,
) -> Result<MailboxSocket, TransportError> {
    let config = WebSocketConfig {
        max_message_size: Some(MAX_SERVER_MESSAGE),
        max_frame_size: Some(MAX_SERVER_MESSAGE),
        ..Default::default()
    };
    let tls = url.starts_with("wss:");
    let connector = if tls {
        Connector::Rustls(tls_config(extra_roots)?)
    } else {
        Connector::Plain
    };
    let Some(proxy) = proxy else {
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            url,
            Some(config),
            true,
            Some(connector),
        )
        .await
        .map_err(|e| TransportError(e.to_string()))?;
        return Ok(MailboxSocket { ws });
    };
    let request = url
        .into_client_request()
        .map_err(|e| TransportError(e.to_string()))?;
    let host = request
        .uri()
        .host()
        .ok_or_else(|| TransportError(format!("no host in {url:?}")))?
        .to_string();
    let port = request
        .uri()
        .port_u16()
        .unwrap_or(if tls { 443 } else { 80 });
    let stream = proxy
        .connect(&host, port)
        .await
        .map_err(|e| TransportError(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let (ws, _) = tokio_tungstenite::client_async_tls_with_config(
        request,
        stream,
        Some(config),
        Some(connector),
    )
    .await
    .map_err(|e| TransportError(e.to_string()))?;
    Ok(MailboxSocket { ws })
}

impl MailboxSocket {
    pub async fn send(&mut self, text: String) -> Result<(), TransportError> {
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|e| TransportError(e.to_string()))
    }

    /// The next text frame or the end of the connection. Cancel-safe. Binary frames (the server
    /// sends none) are logged and skipped; pings are answered by the library.
    pub async fn recv(&mut self) -> Frame {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => return Frame::Text(text),
                Some(Ok(Message::Close(_))) | None => return Frame::Closed(None),
                Some(Ok(Message::Binary(_))) => {
                    tracing::warn!("ignoring binary frame from mailbox server")
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Frame::Closed(Some(TransportError(e.to_string()))),
            }
        }
    }

    /// Our end's IP address.
    pub fn local_ip(&self) -> Option<std::net::IpAddr> {
        let tcp = match self.ws.get_ref() {
            MaybeTlsStream::Plain(tcp) => tcp,
            MaybeTlsStream::Rustls(tls) => tls.get_ref().0,
            _ => return None,
        };
        tcp.local_addr().ok().map(|a| a.ip())
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
