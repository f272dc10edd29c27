//! Dilation benchmark: one subchannel between two Rust peers on loopback, bulk throughput.
//!
//!     scripts/bench.sh                      (builds in release, runs in a loopback-only netns)
//!     cargo run --release --example bench_dilation -- --mailbox ws://127.0.0.1:PORT/v1 [--mib N]
//!
//! Without `--mailbox` it starts our mailbox server in-process. Both peers run in
//! this process; the machine has two cores, so sender and receiver share them.

use std::time::Instant;

use fowl::dilation::{DilationConfig, DilationEvent};
use fowl::wormhole::{Wormhole, WormholeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "support/mailbox.rs"]
mod mailbox;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let mib: usize = arg("--mib").map(|m| m.parse()).transpose()?.unwrap_or(2048);
    let (url, _server) = mailbox::url_or_local(arg("--mailbox"))?;

    let config = WormholeConfig::new("lothar.com/rust-fowl-bench", &url);
    let mut a = Wormhole::connect(config.clone()).await?;
    a.allocate_code(2);
    let code = a.allocated_code().await?;
    let b = Wormhole::connect(config).await?;
    b.set_code(&code).await?;
    let side = |s: &str| DilationConfig {
        side: Some(s.into()),
        ..DilationConfig::default()
    };
    let mut da = a.dilate(side("ffffffffffffffff"));
    let db = b.dilate(side("0000000000000000"));
    let mut listener = db.listen("bench");
    let mut tx = da.open("bench").await?;
    let path = da
        .wait_for(|e| match e {
            DilationEvent::Connected { path, .. } => Some(*path),
            _ => None,
        })
        .await;
    let total = mib << 20;
    let reader = tokio::spawn(async move {
        let mut rx = listener.accept().await.expect("subchannel");
        let mut buf = vec![0u8; 1 << 18];
        let mut got = 0;
        while got < total {
            let n = rx.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Ok::<usize, std::io::Error>(got)
    });
    let chunk = vec![0x5au8; 1 << 18];
    let started = Instant::now();
    let mut sent = 0;
    while sent < total {
        tx.write_all(&chunk).await?;
        sent += chunk.len();
    }
    let got = reader.await??;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(got == total, "received {got} of {total} bytes");
    println!("path: {path:?}");
    println!(
        "one subchannel: {mib} MiB in {secs:.2} s = {:.0} MB/s",
        total as f64 / secs / 1e6
    );
    drop(tx);
    da.close().await?;
    db.close().await?;
    Ok(())
}
