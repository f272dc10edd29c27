//! The wormhole client core against the real Python mailbox server and Python magic-wormhole 0.24.

mod common;

use std::time::Duration;

use common::{MailboxServer, PyPeer};
use fowl::wormhole::{Mood, Wormhole, WormholeConfig, WormholeError, WormholeEvent};
use serde_json::json;

const APPID: &str = "lothar.com/rust-fowl-test";
const LIMIT: Duration = Duration::from_secs(60);

fn config(url: &str) -> WormholeConfig {
    let mut c = WormholeConfig::new(APPID, url);
    c.app_versions = json!({"rust-peer": {"features": ["x"]}});
    c
}

fn py_args(url: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["--url".to_string(), url.to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Checks verifier, versions and three messages each way, then a happy close on both sides.
async fn exchange_with_python(mut w: Wormhole, py: &mut PyPeer) {
    let verifier = w.verifier().await.unwrap();
    assert_eq!(
        py.expect("verifier").await["verifier"],
        hex::encode(verifier)
    );
    assert_eq!(
        w.peer_versions().await.unwrap(),
        json!({"python-peer": {"n": 1}})
    );
    assert_eq!(
        py.expect("versions").await["versions"],
        json!({"rust-peer": {"features": ["x"]}})
    );
    for i in 0..3 {
        w.send_message(format!("rust-{i}").into_bytes());
    }
    for i in 0..3 {
        assert_eq!(
            w.recv_message().await.unwrap(),
            format!("py-{i}").into_bytes()
        );
    }
    for i in 0..3 {
        assert_eq!(py.expect("message").await["text"], format!("rust-{i}"));
    }
    assert_eq!(py.expect("closed").await["result"], "happy");
    assert_eq!(w.close().await, Ok(Mood::Happy));
    assert_eq!(py.wait(Duration::from_secs(10)).await, Some(0));
}

#[tokio::test]
async fn python_allocates_rust_sets_code() {
    let server = MailboxServer::start();
    tokio::time::timeout(LIMIT, async {
        let mut py = PyPeer::spawn(
            "wormhole_peer.py",
            &py_args(&server.url(), &["--send", "3", "--expect", "3"]),
        );
        let code = py.expect("code").await["code"]
            .as_str()
            .unwrap()
            .to_string();
        let w = Wormhole::connect(config(&server.url())).await.unwrap();
        w.set_code(&code).await.unwrap();
        exchange_with_python(w, &mut py).await;
    })
    .await
    .unwrap();
    assert_eq!(server.mailbox_results(), ["happy"]);
}

#[tokio::test]
async fn rust_allocates_python_sets_code() {
    let server = MailboxServer::start();
    tokio::time::timeout(LIMIT, async {
        let mut w = Wormhole::connect(config(&server.url())).await.unwrap();
        w.allocate_code(3);
        let code = w.allocated_code().await.unwrap();
        assert_eq!(code.split('-').count(), 4, "{code}");
        let mut py = PyPeer::spawn(
            "wormhole_peer.py",
            &py_args(
                &server.url(),
                &["--code", &code, "--send", "3", "--expect", "3"],
            ),
        );
        exchange_with_python(w, &mut py).await;
    })
    .await
    .unwrap();
    assert_eq!(server.mailbox_results(), ["happy"]);
}

#[tokio::test]
async fn rust_to_rust_through_the_python_mailbox() {
    let server = MailboxServer::start();
    tokio::time::timeout(LIMIT, async {
        let mut a = Wormhole::connect(config(&server.url())).await.unwrap();
        a.allocate_code(2);
        let code = a.allocated_code().await.unwrap();
        let mut b = Wormhole::connect(config(&server.url())).await.unwrap();
        b.set_code(&code).await.unwrap();
        assert_eq!(a.verifier().await.unwrap(), b.verifier().await.unwrap());
        for i in 0..3 {
            a.send_message(format!("a{i}").into_bytes());
            b.send_message(format!("b{i}").into_bytes());
        }
        for i in 0..3 {
            assert_eq!(
                a.recv_message().await.unwrap(),
                format!("b{i}").into_bytes()
            );
            assert_eq!(
                b.recv_message().await.unwrap(),
                format!("a{i}").into_bytes()
            );
        }
        assert_eq!(a.close().await, Ok(Mood::Happy));
        assert_eq!(b.close().await, Ok(Mood::Happy));
    })
    .await
    .unwrap();
    assert_eq!(server.mailbox_results(), ["happy"]);
}

fn wrong_words(code: &str) -> String {
    let nameplate = code.split('-').next().unwrap();
    let wrong = format!("{nameplate}-aardvark-adroitness");
    assert_ne!(wrong, code);
    wrong
}

#[tokio::test]
async fn wrong_code_python_allocates() {
    let server = MailboxServer::start();
    tokio::time::timeout(LIMIT, async {
        let mut py = PyPeer::spawn("wormhole_peer.py", &py_args(&server.url(), &[]));
        let code = py.expect("code").await["code"]
            .as_str()
            .unwrap()
            .to_string();
        let mut w = Wormhole::connect(config(&server.url())).await.unwrap();
        w.set_code(&wrong_words(&code)).await.unwrap();
        let err = w.verifier().await.unwrap_err();
        assert_eq!(err, WormholeError::WrongCode);
        assert_eq!(err.mood(), Mood::Scary);
        assert_eq!(w.close().await, Err(WormholeError::WrongCode));
        assert_eq!(py.expect("error").await["kind"], "WrongPasswordError");
        assert_eq!(py.wait(Duration::from_secs(10)).await, Some(3));
    })
    .await
    .unwrap();
    assert_eq!(server.mailbox_results(), ["scary"]);
}

#[tokio::test]
async fn wrong_code_rust_allocates() {
    let server = MailboxServer::start();
    tokio::time::timeout(LIMIT, async {
        let mut w = Wormhole::connect(config(&server.url())).await.unwrap();
        w.allocate_code(2);
        let code = w.allocated_code().await.unwrap();
        let mut py = PyPeer::spawn(
            "wormhole_peer.py",
            &py_args(&server.url(), &["--code", &wrong_words(&code)]),
        );
        assert_eq!(w.verifier().await, Err(WormholeError::WrongCode));
        assert_eq!(py.expect("error").await["kind"], "WrongPasswordError");
        assert_eq!(w.close().await, Err(WormholeError::WrongCode));
        assert_eq!(py.wait(Duration::from_secs(10)).await, Some(3));
    })
    .await
    .unwrap();
    assert_eq!(server.mailbox_results(), ["scary"]);
}

#[tokio::test]
async fn mailbox_server_restart_mid_session_loses_and_duplicates_nothing() {
    let mut server = MailboxServer::start();
    tokio::time::timeout(Duration::from_secs(120), async {
        let mut w = Wormhole::connect(config(&server.url())).await.unwrap();
        w.allocate_code(2);
        let code = w.allocated_code().await.unwrap();
        let mut py = PyPeer::spawn(
            "wormhole_peer.py",
            &py_args(&server.url(), &["--code", &code, "--echo", "--expect", "4"]),
        );
        w.verifier().await.unwrap();
        py.expect("verifier").await;
        py.expect("versions").await;
        w.send_message(b"m0".to_vec());
        assert_eq!(w.recv_message().await.unwrap(), b"echo:m0");

        server.0.kill();
        // written while the server is down: kept and sent after the reconnect
        w.send_message(b"m1".to_vec());
        w.send_message(b"m2".to_vec());
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.0.restart();

        assert_eq!(w.recv_message().await.unwrap(), b"echo:m1");
        assert_eq!(w.recv_message().await.unwrap(), b"echo:m2");
        w.send_message(b"bye".to_vec());
        assert_eq!(w.recv_message().await.unwrap(), b"echo:bye");
        for text in ["m0", "m1", "m2", "bye"] {
            assert_eq!(py.expect("message").await["text"], text);
        }
        assert_eq!(py.expect("closed").await["result"], "happy");
        assert_eq!(py.wait(Duration::from_secs(10)).await, Some(0));
        // nothing duplicated: no further message arrives before our own close completes
        let mut saw_reconnect = false;
        let mut extra = Vec::new();
        w.ping(1);
        let close = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(e) = w.next_event().await {
                match e {
                    WormholeEvent::Message(m) => extra.push(m),
                    WormholeEvent::MailboxConnected => saw_reconnect = true,
                    WormholeEvent::Pong(1) => break,
                    _ => {}
                }
            }
        })
        .await;
        assert!(close.is_ok(), "no pong from the restarted server");
        assert!(saw_reconnect, "the client reported its reconnection");
        assert!(extra.is_empty(), "duplicated messages: {extra:?}");
        assert_eq!(w.close().await, Ok(Mood::Happy));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn unreachable_mailbox_is_a_clear_error_in_bounded_time() {
    // nothing listens on this port
    let refusing = common::RefusingPort::reserve();
    let url = format!("ws://127.0.0.1:{}/v1", refusing.port);
    let started = std::time::Instant::now();
    let err = Wormhole::connect(config(&url))
        .await
        .err()
        .expect("must fail");
    assert!(
        matches!(err, WormholeError::ServerConnection { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&url), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // something accepts TCP but never answers the WebSocket handshake
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1", silent.local_addr().unwrap());
    let mut cfg = config(&url);
    cfg.connect_timeout = Duration::from_secs(1);
    let started = std::time::Instant::now();
    let err = Wormhole::connect(cfg).await.err().expect("must fail");
    assert!(err.to_string().contains(&url), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn welcome_motd_and_signal_error_from_the_real_server() {
    let server = MailboxServer::start_with(&["--motd=maintenance at noon"]);
    let mut w = Wormhole::connect(config(&server.url())).await.unwrap();
    let motd = tokio::time::timeout(
        LIMIT,
        w.wait_for(|e| match e {
            WormholeEvent::Welcome { motd, .. } => Some(motd.clone()),
            _ => None,
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(motd.as_deref(), Some("maintenance at noon"));
    assert_eq!(w.close().await, Ok(Mood::Lonely));

    let server = MailboxServer::start_with(&["--signal-error=this server is closed"]);
    let w = Wormhole::connect(config(&server.url())).await.unwrap();
    let err = tokio::time::timeout(LIMIT, w.close())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, WormholeError::Unwelcome { message, .. } if message == "this server is closed"),
        "{err:?}"
    );
    assert_eq!(err.mood(), Mood::Unwelcome);
}
