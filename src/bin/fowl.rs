//! `fowl`: the human command line. Its forwarding commands (`invite`, `accept`) build on Dilation
//! and arrive with the forwarding engine; today it reports its version and layers.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "fowl",
    version,
    about = "Forward local TCP and unix streams over a magic-wormhole"
)]
struct Cli {}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let _cli = Cli::parse();
    eprintln!("fowl invite / fowl accept are not available yet: they need the Dilation layer");
    std::process::exit(2);
}
