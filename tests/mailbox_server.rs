//! Our mailbox server, in-process on a free loopback port, with real Python magic-wormhole 0.24
//! clients on both ends, mixed with ours, including a Dilation session.

mod common;

use std::time::Duration;

use common::PyPeer;
use fowl::server::mailbox::{serve, MailboxConfig, MailboxServerHandle};
use fowl::wormhole::{Mood, Wormhole, WormholeConfig, WormholeError};
use serde_json::json;

async fn server(config: MailboxConfig) -> MailboxServerHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve(listener, config).unwrap()
}

/// A Rust wormhole on `url` with an allocated code.
async fn allocating(url: &str) -> (Wormhole, String) {
    let mut w = Wormhole::connect(WormholeConfig::new("lothar.com/rust-fowl-test", url))
        .await
        .unwrap();
    w.allocate_code(2);
    let code = w.allocated_code().await.unwrap();
    (w, code)
}

fn py(url: &str, extra: &[&str]) -> PyPeer {
    PyPeer::wormhole(url, extra)
}

#[tokio::test]
async fn python_to_python_through_our_mailbox() {
    let server = server(MailboxConfig::default()).await;
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut a = py(&server.url(), &["--send", "3", "--expect", "3"]);
        let code = a.expect("code").await["code"].as_str().unwrap().to_string();
        let mut b = py(
            &server.url(),
            &["--code", &code, "--send", "3", "--expect", "3"],
        );
        let (va, vb) = (a.expect("verifier").await, b.expect("verifier").await);
        assert_eq!(va["verifier"], vb["verifier"]);
        for p in [&mut a, &mut b] {
            p.expect("versions").await;
            for i in 0..3 {
                assert_eq!(p.expect("message").await["text"], format!("py-{i}"));
            }
            assert_eq!(p.expect("closed").await["result"], "happy");
            assert_eq!(p.wait(Duration::from_secs(10)).await, Some(0));
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn rust_and_python_through_our_mailbox_and_a_wrong_code() {
    let server = server(MailboxConfig {
        motd: Some("hello from fowl".into()),
        ..Default::default()
    })
    .await;
    tokio::time::timeout(Duration::from_secs(60), async {
        let (mut w, code) = allocating(&server.url()).await;
        let mut p = py(
            &server.url(),
            &["--code", &code, "--send", "2", "--expect", "1"],
        );
        assert_eq!(
            p.expect("verifier").await["verifier"],
            hex::encode(w.verifier().await.unwrap())
        );
        assert_eq!(
            w.peer_versions().await.unwrap(),
            json!({"python-peer": {"n": 1}})
        );
        w.send_message(b"from rust".to_vec());
        assert_eq!(w.recv_message().await.unwrap(), b"py-0");
        assert_eq!(w.recv_message().await.unwrap(), b"py-1");
        p.expect("versions").await;
        assert_eq!(p.expect("message").await["text"], "from rust");
        assert_eq!(p.expect("closed").await["result"], "happy");
        assert_eq!(w.close().await, Ok(Mood::Happy));

        // wrong code on the same server: both sides scary
        let (mut w, code) = allocating(&server.url()).await;
        let wrong = format!("{}-aardvark-adroitness", code.split('-').next().unwrap());
        let mut p = py(&server.url(), &["--code", &wrong]);
        assert_eq!(w.verifier().await, Err(WormholeError::WrongCode));
        assert_eq!(p.expect("error").await["kind"], "WrongPasswordError");
        let _ = w.close().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn python_dilation_with_rust_through_our_mailbox() {
    common::init_logging();
    common::require_loopback_only();
    let server = server(MailboxConfig::default()).await;
    tokio::time::timeout(Duration::from_secs(60), async {
        let args = vec!["--source-bytes".to_string(), (1 << 20).to_string()];
        let (mut py, d) = common::dilation::python_pair(
            &server.url(),
            &args,
            common::dilation::config(common::dilation::LEADER),
        )
        .await;
        let echo = common::dilation::echo_server(&d, "py-source");
        let (bytes, sha) = echo.await.unwrap();
        let (done, _) = py.until("source-done", Duration::from_secs(30)).await;
        assert_eq!(bytes, 1 << 20);
        assert_eq!(done["sent_sha256"], sha);
        assert_eq!(done["echo_sha256"], sha);
        common::dilation::close_python_pair(py, d).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn fowl_server_binary_serves_a_relay_only_dilation() {
    common::require_loopback_only();
    let server = common::FowlServer::spawn(&["--motd", "binary"]).await;
    let (url, relay) = (server.url.clone(), server.relay.clone());
    tokio::time::timeout(Duration::from_secs(30), async {
        use common::dilation::{connected, exchange, pattern, relay_only, rust_pair, sha};
        let (mut a, mut b) = rust_pair(
            &url,
            relay_only(common::dilation::LEADER, &relay),
            relay_only(common::dilation::FOLLOWER, &relay),
        )
        .await;
        assert_eq!(connected(&mut a).await, fowl::dilation::PathKind::Relay);
        connected(&mut b).await;
        let mut listener = b.listen("sink");
        let sub = a.open("sink").await.unwrap();
        let data = pattern(1 << 20, 3);
        let sent = tokio::spawn(exchange(sub, data.clone(), 0));
        let got = exchange(listener.accept().await.unwrap(), Vec::new(), data.len()).await;
        sent.await.unwrap();
        assert_eq!(sha(&got), sha(&data));
        assert_eq!(a.close().await, Ok(Mood::Happy));
        assert_eq!(b.close().await, Ok(Mood::Happy));
    })
    .await
    .unwrap();
}
