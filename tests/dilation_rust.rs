//! Rust ↔ Rust Dilation through the real Python mailbox server (and transit relay).

mod common;

use std::time::Duration;

use common::dilation::{
    config as with_side, connected, pattern, relay_only, rust_pair as pair, sha, FOLLOWER, LEADER,
};
use fowl::dilation::PathKind;
use fowl::wormhole::Mood;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn rust_to_rust_subchannel_echo_direct() {
    common::init_logging();
    common::require_loopback_only();
    let server = common::MailboxServer::start();
    tokio::time::timeout(Duration::from_secs(60), async {
        let (mut a, mut b) = pair(&server.url(), with_side(LEADER), with_side(FOLLOWER)).await;
        let echo = common::dilation::echo_server(&b, "echo");
        let sa = a.open("echo").await.unwrap();
        assert_eq!(sa.id(), 1, "the leader opens odd subchannels");
        assert_eq!(sa.subprotocol(), "echo");
        assert_eq!(connected(&mut a).await, PathKind::Direct);
        assert_eq!(connected(&mut b).await, PathKind::Direct);
        let data = pattern(4 << 20, 7);
        let echoed = common::dilation::send_and_read_echo(sa, data.clone(), |_| false).await;
        assert_eq!(sha(&echoed.back), sha(&data));
        assert_eq!(echo.await.unwrap(), (data.len(), sha(&data)));
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
    let cfg = |side: &str| relay_only(side, &relay.hint());
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

#[tokio::test]
async fn two_hundred_concurrent_subchannels_of_one_mib() {
    common::init_logging();
    common::require_loopback_only();
    let server = common::MailboxServer::start();
    tokio::time::timeout(Duration::from_secs(120), async {
        let (a, b) = pair(&server.url(), with_side(LEADER), with_side(FOLLOWER)).await;
        let mut listener = b.listen("bulk");
        let receiver = tokio::spawn(async move {
            let mut readers = Vec::new();
            for _ in 0..200 {
                let mut sub = listener.accept().await.unwrap();
                readers.push(tokio::spawn(async move {
                    let mut got = Vec::new();
                    sub.read_to_end(&mut got).await.unwrap();
                    got
                }));
            }
            let mut hashes = Vec::new();
            for r in readers {
                let got = r.await.unwrap();
                assert_eq!(got.len(), 1 << 20);
                hashes.push(sha(&got));
            }
            hashes
        });
        let started = std::time::Instant::now();
        let mut writers = Vec::new();
        for i in 0..200u64 {
            let mut sub = a.open("bulk").await.unwrap();
            writers.push(tokio::spawn(async move {
                let data = pattern(1 << 20, i);
                sub.write_all(&data).await.unwrap();
                sub.shutdown().await.unwrap();
                sha(&data)
            }));
        }
        let mut sent = Vec::new();
        for w in writers {
            sent.push(w.await.unwrap());
        }
        let mut got = receiver.await.unwrap();
        eprintln!("200 x 1 MiB in {:?}", started.elapsed());
        sent.sort();
        got.sort();
        assert_eq!(sent, got, "every subchannel arrived intact");
        assert_eq!(a.close().await, Ok(Mood::Happy));
        assert_eq!(b.close().await, Ok(Mood::Happy));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn direct_is_preferred_over_relay_ten_of_ten() {
    common::init_logging();
    common::require_loopback_only();
    let server = common::MailboxServer::start();
    let relay = common::TransitRelay::start();
    let both = |side: &str| fowl::dilation::DilationConfig {
        relay: Some(relay.hint().parse().unwrap()),
        ..with_side(side)
    };
    tokio::time::timeout(Duration::from_secs(120), async {
        for _ in 0..10 {
            let (mut a, mut b) = pair(&server.url(), both(LEADER), both(FOLLOWER)).await;
            assert_eq!(connected(&mut a).await, PathKind::Direct);
            assert_eq!(connected(&mut b).await, PathKind::Direct);
            a.close().await.unwrap();
            b.close().await.unwrap();
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn half_close_between_two_rust_peers() {
    common::init_logging();
    common::require_loopback_only();
    let server = common::MailboxServer::start();
    tokio::time::timeout(Duration::from_secs(60), async {
        let (a, b) = pair(&server.url(), with_side(LEADER), with_side(FOLLOWER)).await;
        let mut listener = b.listen("rpc");
        let responder = tokio::spawn(async move {
            let mut sub = listener.accept().await.unwrap();
            let mut request = Vec::new();
            sub.read_to_end(&mut request).await.unwrap(); // the client's write side is closed...
            sub.write_all(&[b"response to ".as_slice(), &request].concat())
                .await
                .unwrap(); // ...ours is not
            sub.shutdown().await.unwrap();
        });
        let mut sub = a.open("rpc").await.unwrap();
        sub.write_all(b"request").await.unwrap();
        sub.shutdown().await.unwrap();
        assert!(
            sub.write_all(b"more").await.is_err(),
            "writes after our CLOSE are refused"
        );
        let mut response = Vec::new();
        sub.read_to_end(&mut response).await.unwrap();
        assert_eq!(response, b"response to request");
        responder.await.unwrap();
        assert_eq!(a.close().await, Ok(Mood::Happy));
        assert_eq!(b.close().await, Ok(Mood::Happy));
    })
    .await
    .unwrap();
}
