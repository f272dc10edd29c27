//! `fowld`: the forwarding daemon for glue programs, JSON lines on stdin/stdout (see
//! `protocol/fowld.md`). Logs go to stderr; stdout carries only protocol JSON.

use clap::Parser;
use fowl::interfaces::fowld::{run, FowldOptions};
use fowl::interfaces::options::NetworkArgs;

#[derive(Parser)]
#[command(
    name = "fowld",
    disable_version_flag = true,
    about = "fowl daemon: forward streams over a magic-wormhole, driven by JSON lines on stdin/stdout"
)]
struct Cli {
    #[command(flatten)]
    network: NetworkArgs,
    /// Also report Dilation connections and reconnections (`dilation-connected`,
    /// `dilation-reconnecting`), which Python fowld does not emit.
    #[arg(long)]
    status_events: bool,
    /// Print the versions as JSON and exit.
    #[arg(long)]
    version: bool,
}

fn main() {
    fowl::interfaces::tune_allocator();
    fowl::interfaces::raise_open_files_limit();
    let cli = Cli::parse();
    if cli.version {
        let v = env!("CARGO_PKG_VERSION");
        println!("{}", serde_json::json!({"fowl": v, "wormhole": v}));
        return;
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let network = &cli.network;
    let (mailbox_url, relay, liveness, proxy) = match (
        network.mailbox_url(),
        network.relay(),
        network.liveness(),
        network.proxy(),
    ) {
        (Ok(m), Ok(r), Ok(l), Ok(p)) => (m, r, l, p),
        (Err(e), _, _, _) | (_, Err(e), _, _) | (_, _, Err(e), _) | (_, _, _, Err(e)) => {
            eprintln!("fowld: {e}");
            std::process::exit(2);
        }
    };
    let options = FowldOptions {
        mailbox_url,
        relay,
        no_listen: cli.network.no_listen,
        liveness,
        status_events: cli.status_events,
        extra_root_certificates: Vec::new(),
        appid: cli.network.appid.clone(),
        proxy,
    };
    // one thread: every task of the daemon on it, no wake-ups across threads on the data path
    // (measured: less CPU per GB and more throughput than a multi-threaded runtime, README)
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let code = runtime.block_on(run(options));
    // the stdin thread may still block on a read: do not wait for it
    runtime.shutdown_background();
    std::process::exit(code);
}
