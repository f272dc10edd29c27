//! The real-component fixtures themselves: the Python transit relay pairs two sided handshakes
//! and splices bytes; the mailbox server lists allocated nameplates.

mod common;

use std::time::Duration;

use fowl::key;
use fowl::wormhole::{Wormhole, WormholeConfig, WormholeEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn relay_client(port: u16, token: &key::Key, side: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let line = format!("please relay {} for side {side}\n", hex::encode(token));
    s.write_all(line.as_bytes()).await.unwrap();
    s
}

#[tokio::test]
async fn transit_relay_pairs_sided_handshakes_and_splices_bytes() {
    let relay = common::TransitRelay::start();
    assert_eq!(relay.hint(), format!("tcp:127.0.0.1:{}", relay.0.port));
    let token = key::relay_token(&key::dilation_key(&[7u8; 32]));
    tokio::time::timeout(Duration::from_secs(30), async {
        let mut a = relay_client(relay.0.port, &token, "0123456789abcdef").await;
        let mut b = relay_client(relay.0.port, &token, "fedcba9876543210").await;
        for s in [&mut a, &mut b] {
            let mut ok = [0u8; 3];
            s.read_exact(&mut ok).await.unwrap();
            assert_eq!(&ok, b"ok\n");
        }
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        a.write_all(&payload).await.unwrap();
        let mut got = vec![0u8; payload.len()];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(got, payload);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn mailbox_lists_allocated_nameplates() {
    let server = common::MailboxServer::start();
    let config = WormholeConfig::new("lothar.com/rust-fowl-test", &server.url());
    tokio::time::timeout(Duration::from_secs(30), async {
        let mut a = Wormhole::connect(config.clone()).await.unwrap();
        a.allocate_code(2);
        let code = a.allocated_code().await.unwrap();
        let nameplate = code.split('-').next().unwrap().to_string();
        let mut b = Wormhole::connect(config).await.unwrap();
        b.list_nameplates();
        let listed = b
            .wait_for(|e| match e {
                WormholeEvent::Nameplates(n) => Some(n.clone()),
                _ => None,
            })
            .await
            .unwrap();
        assert_eq!(listed, vec![nameplate.clone()]);
        let completions = fowl::code::Completer::new(2).complete(&nameplate, &listed);
        assert_eq!(completions, vec![format!("{nameplate}-")]);
        a.close().await.unwrap();
        b.close().await.unwrap();
    })
    .await
    .unwrap();
}
