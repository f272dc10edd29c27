//! `fowl`: the human command line. `fowl server` hosts a mailbox server; the forwarding commands
//! (`invite`, `accept`) arrive with the forwarding engine.

use clap::{Parser, Subcommand};
use fowl::server::mailbox::{serve, MailboxConfig};

#[derive(Parser)]
#[command(
    name = "fowl",
    version,
    about = "Forward local TCP and unix streams over a magic-wormhole"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a mailbox (rendezvous) server for wormhole clients, Python ones included.
    Server {
        /// Where the mailbox server listens (WebSocket path /v1).
        #[arg(long, default_value = "127.0.0.1:4000")]
        mailbox_listen: String,
        /// Message of the day shown to clients.
        #[arg(long)]
        motd: Option<String>,
        /// Make every client fail with this message (maintenance).
        #[arg(long)]
        signal_error: Option<String>,
        /// Refuse to list allocated nameplates.
        #[arg(long)]
        disallow_list: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Server {
            mailbox_listen,
            motd,
            signal_error,
            disallow_list,
        } => {
            let listener = tokio::net::TcpListener::bind(&mailbox_listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {mailbox_listen}: {e}"))?;
            let server = serve(
                listener,
                MailboxConfig {
                    motd,
                    signal_error,
                    disallow_list,
                },
            )?;
            println!("mailbox server listening on {}", server.url());
            tokio::signal::ctrl_c().await?;
            eprintln!("stopping");
            Ok(())
        }
    }
}
