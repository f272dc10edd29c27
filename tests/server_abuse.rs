//! Abusers of a public `fowl server`: silent TCP connections, one address hogging connections,
//! relay pairs that counted once. Our servers in-process on free loopback ports.

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
