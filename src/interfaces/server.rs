//! `fowl server`: a mailbox server and a transit relay, each on its own address, either optional.

use std::time::Duration;

use clap::Args;
use tokio::net::TcpListener;

use crate::server::mailbox::{self, MailboxConfig};
use crate::server::relay::{self, RelayConfig};

/// Options of `fowl server`.
#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Where the mailbox server listens (WebSocket path /v1).
    #[arg(long, default_value = "127.0.0.1:4000")]
    pub mailbox_listen: String,
    /// Do not run a mailbox server.
    #[arg(long)]
    pub no_mailbox: bool,
    /// Where the transit relay listens.
    #[arg(long, default_value = "127.0.0.1:4001")]
    pub relay_listen: String,
    /// Do not run a transit relay.
    #[arg(long)]
    pub no_relay: bool,
    /// Message of the day shown to clients.
    #[arg(long)]
    pub motd: Option<String>,
    /// Make every client fail with this message (maintenance).
    #[arg(long)]
    pub signal_error: Option<String>,
    /// Refuse to list allocated nameplates.
    #[arg(long)]
    pub disallow_list: bool,
    /// Seconds an unattended mailbox lives after its last message.
    #[arg(long, default_value_t = 660)]
    pub mailbox_expiry: u64,
    /// Mailbox server WebSocket connections at most.
    #[arg(long, default_value_t = 10_000)]
    pub mailbox_max_connections: usize,
    /// Relay connections at most (waiting and spliced).
    #[arg(long, default_value_t = 4096)]
    pub relay_max_connections: usize,
    /// Relay connections waiting for their partner at most.
    #[arg(long, default_value_t = 2048)]
    pub relay_max_waiting: usize,
    /// Seconds a relay connection may wait for its partner.
    #[arg(long, default_value_t = 120)]
    pub relay_waiting_timeout: u64,
    /// Seconds a spliced relay pair may stay silent before it is closed.
    #[arg(long, default_value_t = 600)]
    pub relay_idle_timeout: u64,
    /// Mailbox server connections from one client address at most.
    #[arg(long, default_value_t = 64)]
    pub mailbox_max_per_address: usize,
    /// Mailboxes stored at once at most.
    #[arg(long, default_value_t = 100_000)]
    pub mailbox_max_mailboxes: usize,
    /// Relay connections from one client address at most.
    #[arg(long, default_value_t = 128)]
    pub relay_max_per_address: usize,
    /// Serve Prometheus metrics (`GET /metrics`) on this address, e.g. 127.0.0.1:9400.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Serve the mailbox over TLS (`wss://`) with this certificate chain (PEM); with --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Keep the mailbox server's nameplates, mailboxes and messages in this SQLite database
    /// (created if missing): a restart, even a crash, loses no session. In memory if omitted.
    #[arg(long, value_name = "PATH")]
    pub db: Option<std::path::PathBuf>,
    /// With --db: days the usage record keeps a finished session (app, start, duration, moods).
    #[arg(long, default_value_t = 90)]
    pub usage_retention_days: u64,
    /// Bytes of messages stored in all mailboxes together at most (default 1 GiB).
    #[arg(long, default_value_t = 1 << 30)]
    pub mailbox_max_stored_bytes: usize,
    /// Seconds a mailbox someone listens to lives without a new message (default 7 days); its
    /// listeners are then disconnected and open it afresh.
    #[arg(long, default_value_t = 7 * 24 * 3600)]
    pub mailbox_listened_expiry: u64,
}

async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

/// Runs the servers until Ctrl-C or SIGTERM. Prints one line per server with the address clients
/// use.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    if args.no_mailbox && args.no_relay {
        anyhow::bail!("--no-mailbox and --no-relay together leave nothing to serve");
    }
    let metrics = crate::server::ServerMetrics::default();
    let mut _metrics = None;
    if let Some(addr) = &args.metrics_listen {
        let listener = bind(addr).await?;
        let at = listener.local_addr()?;
        _metrics = Some(AbortOnDrop(crate::server::serve_metrics(
            listener,
            metrics.clone(),
        )));
        println!("metrics listening on http://{at}/metrics");
    }
    let mut _mailbox = None;
    if !args.no_mailbox {
        let config = MailboxConfig {
            motd: args.motd,
            signal_error: args.signal_error,
            disallow_list: args.disallow_list,
            mailbox_expiry: args.mailbox_expiry as f64,
            max_connections: args.mailbox_max_connections,
            max_per_address: args.mailbox_max_per_address,
            max_mailboxes: args.mailbox_max_mailboxes,
            max_stored_bytes: args.mailbox_max_stored_bytes,
            listened_expiry: args.mailbox_listened_expiry as f64,
            db: args.db,
            usage_retention: args.usage_retention_days as f64 * 86400.0,
            tls: args
                .tls_cert
                .zip(args.tls_key)
                .map(|(cert, key)| mailbox::TlsFiles { cert, key }),
            metrics: metrics.clone(),
            ..Default::default()
        };
        let server = mailbox::serve(bind(&args.mailbox_listen).await?, config)?;
        println!("mailbox server listening on {}", server.url());
        _mailbox = Some(server);
    }
    let mut _relay = None;
    if !args.no_relay {
        let config = RelayConfig {
            max_connections: args.relay_max_connections,
            max_per_address: args.relay_max_per_address,
            max_waiting: args.relay_max_waiting,
            waiting_timeout: Duration::from_secs(args.relay_waiting_timeout),
            idle_timeout: Duration::from_secs(args.relay_idle_timeout),
            metrics: metrics.clone(),
            ..Default::default()
        };
        let server = relay::serve(bind(&args.relay_listen).await?, config)?;
        println!("transit relay listening on {}", server.hint());
        _relay = Some(server);
    }
    shutdown_signal().await;
    eprintln!("stopping");
    Ok(())
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
