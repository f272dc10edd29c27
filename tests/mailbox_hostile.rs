//! A hostile mailbox server: junk frames, unknown types, missing fields and a huge frame never
//! crash the client; a server `error` becomes a typed error.

mod common;

use std::time::Duration;

use fowl::wormhole::{Wormhole, WormholeConfig, WormholeError};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

async fn next_type(ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> String {
    loop {
        match ws
            .next()
            .await
            .expect("client frame")
            .expect("client frame")
        {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                return v["type"].as_str().unwrap().to_string();
            }
            _ => continue,
        }
    }
}

#[tokio::test]
async fn hostile_frames_are_ignored_and_errors_are_typed() {
    common::init_logging();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        // first connection: junk, then a frame over the size limit
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        ws.send(Message::text(
            r#"{"type": "welcome", "welcome": {"motd": 5, "future": {}}}"#,
        ))
        .await
        .unwrap();
        assert_eq!(next_type(&mut ws).await, "bind");
        assert_eq!(next_type(&mut ws).await, "allocate");
        let junk = [
            "not json",
            "[]",
            "null",
            r#"{"type": 5}"#,
            r#"{"no": "type"}"#,
            r#"{"type": "brand-new"}"#,
            r#"{"type": "message"}"#,
            r#"{"type": "message", "side": "x", "phase": "0", "body": "zz"}"#,
            r#"{"type": "allocated"}"#,
            r#"{"type": "claimed", "mailbox": 7}"#,
            r#"{"type": "error"}"#,
            r#"{"type": "nameplates", "nameplates": "all"}"#,
        ];
        for j in junk {
            ws.send(Message::text(j)).await.unwrap();
        }
        ws.send(Message::binary(vec![0u8; 100])).await.unwrap();
        let huge = format!(
            r#"{{"type": "welcome", "welcome": {{"motd": "{}"}}}}"#,
            "x".repeat(2 << 20)
        );
        let _ = ws.send(Message::text(huge)).await;
        // the client drops this connection and reconnects, replaying bind and allocate
        let (tcp, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .unwrap()
            .unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        assert_eq!(next_type(&mut ws).await, "bind");
        assert_eq!(next_type(&mut ws).await, "allocate");
        ws.send(Message::text(
            r#"{"type": "error", "error": "crowded", "orig": {"type": "allocate"}}"#,
        ))
        .await
        .unwrap();
        // keep the socket open until the client is done
        while let Some(Ok(_)) = ws.next().await {}
    });

    let mut cfg = WormholeConfig::new("appid", &url);
    cfg.close_timeout = Duration::from_secs(2);
    let mut w = Wormhole::connect(cfg).await.unwrap();
    w.allocate_code(2);
    let err = tokio::time::timeout(Duration::from_secs(20), w.allocated_code())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err, WormholeError::Server("crowded".into()));
    assert_eq!(
        w.close().await,
        Err(WormholeError::Server("crowded".into()))
    );
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
}
