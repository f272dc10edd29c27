//! What the servers count, in the Prometheus text format (`fowl server --metrics-listen ADDR`,
//! then `GET /metrics`). The counters are shared handles: the servers update them as things
//! happen, a scrape encodes them.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Why a connection was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// `per_address` (the client's address has its share) or `limit` (the server is full).
    pub reason: &'static str,
}

/// The mood a client closed its mailbox with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Mood {
    /// `happy`, `lonely`, `scary`, `errory`, `unwelcome`, `other` (anything else a client said:
    /// labels never take a client's words).
    pub mood: &'static str,
}

impl Mood {
    /// The label for what a client said.
    pub fn of(said: &str) -> Mood {
        let mood = match said {
            "happy" => "happy",
            "lonely" => "lonely",
            "scary" => "scary",
            "errory" => "errory",
            "unwelcome" => "unwelcome",
            _ => "other",
        };
        Mood { mood }
    }
}

/// Every metric of `fowl server`; clones share the counts.
#[derive(Clone, Debug, Default)]
pub struct ServerMetrics {
    /// Open mailbox WebSocket connections.
    pub mailbox_connections: Gauge,
    /// Mailbox WebSocket connections accepted so far.
    pub mailbox_connections_total: Counter,
    /// Mailbox connections refused, by reason.
    pub mailbox_refused: Family<Reason, Counter>,
    /// Mailboxes stored now.
    pub mailbox_mailboxes: Gauge,
    /// Bytes of messages stored now.
    pub mailbox_stored_bytes: Gauge,
    /// Mailbox `close`s, by mood.
    pub mailbox_closes: Family<Mood, Counter>,
    /// Open relay connections (waiting and spliced).
    pub relay_connections: Gauge,
    /// Relay pairs spliced so far.
    pub relay_pairs_total: Counter,
    /// Bytes relayed so far (both directions).
    pub relay_bytes_total: Counter,
    /// Relay connections refused, by reason.
    pub relay_refused: Family<Reason, Counter>,
}

impl ServerMetrics {
    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut r = Registry::with_prefix("fowl");
        let m = self.clone();
        r.register(
            "mailbox_connections",
            "Open mailbox WebSocket connections",
            m.mailbox_connections,
        );
        r.register(
            "mailbox_accepted",
            "Mailbox WebSocket connections accepted",
            m.mailbox_connections_total,
        );
        r.register(
            "mailbox_refused",
            "Mailbox connections refused, by reason",
            m.mailbox_refused,
        );
        r.register("mailbox_mailboxes", "Mailboxes stored", m.mailbox_mailboxes);
        r.register(
            "mailbox_stored_bytes",
            "Bytes of messages stored",
            m.mailbox_stored_bytes,
        );
        r.register(
            "mailbox_closes",
            "Mailbox closes, by the client's mood",
            m.mailbox_closes,
        );
        r.register(
            "relay_connections",
            "Open relay connections (waiting and spliced)",
            m.relay_connections,
        );
        r.register("relay_pairs", "Relay pairs spliced", m.relay_pairs_total);
        r.register("relay_bytes", "Bytes relayed", m.relay_bytes_total);
        r.register(
            "relay_refused",
            "Relay connections refused, by reason",
            m.relay_refused,
        );
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        out
    }
}

/// Serves `GET /metrics` on `listener` until the handle is aborted. Requests are read for at
/// most 5 s and 8 KiB; anything but `GET /metrics` gets 404.
pub fn serve_metrics(listener: TcpListener, metrics: ServerMetrics) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let read = tokio::time::timeout(Duration::from_secs(5), async {
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return false,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    true
                });
                if !matches!(read.await, Ok(true)) {
                    return;
                }
                let wanted =
                    head.starts_with(b"GET /metrics ") || head.starts_with(b"GET /metrics?");
                let (status, body) = match wanted {
                    true => ("200 OK", metrics.encode()),
                    false => ("404 Not Found", "not found\n".to_string()),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; \
                     charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    })
}
