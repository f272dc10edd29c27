//! Our transit relay, in-process on a free loopback port: the handshake replies, waiting limits and
//! timeouts with raw TCP clients, and relay-only Dilation sessions of real Python magic-wormhole
//! 0.24 peers (with each other and with ours) through our mailbox server and relay.

mod common;

use std::time::Duration;

use common::dilation::{pattern, sha};
use fowl::server::mailbox::{self, MailboxConfig, MailboxServerHandle};
use fowl::server::relay::{serve, RelayConfig, RelayServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn relay(config: RelayConfig) -> RelayServerHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve(listener, config).unwrap()
}

async fn mailbox() -> MailboxServerHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    mailbox::serve(listener, MailboxConfig::default()).unwrap()
}

fn token(n: usize) -> String {
    format!("{n:064x}")
}

/// Connects and sends `line` (a newline is added).
async fn client(relay: &RelayServerHandle, line: &str) -> TcpStream {
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    s.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    s
}

/// Everything the relay sends until it closes the connection.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the relay closes the connection")
        .unwrap();
    got
}

async fn read_ok(s: &mut TcpStream) {
    let mut ok = [0u8; 3];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut ok))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&ok, b"ok\n");
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn bad_handshakes_and_impatient_clients_are_answered_and_dropped() {
    let relay = relay(RelayConfig::default()).await;
    let mut bad = client(&relay, "please relay abc").await;
    assert_eq!(read_to_close(&mut bad).await, b"bad handshake\n");
    let mut long = TcpStream::connect(relay.addr).await.unwrap();
    long.write_all(&[b'x'; 2000]).await.unwrap();
    assert_eq!(read_to_close(&mut long).await, b"bad handshake\n");

    // data in the same packet as the handshake, and data while waiting: both impatient
    let line = format!("please relay {} for side {}\n", token(1), "a".repeat(16));
    let mut eager = TcpStream::connect(relay.addr).await.unwrap();
    eager
        .write_all(format!("{line}hello").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_to_close(&mut eager).await, b"impatient\n");
    let mut waiting = client(&relay, line.trim_end()).await;
    eventually("the client waits", || relay.waiting() == 1).await;
    waiting.write_all(b"early").await.unwrap();
    assert_eq!(read_to_close(&mut waiting).await, b"impatient\n");
    eventually("the impatient client is gone", || relay.waiting() == 0).await;
}

#[tokio::test]
async fn pairs_by_token_and_side_and_splices_intact_both_ways() {
    let relay = relay(RelayConfig::default()).await;
    let t = token(7);
    let mut same = client(
        &relay,
        &format!("please relay {t} for side {}", "a".repeat(16)),
    )
    .await;
    let mut a = client(
        &relay,
        &format!("please relay {t} for side {}", "a".repeat(16)),
    )
    .await;
    eventually("two same-side clients wait", || relay.waiting() == 2).await;
    // a legacy (unsided) client pairs with the first waiter; the other waiter is redundant
    let mut b = client(&relay, &format!("please relay {t}")).await;
    read_ok(&mut same).await;
    read_ok(&mut b).await;
    assert_eq!(
        read_to_close(&mut a).await,
        b"",
        "the redundant waiter is closed"
    );

    let (up, down) = (pattern(8 << 20, 1), pattern(8 << 20, 2));
    let (mut sr, mut sw) = same.into_split();
    let (mut br, mut bw) = b.into_split();
    let (up2, down2) = (up.clone(), down.clone());
    // the writers keep their halves: dropping one shuts it down, and the relay then closes both
    let w1 = tokio::spawn(async move {
        sw.write_all(&up2).await.unwrap();
        sw
    });
    let w2 = tokio::spawn(async move {
        bw.write_all(&down2).await.unwrap();
        bw
    });
    let mut got_down = vec![0u8; down.len()];
    let mut got_up = vec![0u8; up.len()];
    let (r1, r2) = tokio::join!(sr.read_exact(&mut got_down), br.read_exact(&mut got_up));
    r1.unwrap();
    r2.unwrap();
    assert_eq!(sha(&got_up), sha(&up));
    assert_eq!(sha(&got_down), sha(&down));
    let _sw = w1.await.unwrap();
    // one end closing closes the other (no half-close through the relay)
    drop(w2.await.unwrap());
    drop(br);
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), sr.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());
    eventually("both ends are released", || relay.connections() == 0).await;
}

#[tokio::test]
async fn a_thousand_waiting_connections_are_held_then_time_out() {
    let relay = relay(RelayConfig {
        waiting_timeout: Duration::from_secs(3),
        max_waiting: 1500,
        // every client here comes from 127.0.0.1
        max_per_address: 2000,
        ..Default::default()
    })
    .await;
    let mut waiting = Vec::new();
    for n in 0..1000 {
        waiting.push(client(&relay, &format!("please relay {}", token(n))).await);
    }
    eventually("1000 connections wait", || relay.waiting() == 1000).await;
    // the relay still pairs new clients meanwhile
    let t = token(5000);
    let mut a = client(
        &relay,
        &format!("please relay {t} for side {}", "a".repeat(16)),
    )
    .await;
    let mut b = client(
        &relay,
        &format!("please relay {t} for side {}", "b".repeat(16)),
    )
    .await;
    read_ok(&mut a).await;
    read_ok(&mut b).await;
    a.write_all(b"ping").await.unwrap();
    let mut four = [0u8; 4];
    b.read_exact(&mut four).await.unwrap();
    assert_eq!(&four, b"ping");
    // every waiter is closed once its time is up, without a reply
    for s in waiting.iter_mut() {
        assert_eq!(read_to_close(s).await, b"");
    }
    assert_eq!(relay.waiting(), 0);
}

#[tokio::test]
async fn the_waiting_limit_answers_crowded() {
    let relay = relay(RelayConfig {
        max_waiting: 2,
        ..Default::default()
    })
    .await;
    let _one = client(&relay, &format!("please relay {}", token(1))).await;
    let _two = client(&relay, &format!("please relay {}", token(2))).await;
    eventually("two wait", || relay.waiting() == 2).await;
    let mut three = client(&relay, &format!("please relay {}", token(3))).await;
    assert_eq!(read_to_close(&mut three).await, b"crowded\n");
}

#[tokio::test]
async fn python_dilation_relay_only_through_our_servers() {
    common::init_logging();
    common::require_loopback_only();
    let (mb, relay) = (mailbox().await, relay(RelayConfig::default()).await);
    tokio::time::timeout(Duration::from_secs(90), async {
        // Python with Python
        let relay_args = |extra: &[&str]| {
            let mut v = vec![
                "--url".to_string(),
                mb.url(),
                "--relay".into(),
                relay.hint(),
                "--no-listen".into(),
            ];
            v.extend(extra.iter().map(|s| s.to_string()));
            v
        };
        let mut a = common::PyPeer::spawn(
            "dilation_peer.py",
            &relay_args(&["--source-bytes", "4194304", "--source-name", "echo"]),
        );
        let code = a.expect("code").await["code"].as_str().unwrap().to_string();
        let mut b = common::PyPeer::spawn("dilation_peer.py", &relay_args(&["--code", &code]));
        let (done, _) = a.until("source-done", Duration::from_secs(60)).await;
        assert_eq!(done["echo_bytes"], 4194304);
        assert_eq!(done["sent_sha256"], done["echo_sha256"]);
        for p in [&mut a, &mut b] {
            p.send_line("close").await;
            assert_eq!(
                p.until("closed", Duration::from_secs(30)).await.0["result"],
                "happy"
            );
        }

        // Python with Rust
        let args = vec!["--source-bytes".to_string(), (4 << 20).to_string()];
        let mut args = args;
        args.extend(["--relay".to_string(), relay.hint(), "--no-listen".into()]);
        let (mut py, d) = common::dilation::python_pair(
            &mb.url(),
            &args,
            common::dilation::relay_only(common::dilation::FOLLOWER, &relay.hint()),
        )
        .await;
        let (bytes, sha) = common::dilation::echo_server(&d, "py-source")
            .await
            .unwrap();
        let (done, _) = py.until("source-done", Duration::from_secs(30)).await;
        assert_eq!(bytes, 4 << 20);
        assert_eq!(done["echo_sha256"], sha);
        common::dilation::close_python_pair(py, d).await;
    })
    .await
    .unwrap();
}
