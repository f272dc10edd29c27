//! The WebSocket transport to the mailbox server: `ws://` and `wss://` (rustls, webpki roots),
//! text frames, bounded message size.

use std::sync::{Arc, OnceLock};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::messages::MAX_SERVER_MESSAGE;

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

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Opens a WebSocket to `url` (`ws://` or `wss://`).
pub async fn connect(url: &str) -> Result<MailboxSocket, TransportError> {
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(MAX_SERVER_MESSAGE);
    config.max_frame_size = Some(MAX_SERVER_MESSAGE);
    let connector = if url.starts_with("wss:") {
        Connector::Rustls(tls_config())
    } else {
        Connector::Plain
    };
    let (ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, Some(connector))
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

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
