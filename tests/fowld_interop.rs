//! Our fowld against Python fowld 26.8 (and against itself), through the real Python mailbox
//! server: the reference transcript, 64 MiB each way with sha256, exact byte totals.

mod common;

use std::time::Duration;

use common::dilation::{pattern, sha};
use common::fowld::{echo_server, pair, through, Fowld, Impl};
use common::MailboxServer;
use serde_json::{json, Value};

/// `roost` runs `local`, `fledge` runs `remote` for an echo service; streams of `sizes` bytes go
/// through one after the other and come back intact; lifecycle lines and exact byte totals are
/// checked on both sides.
async fn forward_echo(roost: &mut Fowld, fledge: &mut Fowld, sizes: &[usize]) {
    let echo = echo_server().await;
    roost.send(json!({"kind": "local", "name": "echo"})).await;
    fledge
        .send(json!({"kind": "remote", "name": "echo", "local_connect_port": echo}))
        .await;
    let listening = roost.expect("listening").await;
    assert_eq!(listening["name"], "echo");
    let port = listening["listening_port"].as_u64().unwrap() as u16;
    let awaiting = fledge.expect("awaiting-connect").await;
    assert_eq!(
        awaiting,
        json!({"name": "echo", "local_port": echo, "kind": "awaiting-connect"})
    );

    let mut streams = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let data = pattern(size, i as u64);
        let got = through(port, &data).await;
        assert_eq!(sha(&got), sha(&data));
        let out = roost.expect("outgoing-connection").await;
        assert_eq!(out["service_name"], "echo");
        let inc = fledge.expect("incoming-connection").await;
        assert_eq!(inc["service_name"], "echo");
        for (side, kind, id) in [
            (&mut *roost, "outgoing-done", &out["id"]),
            (&mut *fledge, "incoming-done", &inc["id"]),
        ] {
            let done = side.expect(kind).await;
            assert_eq!(&done["id"], id, "{done}");
        }
        streams.push((size as u64, out["id"].clone(), inc["id"].clone()));
    }
    roost.settle(Duration::from_secs(1)).await;
    fledge.settle(Duration::from_secs(1)).await;
    for (n, out, inc) in streams {
        for (side, id) in [(&*roost, &out), (&*fledge, &inc)] {
            assert_eq!(side.total("bytes-in", id), n, "{:?} bytes-in", side.which);
            assert_eq!(side.total("bytes-out", id), n, "{:?} bytes-out", side.which);
        }
    }
}

async fn close_both(closer: &mut Fowld, other: &mut Fowld) {
    closer
        .send(json!({"kind": "session-close", "timeout": 5}))
        .await;
    let started = std::time::Instant::now();
    assert_eq!(closer.expect("closed").await["result"], "happy");
    assert_eq!(other.expect("closed").await["result"], "happy");
    assert_eq!(closer.wait_exit(Duration::from_secs(3)).await, Some(0));
    assert_eq!(other.wait_exit(Duration::from_secs(3)).await, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

fn no_errors(f: &Fowld) {
    let errors: Vec<&Value> = f.seen.iter().filter(|v| v["kind"] == "error").collect();
    assert!(errors.is_empty(), "{:?} fowld errors: {errors:?}", f.which);
}

async fn session(inviter: Impl, roost_is_inviter: bool, peer: Impl, size: usize) {
    common::init_logging();
    common::require_loopback_only();
    let mailbox = MailboxServer::start();
    tokio::time::timeout(Duration::from_secs(240), async {
        let mut a = Fowld::spawn(inviter, &mailbox.url(), &["--no-relay"]);
        let mut b = Fowld::spawn(peer, &mailbox.url(), &["--no-relay"]);
        pair(&mut a, &mut b).await;
        if roost_is_inviter {
            forward_echo(&mut a, &mut b, &[size, 1000]).await;
        } else {
            forward_echo(&mut b, &mut a, &[size, 1000]).await;
        }
        no_errors(&a);
        no_errors(&b);
        close_both(&mut a, &mut b).await;
    })
    .await
    .unwrap();
}

const BIG: usize = 64 << 20;

#[tokio::test]
async fn rust_invites_and_listens_python_serves() {
    session(Impl::Rust, true, Impl::Python, BIG).await;
}

#[tokio::test]
async fn rust_invites_and_serves_python_listens() {
    session(Impl::Rust, false, Impl::Python, BIG).await;
}

#[tokio::test]
async fn python_invites_and_listens_rust_serves() {
    session(Impl::Python, true, Impl::Rust, BIG).await;
}

#[tokio::test]
async fn python_invites_and_serves_rust_listens() {
    session(Impl::Python, false, Impl::Rust, BIG).await;
}

#[tokio::test]
async fn rust_with_rust() {
    session(Impl::Rust, true, Impl::Rust, BIG).await;
}

#[tokio::test]
async fn two_python_fowlds_through_the_fowl_server_binary() {
    common::require_loopback_only();
    let server = common::FowlServer::spawn(&[]).await;
    tokio::time::timeout(Duration::from_secs(120), async {
        let mut a = Fowld::spawn(Impl::Python, &server.url, &[]);
        let mut b = Fowld::spawn(Impl::Python, &server.url, &[]);
        pair(&mut a, &mut b).await;
        forward_echo(&mut a, &mut b, &[1 << 20]).await;
        close_both(&mut a, &mut b).await;
    })
    .await
    .unwrap();
}
