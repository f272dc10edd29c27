//! `fowl`: the human command line. `fowl invite` and `fowl accept` forward services between two
//! machines; `fowl server` hosts a mailbox server and a transit relay.

use clap::{Parser, Subcommand};
use fowl::interfaces::cli::{self, AcceptArgs, InviteArgs};
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
    /// Allocate a code to tell your peer, and forward services with them.
    Invite(InviteArgs),
    /// Join a peer's invitation with its code, and forward services with them.
    Accept(AcceptArgs),
    /// Run a mailbox (rendezvous) server and a transit relay for wormhole clients, Python ones
    /// included.
    Server(ServerArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let code = match Cli::parse().command {
        Command::Server(args) => server::run(args).await.map(|()| 0)?,
        Command::Invite(args) => cli::invite(args).await?,
        Command::Accept(args) => cli::accept(args).await?,
    };
    std::process::exit(code);
}
