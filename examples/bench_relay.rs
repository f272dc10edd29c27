//! Transit relay benchmark: two raw TCP clients paired by our relay (in-process, loopback), bytes
//! spliced one way, throughput and integrity.
//!
//!     scripts/bench.sh bench_relay [--mib N]

use std::time::Instant;

use anyhow::ensure;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn client(addr: std::net::SocketAddr, side: &str) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    let token = "42".repeat(32);
    s.write_all(format!("please relay {token} for side {side}\n").as_bytes())
        .await?;
    let mut ok = [0u8; 3];
    s.read_exact(&mut ok).await?;
    ensure!(
        &ok == b"ok\n",
        "relay said {:?}",
        String::from_utf8_lossy(&ok)
    );
    Ok(s)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = match args.iter().position(|a| a == "--mib") {
        Some(i) => args[i + 1].parse()?,
        None => 4096,
    };
    let relay =
        fowl::server::relay::serve(TcpListener::bind("127.0.0.1:0").await?, Default::default())?;
    let (a, b) = tokio::join!(
        client(relay.addr, "aaaaaaaaaaaaaaaa"),
        client(relay.addr, "bbbbbbbbbbbbbbbb")
    );
    let (mut a, mut b) = (a?, b?);
    let chunk: Vec<u8> = (0..1 << 20)
        .map(|i: usize| (i * 31 + i / 251) as u8)
        .collect();
    let expected = {
        let mut h = Sha256::new();
        for _ in 0..mib {
            h.update(&chunk);
        }
        hex::encode(h.finalize())
    };
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        for _ in 0..mib {
            a.write_all(&chunk).await?;
        }
        a.shutdown().await?;
        Ok::<_, std::io::Error>(a)
    });
    let (mut h, mut n, mut buf) = (Sha256::new(), 0usize, vec![0u8; 256 * 1024]);
    loop {
        let k = b.read(&mut buf).await?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k;
    }
    let secs = started.elapsed().as_secs_f64();
    drop(writer.await??);
    ensure!(
        n == mib << 20 && hex::encode(h.finalize()) == expected,
        "damaged: {n} bytes"
    );
    println!(
        "relay splice: {mib} MiB intact in {secs:.2} s: {:.0} MB/s",
        n as f64 / secs / 1e6
    );
    Ok(())
}
