//! Sends a file from one process to another over a named Dilation subchannel, the way a Rust
//! program uses the library: a wormhole with a one-time code, dilated, one subchannel.
//!
//!     cargo run --example send_file -- send FILE --mailbox ws://HOST:PORT/v1
//!     cargo run --example send_file -- receive CODE OUT --mailbox ws://HOST:PORT/v1
//!
//! The sender prints the code; the receiver writes OUT and answers with the SHA-256 of what it
//! got, which the sender checks against its own. `--relay tcp:HOST:PORT` adds a transit relay
//! and `--no-listen` makes it the only path. (`fowl server` runs a mailbox and a relay.)

use anyhow::{bail, Context};
use fowl::dilation::{DilationConfig, RelayLocation};
use fowl::wormhole::{Wormhole, WormholeConfig};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Both sides name the subchannel the same way.
const SUBPROTOCOL: &str = "example-file";
const APPID: &str = "example.invalid/send-file";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let mailbox = option("--mailbox").context("--mailbox ws://HOST:PORT/v1 is required")?;
    let dilation = DilationConfig {
        relay: option("--relay")
            .map(|r| r.parse::<RelayLocation>())
            .transpose()?,
        no_listen: args.iter().any(|a| a == "--no-listen"),
        ..DilationConfig::default()
    };
    let mut config = WormholeConfig::new(APPID, &mailbox);
    config.dilation = true;
    match args.first().map(String::as_str) {
        Some("send") => send(config, dilation, args.get(1).context("send FILE")?).await,
        Some("receive") => {
            let (code, out) = (
                args.get(1).context("receive CODE OUT")?,
                args.get(2).context("receive CODE OUT")?,
            );
            receive(config, dilation, code, out).await
        }
        _ => bail!("usage: send_file send FILE | receive CODE OUT, with --mailbox URL"),
    }
}

async fn send(config: WormholeConfig, dilation: DilationConfig, path: &str) -> anyhow::Result<()> {
    let data = std::fs::read(path).with_context(|| path.to_string())?;
    let mut wormhole = Wormhole::connect(config).await?;
    wormhole.allocate_code(2);
    println!("code: {}", wormhole.allocated_code().await?);
    let dilated = wormhole.dilate(dilation);
    // opening may happen at once: DATA waits for the connection
    let mut sub = dilated.open(SUBPROTOCOL).await?;
    sub.write_all(&data).await?;
    sub.shutdown().await?; // our end of the file
    let mut answer = String::new();
    sub.read_to_string(&mut answer).await?;
    let ours = hex::encode(Sha256::digest(&data));
    if answer.trim() != ours {
        bail!("the receiver got {answer:?}, we sent {ours}");
    }
    println!("sent {} bytes, sha256 {ours} confirmed", data.len());
    println!("mood: {}", dilated.close().await?);
    Ok(())
}

async fn receive(
    config: WormholeConfig,
    dilation: DilationConfig,
    code: &str,
    out: &str,
) -> anyhow::Result<()> {
    let wormhole = Wormhole::connect(config).await?;
    wormhole.set_code(code).await?;
    let dilated = wormhole.dilate(dilation);
    let mut listener = dilated.listen(SUBPROTOCOL);
    let mut sub = listener.accept().await.context("the session ended")?;
    let mut data = Vec::new();
    sub.read_to_end(&mut data).await?;
    std::fs::write(out, &data).with_context(|| out.to_string())?;
    let digest = hex::encode(Sha256::digest(&data));
    sub.write_all(digest.as_bytes()).await?;
    sub.shutdown().await?;
    drop(sub);
    println!("received {} bytes, sha256 {digest}", data.len());
    println!("mood: {}", dilated.close().await?);
    Ok(())
}
