//! Rust ↔ Rust Dilation through the real Python mailbox server (and transit relay).

mod common;

use std::time::Duration;

use fowl::dilation::{Dilated, DilationConfig, DilationEvent, PathKind, RelayLocation};
use fowl::wormhole::{Mood, Wormhole, WormholeConfig};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LEADER: &str = "ffffffffffffffff";
const FOLLOWER: &str = "0000000000000000";

async fn pair(url: &str, a: DilationConfig, b: DilationConfig) -> (Dilated, Dilated) {
    let config = WormholeConfig::new("lothar.com/rust-fowl-test", url);
    let mut wa = Wormhole::connect(config.clone()).await.unwrap();
    wa.allocate_code(2);
    let code = wa.allocated_code().await.unwrap();
    let wb = Wormhole::connect(config).await.unwrap();
    wb.set_code(&code).await.unwrap();
    (wa.dilate(a), wb.dilate(b))
}

fn with_side(side: &str) -> DilationConfig {
    DilationConfig {
        side: Some(side.into()),
        ..DilationConfig::default()
    }
}

async fn connected(d: &mut Dilated) -> PathKind {
    d.wait_for(|e| match e {
        DilationEvent::Connected { path, .. } => Some(*path),
        _ => None,
    })
    .await
    .expect("connected")
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut x = seed as u32 | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn rust_to_rust_subchannel_echo_direct() {
    common::init_logging();
    common::require_loopback_only();
    let server = common::MailboxServer::start();
    tokio::time::timeout(Duration::from_secs(60), async {
        let (mut a, mut b) = pair(&server.url(), with_side(LEADER), with_side(FOLLOWER)).await;
        let mut listener = b.listen("echo");
        let mut sa = a.open("echo").await.unwrap();
        assert_eq!(sa.id(), 1, "the leader opens odd subchannels");
        let echo = tokio::spawn(async move {
            let mut sb = listener.accept().await.unwrap();
            assert_eq!(sb.subprotocol(), "echo");
            let mut buf = vec![0u8; 65536];
            loop {
                let n = sb.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                sb.write_all(&buf[..n]).await.unwrap();
            }
        });
        assert_eq!(connected(&mut a).await, PathKind::Direct);
        assert_eq!(connected(&mut b).await, PathKind::Direct);
        let data = pattern(4 << 20, 7);
        let (mut r, mut w) = tokio::io::split(sa);
        let writer = {
            let data = data.clone();
            tokio::spawn(async move {
                w.write_all(&data).await.unwrap();
                w
            })
        };
        let mut back = vec![0u8; data.len()];
        r.read_exact(&mut back).await.unwrap();
        assert_eq!(Sha256::digest(&back), Sha256::digest(&data));
        let w = writer.await.unwrap();
        drop(r.unsplit(w));
        echo.await.unwrap();
        assert_eq!(a.close().await, Ok(Mood::Happy));
        assert_eq!(b.close().await, Ok(Mood::Happy));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn rust_to_rust_relay_only() {
    common::init_logging();
    common::require_loopback_only();
    let server = common::MailboxServer::start();
    let relay = common::TransitRelay::start();
    let cfg = |side: &str| DilationConfig {
        side: Some(side.into()),
        no_listen: true,
        relay: Some(relay.hint().parse::<RelayLocation>().unwrap()),
        ..DilationConfig::default()
    };
    tokio::time::timeout(Duration::from_secs(60), async {
        let (mut a, mut b) = pair(&server.url(), cfg(FOLLOWER), cfg(LEADER)).await;
        let mut listener = a.listen("data");
        let mut sb = b.open("data").await.unwrap();
        assert_eq!(sb.id(), 1);
        let data = pattern(1 << 20, 3);
        sb.write_all(&data).await.unwrap();
        sb.shutdown().await.unwrap();
        let mut sa = listener.accept().await.unwrap();
        let mut got = Vec::new();
        sa.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, data);
        assert_eq!(connected(&mut a).await, PathKind::Relay);
        assert_eq!(connected(&mut b).await, PathKind::Relay);
        assert_eq!(a.close().await, Ok(Mood::Happy));
        assert_eq!(b.close().await, Ok(Mood::Happy));
    })
    .await
    .unwrap();
}
