//! `fowl`: the human command line. `fowl invite` and `fowl accept` forward services between two
//! machines (`--remember NAME`, then `fowl connect NAME` without a code); `fowl server` hosts a mailbox server and a transit relay.

use clap::{CommandFactory, Parser, Subcommand};
use fowl::interfaces::cli::{self, AcceptArgs, ConnectArgs, InviteArgs};
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
    /// Log lines (on stderr) as text or as JSON objects, one per line (for log collectors).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Allocate a code to tell your peer, and forward services with them.
    Invite(InviteArgs),
    /// Join a peer's invitation with its code, and forward services with them.
    Accept(AcceptArgs),
    /// Meet a remembered peer again without a code (both sides run it), and forward services.
    Connect(ConnectArgs),
    /// List the remembered peers.
    Peers,
    /// Forget a remembered peer (delete its secret).
    Forget {
        /// The peer's name.
        name: String,
    },
    /// Run a mailbox (rendezvous) server and a transit relay for wormhole clients, Python ones
    /// included.
    Server(ServerArgs),
    /// Print a shell completion script (e.g. `fowl completions bash > /etc/bash_completion.d/fowl`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; e.g. `fowl man | man -l -`).
    Man,
}

fn main() {
    fowl::interfaces::tune_allocator();
    fowl::interfaces::raise_open_files_limit();
    let args = cli::python_habits(std::env::args_os().collect());
    let cli = Cli::parse_from(args);
    // the server serves many clients on every core; a peer's forwarding runs on one thread (no
    // wake-ups across threads on the data path: less CPU per GB, README)
    let runtime = match cli.command {
        Command::Server(_) => tokio::runtime::Runtime::new(),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    }
    .expect("a tokio runtime");
    let code = runtime.block_on(async {
        match run(cli).await {
            Ok(code) => code,
            Err(e) => {
                // the text may carry a server's or a peer's words: escaped for the terminal
                eprintln!("fowl: {}", cli::render::clean(&format!("{e:#}")));
                1
            }
        }
    });
    // a thread may still block on a read of stdin: do not wait for it
    runtime.shutdown_background();
    std::process::exit(code);
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let code = match cli.command {
        Command::Server(args) => server::run(args).await.map(|()| 0)?,
        Command::Invite(args) => cli::invite(args).await?,
        Command::Accept(args) => cli::accept(args).await?,
        Command::Connect(args) => cli::connect(args).await?,
        Command::Peers => cli::peers()?,
        Command::Forget { name } => cli::forget(&name)?,
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "fowl", &mut script);
            print_all(&script)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            print_all(&page)
        }
    };
    Ok(code)
}

/// Writes `bytes` to stdout; a reader that stops early (`| head`) is not an error.
fn print_all(bytes: &[u8]) -> i32 {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes).and_then(|()| out.flush());
    0
}
