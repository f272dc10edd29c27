//! Abusers of a public `fowl server`: silent TCP connections, one address hogging connections,
//! relay pairs that counted once. Our servers in-process on free loopback ports, and a
//! `fowl server` process under 10,000 silent connections to each of its servers.

mod common;

use std::time::Duration;

use fowl::server::mailbox::{self, MailboxConfig};
use fowl::server::relay::{self, RelayConfig};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Waits (bounded) until the server closes `s`: true if it did.
async fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// A WebSocket client's first frame type (the welcome), if the server lets it in.
async fn welcome(url: &str) -> Option<String> {
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .ok()?
    .ok()?;
    let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .ok()??
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(frame.to_text().ok()?).ok()?;
    v["type"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn mailbox_silent_connections_and_one_greedy_address_are_shed() {
    let config = MailboxConfig {
        max_per_address: 8,
        handshake_timeout: 1.0,
        ..Default::default()
    };
    let server = mailbox::serve(TcpListener::bind("127.0.0.1:0").await.unwrap(), config).unwrap();
    // 8 silent connections fill this address's share: the 9th is closed at once
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let mut ninth = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        closed_by_server(&mut ninth, Duration::from_millis(500)).await,
        "over the per-address limit: closed at once"
    );
    // the silent ones never upgrade: closed after the handshake timeout
    for s in &mut silent {
        assert!(
            closed_by_server(s, Duration::from_secs(10)).await,
            "silent connection kept"
        );
    }
    // their slots came back: a legitimate client is served
    assert_eq!(welcome(&server.url()).await.as_deref(), Some("welcome"));
}

#[tokio::test]
async fn relay_pairs_count_both_halves_and_addresses_have_a_share() {
    let line = |n: u32, side: &str| format!("please relay {n:064x} for side {side}\n");
    // three connections at most: a spliced pair holds two of them
    let config = RelayConfig {
        max_connections: 3,
        ..Default::default()
    };
    let relay = relay::serve(TcpListener::bind("127.0.0.1:0").await.unwrap(), config).unwrap();
    let mut a = TcpStream::connect(relay.addr).await.unwrap();
    a.write_all(line(1, "aaaaaaaaaaaaaaaa").as_bytes())
        .await
        .unwrap();
    let mut b = TcpStream::connect(relay.addr).await.unwrap();
    b.write_all(line(1, "bbbbbbbbbbbbbbbb").as_bytes())
        .await
        .unwrap();
    let mut ok = [0u8; 3];
    a.read_exact(&mut ok).await.unwrap();
    assert_eq!(&ok, b"ok\n");
    b.read_exact(&mut ok).await.unwrap();
    let mut c = TcpStream::connect(relay.addr).await.unwrap();
    c.write_all(line(2, "cccccccccccccccc").as_bytes())
        .await
        .unwrap();
    // wait until the relay counts c, then a fourth is one too many
    for _ in 0..200 {
        if relay.connections() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        relay.connections(),
        3,
        "the pair counts twice, the waiter once"
    );
    let mut d = TcpStream::connect(relay.addr).await.unwrap();
    assert!(closed_by_server(&mut d, Duration::from_secs(2)).await);
    // the pair still works
    a.write_all(b"through").await.unwrap();
    let mut got = [0u8; 7];
    b.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"through");

    // one address gets its share only
    let config = RelayConfig {
        max_per_address: 2,
        ..Default::default()
    };
    let relay = relay::serve(TcpListener::bind("127.0.0.1:0").await.unwrap(), config).unwrap();
    let _x = TcpStream::connect(relay.addr).await.unwrap();
    let _y = TcpStream::connect(relay.addr).await.unwrap();
    let mut z = TcpStream::connect(relay.addr).await.unwrap();
    assert!(closed_by_server(&mut z, Duration::from_secs(2)).await);
}

/// The connections of `conns` the server has not closed.
fn still_open(conns: Vec<TcpStream>) -> Vec<TcpStream> {
    let mut b = [0u8; 64];
    conns
        .into_iter()
        .filter(|s| match s.try_read(&mut b) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        })
        .collect()
}

/// Opens `n` silent connections from 127.0.0.1 to `port`, 500 at a time, dropping those the
/// server closes; returns those it keeps, once no more than `share` are left (looked at for at
/// most 5 s).
async fn silent_connections(port: u16, n: usize, share: usize) -> Vec<TcpStream> {
    let mut kept: Vec<TcpStream> = Vec::new();
    let mut made = 0;
    while made < n {
        for _ in 0..500.min(n - made) {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)).await {
                kept.push(s);
            }
            made += 1;
        }
        kept = still_open(kept);
    }
    for _ in 0..250 {
        if kept.len() <= share {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        kept = still_open(kept);
    }
    kept
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_silent_connections_to_each_server_process_leave_it_bounded_and_serving() {
    let server = common::FowlServer::spawn(&[]).await;
    let (pid, url) = (server.pid(), server.url.clone());
    let (mailbox_port, relay_port) = (common::port_of(&url), common::port_of(&server.relay));

    tokio::time::timeout(Duration::from_secs(240), async {
        assert_eq!(welcome(&url).await.as_deref(), Some("welcome"));
        let baseline = common::rss_of(pid);
        let kept_mailbox = silent_connections(mailbox_port, 10_000, 64).await;
        let kept_relay = silent_connections(relay_port, 10_000, 128).await;
        let peak = common::rss_of(pid);

        // a client from another address is served at once by each server
        let started = std::time::Instant::now();
        let ws = tokio_tungstenite::client_async(
            url.as_str(),
            common::connect_from([127, 0, 0, 2], mailbox_port)
                .await
                .unwrap(),
        );
        let (mut ws, _) = ws.await.unwrap();
        let first = ws.next().await.unwrap().unwrap();
        assert!(first.to_text().unwrap().contains("welcome"));
        let mailbox_took = started.elapsed();
        let started = std::time::Instant::now();
        let line = |side: &str| format!("please relay {:064x} for side {side}\n", 7);
        let mut a = common::connect_from([127, 0, 0, 3], relay_port)
            .await
            .unwrap();
        a.write_all(line("aaaaaaaaaaaaaaaa").as_bytes())
            .await
            .unwrap();
        let mut b = common::connect_from([127, 0, 0, 4], relay_port)
            .await
            .unwrap();
        b.write_all(line("bbbbbbbbbbbbbbbb").as_bytes())
            .await
            .unwrap();
        let mut ok = [0u8; 3];
        a.read_exact(&mut ok).await.unwrap();
        b.read_exact(&mut ok).await.unwrap();
        assert_eq!(&ok, b"ok\n");
        let relay_took = started.elapsed();

        eprintln!(
            "10,000 silent connections each: {} kept by the mailbox server, {} by the relay; \
             RSS {} -> {} KiB; a new client served in {:.1} ms (mailbox), {:.1} ms (relay pair)",
            kept_mailbox.len(),
            kept_relay.len(),
            baseline >> 10,
            peak >> 10,
            mailbox_took.as_secs_f64() * 1000.0,
            relay_took.as_secs_f64() * 1000.0
        );
        assert!(kept_mailbox.len() <= 64, "{}", kept_mailbox.len());
        assert!(kept_relay.len() <= 128, "{}", kept_relay.len());
        assert!(
            peak.saturating_sub(baseline) <= 16 << 20,
            "the server grew by {} KiB",
            (peak - baseline) >> 10
        );
        assert!(mailbox_took < Duration::from_secs(5));
        assert!(relay_took < Duration::from_secs(5));
    })
    .await
    .unwrap();
    let log = server.stop().await;
    let refusal_lines = log.lines().filter(|l| l.contains("refused")).count();
    assert!(
        (1..=10).contains(&refusal_lines),
        "{refusal_lines} refusal lines in the server's log:\n{log}"
    );
}
