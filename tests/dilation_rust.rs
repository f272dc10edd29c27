//! Rust ↔ Rust Dilation through our mailbox server (and transit relay).

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
    let servers = common::RustServers::start();
    tokio::time::timeout(Duration::from_secs(60), async {
        let (mut a, mut b) = pair(&servers.url(), with_side(LEADER), with_side(FOLLOWER)).await;
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
    let servers = common::RustServers::start();
    let cfg = |side: &str| relay_only(side, &servers.relay_hint());
    tokio::time::timeout(Duration::from_secs(60), async {
        let (mut a, mut b) = pair(&servers.url(), cfg(FOLLOWER), cfg(LEADER)).await;
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
    let servers = common::RustServers::start();
    tokio::time::timeout(Duration::from_secs(120), async {
        let (a, b) = pair(&servers.url(), with_side(LEADER), with_side(FOLLOWER)).await;
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
    let servers = common::RustServers::start();
    let both = |side: &str| fowl::dilation::DilationConfig {
        relay: Some(servers.relay_hint().parse().unwrap()),
        ..with_side(side)
    };
    tokio::time::timeout(Duration::from_secs(120), async {
        for _ in 0..10 {
            let (mut a, mut b) = pair(&servers.url(), both(LEADER), both(FOLLOWER)).await;
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
    let servers = common::RustServers::start();
    tokio::time::timeout(Duration::from_secs(60), async {
        let (a, b) = pair(&servers.url(), with_side(LEADER), with_side(FOLLOWER)).await;
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

/// Each end opens a subchannel to the other; on both, each direction carries 64 MiB at once.
async fn matrix(relay_only_path: bool) {
    common::init_logging();
    common::require_loopback_only();
    let servers = common::RustServers::start();
    let cfg = |side: &str| match relay_only_path {
        true => relay_only(side, &servers.relay_hint()),
        false => with_side(side),
    };
    const SIZE: usize = 64 << 20;
    tokio::time::timeout(Duration::from_secs(180), async {
        let (mut a, mut b) = pair(&servers.url(), cfg(LEADER), cfg(FOLLOWER)).await;
        let (mut la, mut lb) = (a.listen("data"), b.listen("data"));
        let (sa, sb) = (a.open("data").await.unwrap(), b.open("data").await.unwrap());
        assert_eq!((sa.id() % 2, sb.id() % 2), (1, 0));
        let (ra, rb) = (lb.accept().await.unwrap(), la.accept().await.unwrap());
        let d: Vec<Vec<u8>> = (0..4).map(|i| pattern(SIZE, i)).collect();
        let (got_sa, got_ra, got_sb, got_rb) = tokio::join!(
            common::dilation::exchange(sa, d[0].clone(), SIZE),
            common::dilation::exchange(ra, d[1].clone(), SIZE),
            common::dilation::exchange(sb, d[2].clone(), SIZE),
            common::dilation::exchange(rb, d[3].clone(), SIZE),
        );
        assert_eq!(
            sha(&got_ra),
            sha(&d[0]),
            "leader-opened, leader to follower"
        );
        assert_eq!(
            sha(&got_sa),
            sha(&d[1]),
            "leader-opened, follower to leader"
        );
        assert_eq!(
            sha(&got_rb),
            sha(&d[2]),
            "follower-opened, follower to leader"
        );
        assert_eq!(
            sha(&got_sb),
            sha(&d[3]),
            "follower-opened, leader to follower"
        );
        let want = if relay_only_path {
            PathKind::Relay
        } else {
            PathKind::Direct
        };
        assert_eq!(connected(&mut a).await, want);
        assert_eq!(connected(&mut b).await, want);
        assert_eq!(a.close().await, Ok(Mood::Happy));
        assert_eq!(b.close().await, Ok(Mood::Happy));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn rust_matrix_direct_64_mib_each_way_from_each_end() {
    matrix(false).await;
}

#[tokio::test]
async fn rust_matrix_relay_only_64_mib_each_way_from_each_end() {
    matrix(true).await;
}

#[tokio::test]
async fn an_open_before_anyone_listens_is_held_with_its_data() {
    common::init_logging();
    common::require_loopback_only();
    let servers = common::RustServers::start();
    tokio::time::timeout(Duration::from_secs(60), async {
        let (a, mut b) = pair(&servers.url(), with_side(LEADER), with_side(FOLLOWER)).await;
        let mut sub = a.open("late").await.unwrap();
        sub.write_all(b"written before the peer listened")
            .await
            .unwrap();
        sub.shutdown().await.unwrap();
        connected(&mut b).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut listener = b.listen("late");
        let mut got = listener.accept().await.unwrap();
        let mut data = Vec::new();
        got.read_to_end(&mut data).await.unwrap();
        assert_eq!(data, b"written before the peer listened");
        assert_eq!(a.close().await, Ok(Mood::Happy));
        assert_eq!(b.close().await, Ok(Mood::Happy));
    })
    .await
    .unwrap();
}

/// Per-subchannel flow control between two of ours: a subchannel whose reader stalls, with
/// 64 MiB pending toward it, stops only its own writer (at about its window); another
/// subchannel of the same session echoes a megabyte and 100 small round trips meanwhile; once
/// the stalled reader reads again, all 64 MiB arrive intact. Without windows, the stalled
/// buffer would pause reading the whole connection and the echo would never come back.
#[tokio::test]
async fn a_stalled_subchannel_stops_only_its_own_writer_within_its_window() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    common::init_logging();
    common::require_loopback_only();
    let servers = common::RustServers::start();
    tokio::time::timeout(Duration::from_secs(120), async {
        let (mut a, mut b) = pair(&servers.url(), with_side(LEADER), with_side(FOLLOWER)).await;
        assert_eq!(connected(&mut a).await, PathKind::Direct);
        connected(&mut b).await;
        let config = fowl::dilation::DilationConfig::default();
        let mut bulk_in = b.listen("bulk");
        let echo = common::dilation::echo_server(&b, "echo");

        const TOTAL: usize = 64 << 20;
        let data = Arc::new(pattern(TOTAL, 9));
        let accepted = Arc::new(AtomicUsize::new(0));
        let mut bulk = a.open("bulk").await.unwrap();
        let writer = {
            let (data, accepted) = (data.clone(), accepted.clone());
            tokio::spawn(async move {
                for chunk in data.chunks(64 << 10) {
                    bulk.write_all(chunk).await.unwrap();
                    accepted.fetch_add(chunk.len(), Ordering::Relaxed);
                }
                bulk.shutdown().await.unwrap();
                bulk
            })
        };
        // taken, never read for now
        let mut stalled = bulk_in.accept().await.unwrap();

        // the other subchannel moves: a megabyte echoed, then 100 small round trips
        let sub = a.open("echo").await.unwrap();
        let small = pattern(1 << 20, 10);
        let echoed = common::dilation::send_and_read_echo(sub, small.clone(), |_| false).await;
        assert_eq!(sha(&echoed.back), sha(&small));
        assert_eq!(echo.await.unwrap().0, small.len());
        let mut pinger = a.open("pings").await.unwrap();
        let mut pongs_in = b.listen("pings");
        let ponger = tokio::spawn(async move {
            let mut s = pongs_in.accept().await.unwrap();
            let mut buf = [0u8; 64];
            for _ in 0..100 {
                s.read_exact(&mut buf).await.unwrap();
                s.write_all(&buf).await.unwrap();
            }
        });
        let mut buf = [0u8; 64];
        for i in 0..100u8 {
            pinger.write_all(&[i; 64]).await.unwrap();
            pinger.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf, [i; 64]);
        }
        ponger.await.unwrap();

        // the stalled writer is held by the window (plus what the connection's budget and the
        // unacknowledged queue may hold): nowhere near the 64 MiB it wants to send
        let held = accepted.load(Ordering::Relaxed);
        let bound = config.inbound_limit + config.write_budget + (64 << 10);
        assert!(held <= bound, "{held} bytes accepted, bound {bound}");

        // the reader resumes: everything arrives, in order
        let mut got = Vec::with_capacity(TOTAL);
        stalled.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), TOTAL);
        assert!(got == *data, "the stalled stream arrived intact");
        drop(writer.await.unwrap());
        assert_eq!(a.close().await, Ok(Mood::Happy));
        assert_eq!(b.close().await, Ok(Mood::Happy));
    })
    .await
    .unwrap();
}

/// The halves' copy-free calls: what a reservation does not use goes back to the write budget
/// and the subchannel's window (else 4 MiB of budget would be gone after 64 small sends of
/// reserved whole records and the writer would wait for ever), and each record arrives whole.
#[tokio::test]
async fn reserved_sends_give_back_what_they_did_not_use_and_chunks_arrive_whole() {
    common::init_logging();
    common::require_loopback_only();
    let servers = common::RustServers::start();
    tokio::time::timeout(Duration::from_secs(60), async {
        let (a, b) = pair(&servers.url(), with_side(LEADER), with_side(FOLLOWER)).await;
        let mut listener = b.listen("chunks");
        let sa = a.open("chunks").await.unwrap();
        let (_ra, mut wa) = sa.into_split();
        let sb = listener.accept().await.unwrap();
        let (mut rb, _wb) = sb.into_split();
        const SENDS: usize = 1000; // far more whole-record reservations than the budget holds
        let receiver = tokio::spawn(async move {
            let mut chunks = Vec::new();
            while let Some(chunk) = rb.read_chunk().await.unwrap() {
                chunks.push(chunk);
            }
            chunks
        });
        for i in 0..SENDS {
            wa.reserve(fowl::dilation::MAX_DATA).await.unwrap();
            let data = format!("record {i}").into_bytes();
            wa.send_reserved(data, fowl::dilation::MAX_DATA).unwrap();
        }
        wa.write_owned(pattern(3 * fowl::dilation::MAX_DATA + 5, 9))
            .await
            .unwrap();
        wa.shutdown().await.unwrap();
        let chunks = receiver.await.unwrap();
        assert_eq!(chunks.len(), SENDS + 4, "one chunk per record");
        for (i, chunk) in chunks.iter().take(SENDS).enumerate() {
            assert_eq!(chunk, format!("record {i}").as_bytes());
        }
        let big: Vec<u8> = chunks[SENDS..].concat();
        assert_eq!(big, pattern(3 * fowl::dilation::MAX_DATA + 5, 9));
        assert_eq!(chunks[SENDS].len(), fowl::dilation::MAX_DATA);
        assert_eq!(a.close().await, Ok(Mood::Happy));
        assert_eq!(b.close().await, Ok(Mood::Happy));
    })
    .await
    .unwrap();
}
