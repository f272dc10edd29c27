//! Dilation interop with Python magic-wormhole 0.24 (`tests/python/dilation_peer.py`), in both
//! roles, direct and relay-only, against the real Python mailbox server and transit relay.

mod common;

use std::time::Duration;

use common::{MailboxServer, PyPeer, TransitRelay};
use fowl::dilation::{Dilated, DilationConfig, DilationEvent, PathKind, RelayLocation, Subchannel};
use fowl::wormhole::{Mood, Wormhole, WormholeConfig};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LEADER: &str = "ffffffffffffffff";
const FOLLOWER: &str = "0000000000000000";

fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Echoes every subchannel accepted for `name`; returns (bytes, sha256) of the first one.
fn echo_server(d: &Dilated, name: &str) -> tokio::task::JoinHandle<(usize, String)> {
    let mut listener = d.listen(name);
    tokio::spawn(async move {
        let mut sub = listener.accept().await.expect("a subchannel");
        let (mut count, mut hash) = (0, Sha256::new());
        let mut buf = vec![0u8; 65536];
        loop {
            let n = sub.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            count += n;
            hash.update(&buf[..n]);
            if sub.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        (count, hex::encode(hash.finalize()))
    })
}

/// Sends `data` and reads the echo back concurrently; returns the echo.
async fn send_and_read_echo(sub: Subchannel, data: Vec<u8>) -> Vec<u8> {
    let (mut r, mut w) = tokio::io::split(sub);
    let len = data.len();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w
    });
    let mut back = vec![0u8; len];
    r.read_exact(&mut back).await.unwrap();
    let w = writer.await.unwrap();
    let mut sub = r.unsplit(w);
    sub.shutdown().await.unwrap();
    back
}

async fn interop(rust_side: &str, relay_only: bool, size: usize) {
    common::init_logging();
    common::require_loopback_only();
    let server = MailboxServer::start();
    let relay = TransitRelay::start();
    let mut args = vec![
        "--url".to_string(),
        server.url(),
        "--relay".into(),
        relay.hint(),
        "--source-bytes".into(),
        size.to_string(),
    ];
    if relay_only {
        args.push("--no-listen".into());
    }
    let mut py = PyPeer::spawn("dilation_peer.py", &args);
    let code = py.expect("code").await["code"]
        .as_str()
        .unwrap()
        .to_string();
    let mut w = Wormhole::connect(WormholeConfig::new(
        "lothar.com/rust-fowl-test",
        &server.url(),
    ))
    .await
    .unwrap();
    w.set_code(&code).await.unwrap();
    let verifier = w.verifier().await.unwrap();
    assert_eq!(
        py.expect("verifier").await["verifier"],
        hex::encode(verifier)
    );
    let mut d = w.dilate(DilationConfig {
        side: Some(rust_side.into()),
        relay: Some(relay.hint().parse::<RelayLocation>().unwrap()),
        no_listen: relay_only,
        ..DilationConfig::default()
    });
    let echo = echo_server(&d, "py-source");
    let sub = d.open("echo").await.unwrap();
    assert_eq!(sub.id() % 2, if rust_side == LEADER { 1 } else { 0 });
    let data = pattern(size);
    let want = hex::encode(Sha256::digest(&data));
    let back = send_and_read_echo(sub, data).await;
    assert_eq!(
        hex::encode(Sha256::digest(&back)),
        want,
        "our data came back intact"
    );

    let (echo_bytes, echo_sha) = echo.await.unwrap();
    let mut done = Vec::new();
    for _ in 0..2 {
        let v = py.next(Duration::from_secs(120)).await;
        match v["event"].as_str().unwrap() {
            "dilated" => {}
            _ => done.push(v),
        }
    }
    while done.len() < 2 {
        done.push(py.next(Duration::from_secs(120)).await);
    }
    let find = |name: &str| {
        done.iter()
            .find(|v| v["event"] == name)
            .unwrap_or_else(|| panic!("no {name}: {done:?}"))
            .clone()
    };
    let src = find("source-done");
    assert_eq!(src["sent"], size);
    assert_eq!(src["echo_bytes"], size);
    assert_eq!(
        src["echo_sha256"], src["sent_sha256"],
        "python's data came back intact"
    );
    assert_eq!(
        (echo_bytes, echo_sha),
        (size, src["sent_sha256"].as_str().unwrap().to_string()),
        "we received exactly what python sent"
    );
    let ours = find("echo-done");
    assert_eq!(ours["bytes"], size);
    assert_eq!(ours["sha256"], want, "python received exactly what we sent");

    let path = d
        .wait_for(|e| match e {
            DilationEvent::Connected { path, .. } => Some(*path),
            _ => None,
        })
        .await;
    assert_eq!(
        path,
        Some(if relay_only {
            PathKind::Relay
        } else {
            PathKind::Direct
        })
    );
    py.send_line("close").await;
    assert_eq!(
        py.until("closed", Duration::from_secs(30)).await.0["result"],
        "happy"
    );
    assert_eq!(d.close().await, Ok(Mood::Happy));
    assert_eq!(py.wait(Duration::from_secs(10)).await, Some(0));
}

const SIZE: usize = 64 << 20;

#[tokio::test]
async fn rust_leader_direct() {
    tokio::time::timeout(Duration::from_secs(240), interop(LEADER, false, SIZE))
        .await
        .unwrap();
}

#[tokio::test]
async fn rust_follower_direct() {
    tokio::time::timeout(Duration::from_secs(240), interop(FOLLOWER, false, SIZE))
        .await
        .unwrap();
}

#[tokio::test]
async fn rust_leader_relay_only() {
    tokio::time::timeout(Duration::from_secs(240), interop(LEADER, true, SIZE))
        .await
        .unwrap();
}

#[tokio::test]
async fn rust_follower_relay_only() {
    tokio::time::timeout(Duration::from_secs(240), interop(FOLLOWER, true, SIZE))
        .await
        .unwrap();
}
