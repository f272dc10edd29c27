//! `fowld`: the JSON-lines daemon for glue programs. Its command loop builds on Dilation and
//! arrives with the forwarding engine; today it reports its version.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "fowld",
    version,
    about = "fowl daemon: JSON lines on stdin/stdout"
)]
struct Cli {}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let _cli = Cli::parse();
    eprintln!("fowld's command loop is not available yet: it needs the Dilation layer");
    std::process::exit(2);
}
