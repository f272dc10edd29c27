//! Hostile L2 input reaching a running Dilation: a client that knows the relay token pairs (at
//! our transit relay, past the proxy that keeps the real Follower out) with our Leader's relay
//! connection and sends a bad prologue, an oversized frame, a bad Noise message, and (with the
//! real key) an unknown record tag. Each such connection is dropped; the process survives and the
//! session then connects to the real peer and carries data.

mod common;

use std::time::Duration;

use common::dilation::{
    echo_server, pattern, relay_only, send_and_read_echo, APPID, FOLLOWER, LEADER,
};
use common::{CutProxy, RustServers};
use fowl::dilation::l2::{relay_line, L2Connection, L2Event, Role, PROLOGUE_FOLLOWER};
use fowl::key;
use fowl::wormhole::{Mood, Wormhole, WormholeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects to the relay as the Leader's partner; returns the stream once paired.
async fn paired(relay_port: u16, token: &key::Key) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", relay_port)).await.unwrap();
    s.write_all(&relay_line(token, "1111111111111111"))
        .await
        .unwrap();
    let mut ok = [0u8; 3];
    s.read_exact(&mut ok).await.unwrap();
    assert_eq!(&ok, b"ok\n");
    s
}

/// Reads until the Leader drops the connection.
async fn dropped(mut s: TcpStream) {
    let mut buf = vec![0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the hostile connection was not dropped");
}

#[tokio::test]
async fn hostile_connections_are_dropped_and_the_session_survives() {
    common::init_logging();
    common::require_loopback_only();
    let servers = RustServers::start();
    let relay_port = servers.relay.port;
    let proxy = CutProxy::start(relay_port).await;
    proxy.refuse_side(Some(FOLLOWER)); // the real follower cannot connect yet
    tokio::time::timeout(Duration::from_secs(120), async {
        let wc = WormholeConfig::new(APPID, &servers.url());
        let mut wa = Wormhole::connect(wc.clone()).await.unwrap();
        wa.allocate_code(2);
        let code = wa.allocated_code().await.unwrap();
        let mut wb = Wormhole::connect(wc).await.unwrap();
        wb.set_code(&code).await.unwrap();
        wa.verifier().await.unwrap();
        wb.verifier().await.unwrap();
        let psk = wa.dilation_key().unwrap();
        let token = key::relay_token(&psk);
        let a = wa.dilate(relay_only(LEADER, &proxy.hint()));
        let b = wb.dilate(relay_only(FOLLOWER, &proxy.hint()));
        let _echo = echo_server(&b, "echo");

        // 1. not a Dilation prologue
        let mut s = paired(relay_port, &token).await;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        dropped(s).await;
        // 2. a frame length far over the limit
        let mut s = paired(relay_port, &token).await;
        s.write_all(PROLOGUE_FOLLOWER).await.unwrap();
        s.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
        dropped(s).await;
        // 3. a Noise handshake message that is garbage
        let mut s = paired(relay_port, &token).await;
        s.write_all(PROLOGUE_FOLLOWER).await.unwrap();
        let mut frame = 48u32.to_be_bytes().to_vec();
        frame.extend_from_slice(&[0x5a; 48]);
        s.write_all(&frame).await.unwrap();
        dropped(s).await;
        // 4. a correct handshake with the real key, then an unknown record tag
        let mut s = paired(relay_port, &token).await;
        let mut l2 = L2Connection::new(Role::Follower, &psk, None);
        let mut buf = vec![0u8; 4096];
        loop {
            let out = l2.take_output();
            s.write_all(&out).await.unwrap();
            if std::iter::from_fn(|| l2.poll_event()).any(|e| e == L2Event::Ready) {
                break;
            }
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "the leader closed during the handshake");
            l2.receive(&buf[..n])
                .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&buf[..n])));
        }
        l2.send_encoded(&[0x09, 1, 2, 3]);
        s.write_all(&l2.take_output()).await.unwrap();
        dropped(s).await;

        // the real follower may connect now: the session works
        proxy.refuse_side(None);
        let sub = a.open("echo").await.unwrap();
        let data = pattern(1 << 20, 2);
        let echoed = send_and_read_echo(sub, data.clone(), |_| false).await;
        assert!(echoed.back == data);
        assert_eq!(a.close().await, Ok(Mood::Happy));
        assert_eq!(b.close().await, Ok(Mood::Happy));
    })
    .await
    .unwrap();
}
