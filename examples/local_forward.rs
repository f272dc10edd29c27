//! The whole of fowl on one machine, offline: our mailbox server and transit relay on loopback,
//! two peers meeting with a one-time code, one forwarding a local TCP service to the other, and
//! data pushed through it.
//!
//!     cargo run --release --example local_forward -- [--megabytes N] [--relay-only]
//!
//! Prints the code, the verifier both peers computed, the path Dilation chose (direct or relay)
//! and the throughput; exits 0 when every byte arrived intact.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use fowl::dilation::{Dilated, DilationConfig, DilationEvent, PathKind};
use fowl::forward::Engine;
use fowl::forward::{app_versions, dilation_config, APPID};
use fowl::forward::{Event, EventQueue};
use fowl::forward::{LocalSpec, RemoteSpec};
use fowl::server::{mailbox, relay};
use fowl::wormhole::{Wormhole, WormholeConfig};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The first event `pick` accepts, within 30 s.
async fn event<T>(q: &EventQueue, mut pick: impl FnMut(&Event) -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        for e in q.drain(Duration::ZERO) {
            if let Event::Error(m) = &e {
                anyhow::bail!("forwarding error: {m}");
            }
            if let Some(v) = pick(&e) {
                return Ok(v);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("timed out waiting for the forwarding engine")
}

async fn connected(d: &mut Dilated) -> anyhow::Result<(PathKind, std::net::SocketAddr)> {
    tokio::time::timeout(
        Duration::from_secs(30),
        d.wait_for(|e| match e {
            DilationEvent::Connected { path, peer, .. } => Some((*path, *peer)),
            _ => None,
        }),
    )
    .await
    .context("no Dilation connection within 30 s")?
    .context("the session ended")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let megabytes: usize = match args.iter().position(|a| a == "--megabytes") {
        Some(i) => args.get(i + 1).context("--megabytes N")?.parse()?,
        None => 256,
    };
    let relay_only = args.iter().any(|a| a == "--relay-only");
    // logs to stderr (RUST_LOG=fowl=debug shows every hint advertised and every dial)
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    // the servers, on free loopback ports
    let mb = mailbox::serve(TcpListener::bind("127.0.0.1:0").await?, Default::default())?;
    let rl = relay::serve(TcpListener::bind("127.0.0.1:0").await?, Default::default())?;
    println!("mailbox server:  {}", mb.url());
    println!("transit relay:   {}", rl.hint());

    // the service the accepting peer offers: it reads everything and hashes it
    let service = TcpListener::bind("127.0.0.1:0").await?;
    let service_port = service.local_addr()?.port();
    let sink = tokio::spawn(async move {
        let (mut s, _) = service.accept().await?;
        let (mut hash, mut total, mut buf) = (Sha256::new(), 0usize, vec![0u8; 256 * 1024]);
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>((total, hex::encode(hash.finalize())));
            }
            hash.update(&buf[..n]);
            total += n;
        }
    });

    // two peers meet with a code
    let mut config = WormholeConfig::new(APPID, &mb.url());
    config.app_versions = app_versions();
    config.dilation = true;
    let mut inviter = Wormhole::connect(config.clone()).await?;
    inviter.allocate_code(2);
    let code = inviter.allocated_code().await?;
    println!("code:            {code}");
    let mut accepter = Wormhole::connect(config).await?;
    accepter.set_code(&code).await?;
    let (v1, v2) = (inviter.verifier().await?, accepter.verifier().await?);
    ensure!(v1 == v2, "the verifiers differ");
    println!("verifier:        {}", hex::encode(v1));

    // a demo stays on this machine: loopback listeners, hints and dials only, whatever other
    // interfaces exist
    let dilation = DilationConfig {
        loopback_only: true,
        ..dilation_config(Some(rl.hint().parse()?), relay_only)
    };
    println!("network:         loopback only (127.0.0.1), whatever other interfaces exist");
    let mut a = inviter.dilate(dilation.clone());
    let mut b = accepter.dilate(dilation);
    let (qa, qb) = (EventQueue::default(), EventQueue::default());
    let (ea, eb) = (
        Engine::start(a.handle(), qa.clone()),
        Engine::start(b.handle(), qb.clone()),
    );
    ea.local(LocalSpec {
        name: "demo".into(),
        ..Default::default()
    });
    eb.remote(RemoteSpec {
        name: "demo".into(),
        local_connect_port: Some(service_port),
        ..Default::default()
    });
    let (path, peer) = connected(&mut a).await?;
    connected(&mut b).await?;
    println!("path:            {path} (to {peer})");
    let port = event(&qa, |e| match e {
        Event::Listening { port, .. } => *port,
        _ => None,
    })
    .await?;
    println!("forwarded:       127.0.0.1:{port} -> the peer's 127.0.0.1:{service_port}");

    // push data through the forward
    let data: Vec<u8> = (0..megabytes << 20)
        .map(|i| (i * 7 + i / 4093) as u8)
        .collect();
    let expected = hex::encode(Sha256::digest(&data));
    let started = Instant::now();
    let mut client = TcpStream::connect(("127.0.0.1", port)).await?;
    client.write_all(&data).await?;
    client.shutdown().await?;
    let (total, sha) = sink.await??;
    let secs = started.elapsed().as_secs_f64();
    ensure!(
        total == data.len() && sha == expected,
        "the data arrived damaged"
    );
    println!(
        "transferred:     {megabytes} MiB intact (sha256 {}...) in {secs:.2} s: {:.0} MB/s",
        &sha[..16],
        total as f64 / secs / 1e6
    );
    drop(client);
    let (ra, rb) = tokio::join!(a.close(), b.close());
    println!("closed:          {} / {}", ra?, rb?);
    Ok(())
}
