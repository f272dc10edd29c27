//! Two peers meet through a mailbox server, agree on a key with a one-time code, compare
//! verifiers and trade messages.
//!
//!     cargo run --example key_exchange -- [--mailbox ws://HOST:PORT/v1]
//!
//! Without `--mailbox` it starts our mailbox server in-process on a free loopback port.

use std::time::Instant;

use fowl::wormhole::{Wormhole, WormholeConfig};

#[path = "support/mailbox.rs"]
mod mailbox;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let given = args
        .iter()
        .position(|a| a == "--mailbox")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let (url, _server) = mailbox::url_or_local(given)?;
    println!("mailbox:  {url}");
    let config = WormholeConfig::new("meejah.ca/wormhole/forward", &url);

    let started = Instant::now();
    let mut alice = Wormhole::connect(config.clone()).await?;
    alice.allocate_code(2);
    let code = alice.allocated_code().await?;
    println!("code:     {code}");
    let mut bob = Wormhole::connect(config).await?;
    bob.set_code(&code).await?;

    let (va, vb) = (alice.verifier().await?, bob.verifier().await?);
    anyhow::ensure!(va == vb, "verifiers differ");
    println!("verifier: {}", hex::encode(va));
    alice.send_message(b"hello from alice".to_vec());
    bob.send_message(b"hello from bob".to_vec());
    println!(
        "bob got:   {}",
        String::from_utf8_lossy(&bob.recv_message().await?)
    );
    println!(
        "alice got: {}",
        String::from_utf8_lossy(&alice.recv_message().await?)
    );
    println!(
        "moods:    {} / {}",
        alice.close().await?,
        bob.close().await?
    );
    println!("elapsed:  {:.0} ms", started.elapsed().as_secs_f64() * 1e3);
    Ok(())
}
