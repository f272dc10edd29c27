//! Two peers meet through a mailbox server, agree on a key with a one-time code, compare
//! verifiers and trade messages.
//!
//!     cargo run --example key_exchange -- [--mailbox ws://HOST:PORT/v1]
//!
//! Without `--mailbox` it starts the Python mailbox server from `$FOWL_VENV` (see
//! `scripts/demo.sh`) on a free loopback port and stops it afterwards.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fowl::wormhole::{Wormhole, WormholeConfig};

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_local_mailbox() -> anyhow::Result<(String, KillOnDrop)> {
    let venv = std::env::var("FOWL_VENV").unwrap_or_else(|_| ".venv".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = std::env::temp_dir().join(format!("fowl-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let child = Command::new(format!("{venv}/bin/twist"))
        .args([
            "wormhole-mailbox",
            &format!("--port=tcp:{port}:interface=127.0.0.1"),
            "--channel-db=channel.sqlite",
        ])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {venv}/bin/twist ({e}): run scripts/demo.sh"))?;
    let guard = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the local mailbox server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((format!("ws://127.0.0.1:{port}/v1"), guard))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let given = args
        .iter()
        .position(|a| a == "--mailbox")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let (url, _server) = match given {
        Some(url) => (url, None),
        None => {
            let (url, guard) = start_local_mailbox()?;
            (url, Some(guard))
        }
    };
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
