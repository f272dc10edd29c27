//! `fowl`: the human command line. `fowl server` hosts a mailbox server and a transit relay; the
//! forwarding commands (`invite`, `accept`) arrive with the forwarding engine.

use clap::{Parser, Subcommand};
use fowl::interfaces::server::{self, ServerArgs};

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
    /// Run a mailbox (rendezvous) server and a transit relay for wormhole clients, Python ones
    /// included.
    Server(ServerArgs),
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
        Command::Server(args) => server::run(args).await,
    }
}
