//! Dilation interop with Python magic-wormhole 0.24 (`tests/python/dilation_peer.py`), in both
//! roles, direct and relay-only, against the real Python mailbox server and transit relay.

mod common;

use std::time::Duration;

use common::dilation::{
    close_python_pair, echo_server, pattern, python_pair, send_and_read_echo, sha, FOLLOWER, LEADER,
};
use common::{MailboxServer, TransitRelay};
use fowl::dilation::{DilationConfig, DilationEvent, PathKind, RelayLocation};

async fn interop(rust_side: &str, relay_only: bool, size: usize) {
    common::init_logging();
    common::require_loopback_only();
    let server = MailboxServer::start();
    let relay = TransitRelay::start();
    // "direct" offers only direct paths, "relay-only" only the relay
    let mut args = vec!["--source-bytes".to_string(), size.to_string()];
    if relay_only {
        args.extend(["--relay".to_string(), relay.hint(), "--no-listen".into()]);
    }
    let config = DilationConfig {
        side: Some(rust_side.into()),
        relay: relay_only.then(|| relay.hint().parse::<RelayLocation>().unwrap()),
        no_listen: relay_only,
        ..DilationConfig::default()
    };
    let (mut py, mut d) = python_pair(&server.url(), &args, config).await;
    let echo = echo_server(&d, "py-source");
    let sub = d.open("echo").await.unwrap();
    assert_eq!(sub.id() % 2, if rust_side == LEADER { 1 } else { 0 });
    let data = pattern(size, 1);
    let want = sha(&data);
    let echoed = send_and_read_echo(sub, data, |_| false).await;
    assert_eq!(sha(&echoed.back), want, "our data came back intact");

    let (echo_bytes, echo_sha) = echo.await.unwrap();
    let mut done = Vec::new();
    for _ in 0..2 {
        let v = py.next(Duration::from_secs(120)).await;
        match v["event"].as_str().unwrap() {
            "dilated" => {}
            _ => done.push(v),
        }
    }
    while done.len() < 2 {
        done.push(py.next(Duration::from_secs(120)).await);
    }
    let find = |name: &str| {
        done.iter()
            .find(|v| v["event"] == name)
            .unwrap_or_else(|| panic!("no {name}: {done:?}"))
            .clone()
    };
    let src = find("source-done");
    assert_eq!(src["sent"], size);
    assert_eq!(src["echo_bytes"], size);
    assert_eq!(
        src["echo_sha256"], src["sent_sha256"],
        "python's data came back intact"
    );
    assert_eq!(
        (echo_bytes, echo_sha),
        (size, src["sent_sha256"].as_str().unwrap().to_string()),
        "we received exactly what python sent"
    );
    let ours = find("echo-done");
    assert_eq!(ours["bytes"], size);
    assert_eq!(ours["sha256"], want, "python received exactly what we sent");

    let path = d
        .wait_for(|e| match e {
            DilationEvent::Connected { path, .. } => Some(*path),
            _ => None,
        })
        .await;
    assert_eq!(
        path,
        Some(if relay_only {
            PathKind::Relay
        } else {
            PathKind::Direct
        })
    );
    close_python_pair(py, d).await;
}

const SIZE: usize = 64 << 20;

#[tokio::test]
async fn rust_leader_direct() {
    tokio::time::timeout(Duration::from_secs(240), interop(LEADER, false, SIZE))
        .await
        .unwrap();
}

#[tokio::test]
async fn rust_follower_direct() {
    tokio::time::timeout(Duration::from_secs(240), interop(FOLLOWER, false, SIZE))
        .await
        .unwrap();
}

#[tokio::test]
async fn rust_leader_relay_only() {
    tokio::time::timeout(Duration::from_secs(240), interop(LEADER, true, SIZE))
        .await
        .unwrap();
}

#[tokio::test]
async fn rust_follower_relay_only() {
    tokio::time::timeout(Duration::from_secs(240), interop(FOLLOWER, true, SIZE))
        .await
        .unwrap();
}

/// With both a direct path and a relay offered, ten sessions in a row select the direct one.
async fn direct_preferred_ten_of_ten(rust_side: &str) {
    common::init_logging();
    common::require_loopback_only();
    let server = MailboxServer::start();
    let relay = TransitRelay::start();
    tokio::time::timeout(Duration::from_secs(240), async {
        for _ in 0..10 {
            let args = vec!["--relay".to_string(), relay.hint()];
            let config = DilationConfig {
                relay: Some(relay.hint().parse().unwrap()),
                ..common::dilation::config(rust_side)
            };
            let (py, mut d) = python_pair(&server.url(), &args, config).await;
            assert_eq!(common::dilation::connected(&mut d).await, PathKind::Direct);
            close_python_pair(py, d).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn rust_leader_prefers_direct_over_relay_with_python_ten_of_ten() {
    direct_preferred_ten_of_ten(LEADER).await;
}

/// A Python Leader takes the first Follower KCM: our Follower holds it back on relay connections.
#[tokio::test]
async fn python_leader_gets_direct_over_relay_from_a_rust_follower_ten_of_ten() {
    direct_preferred_ten_of_ten(FOLLOWER).await;
}
