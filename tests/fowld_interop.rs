//! Our fowld against Python fowld 26.8 through the real Python mailbox server (and against itself
//! through ours): the reference transcript, 64 MiB each way with sha256, exact byte totals.

mod common;

use std::time::Duration;

use common::dilation::{pattern, sha};
use common::fowld::{echo_server, pair, through, Fowld, Impl};
use common::{MailboxServer, RustServers};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// `roost` runs `local`, `fledge` runs `remote` for an echo service; streams of `sizes` bytes go
/// through one after the other and come back intact; lifecycle lines and exact byte totals are
/// checked on both sides.
async fn forward_echo(roost: &mut Fowld, fledge: &mut Fowld, sizes: &[usize]) {
    let echo = echo_server().await;
    roost
        .send_local(json!({"kind": "local", "name": "echo"}))
        .await;
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
    // the Python mailbox server where a Python fowld takes part, ours between two of ours
    let (python, ours) = if inviter == Impl::Rust && peer == Impl::Rust {
        (None, Some(RustServers::start()))
    } else {
        (Some(MailboxServer::start()), None)
    };
    let url = python
        .as_ref()
        .map_or_else(|| ours.as_ref().unwrap().url(), MailboxServer::url);
    tokio::time::timeout(Duration::from_secs(240), async {
        let mut a = Fowld::spawn(inviter, &url, &["--no-relay"]);
        let mut b = Fowld::spawn(peer, &url, &["--no-relay"]);
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

/// Python fowl's own scenarios (its integration tests and error table), our fowld on one side and
/// Python's on the other: `roost` runs `local`, `fledge` runs `remote`.
async fn python_scenarios(roost_impl: Impl, fledge_impl: Impl) {
    common::require_loopback_only();
    let mailbox = MailboxServer::start();
    tokio::time::timeout(Duration::from_secs(120), async {
        let mut roost = Fowld::spawn(roost_impl, &mailbox.url(), &["--no-relay"]);
        let mut fledge = Fowld::spawn(fledge_impl, &mailbox.url(), &["--no-relay"]);
        let echo = echo_server().await;
        // test_happy_local: `local` with both ports, sent before the peer connects
        let listen_port = common::port_to_listen_on("127.0.0.1");
        roost
            .send_local(json!({"kind": "local", "name": "happy-local", "local_listen_port": listen_port, "remote_connect_port": echo}))
            .await;
        pair(&mut roost, &mut fledge).await;
        // the roost's remote_connect_port chooses our connect port: Python always lets it, ours
        // only with allow_peer_port (our extension)
        let remote = match fledge_impl {
            Impl::Rust => json!({"kind": "remote", "name": "happy-local", "allow_peer_port": true}),
            Impl::Python => json!({"kind": "remote", "name": "happy-local"}),
        };
        fledge.send(remote).await;
        assert_eq!(roost.expect("listening").await["listening_port"], listen_port);
        assert_eq!(fledge.expect("awaiting-connect").await["local_port"], echo);
        let data = pattern(14000, 1);
        assert_eq!(through(listen_port, &data).await, data);

        // test_happy_remote: the fledge names the roost's listening port
        let wanted = common::port_to_listen_on("127.0.0.1");
        roost.send_local(json!({"kind": "local", "name": "a unique service name"})).await;
        fledge
            .send(json!({"kind": "remote", "name": "a unique service name", "remote_listen_port": wanted, "local_connect_port": echo}))
            .await;
        assert_eq!(roost.expect("listening").await["listening_port"], wanted);
        fledge.expect("awaiting-connect").await;
        assert_eq!(through(wanted, &data).await, data);

        // forward with no server listening
        let refusing = common::RefusingPort::reserve();
        let dead = refusing.port;
        roost.send_local(json!({"kind": "local", "name": "nobody"})).await;
        fledge
            .send(json!({"kind": "remote", "name": "nobody", "local_connect_port": dead}))
            .await;
        fledge.expect("awaiting-connect").await;
        let port = roost.expect("listening").await["listening_port"].as_u64().unwrap() as u16;
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        let refused = "Connection was refused by other side: 111: Connection refused.";
        assert_eq!(fledge.expect("incoming-lost").await["reason"], refused);
        assert_eq!(roost.expect("outgoing-lost").await["reason"], refused);

        // the port disagreements
        let (x, y) = (
            common::port_to_listen_on("127.0.0.1"),
            common::port_to_listen_on("127.0.0.1"),
        );
        roost.send_local(json!({"kind": "local", "name": "ports", "local_listen_port": x})).await;
        fledge
            .send(json!({"kind": "remote", "name": "ports", "remote_listen_port": y}))
            .await;
        let expected = format!("Desired port {y} does not match {x}");
        let m = roost.expect("error").await["message"].as_str().unwrap().to_string();
        assert_eq!(m, format!("Failed to listen on \"ports\": {expected}"));
        let m = fledge.expect("error").await["message"].as_str().unwrap().to_string();
        assert_eq!(m, format!("Service \"ports\" failed: {expected}"));
        roost
            .send_local(json!({"kind": "local", "name": "policy", "remote_connect_port": x}))
            .await;
        fledge
            .send(json!({"kind": "remote", "name": "policy", "local_connect_port": y}))
            .await;
        let port = roost.expect("listening").await["listening_port"].as_u64().unwrap() as u16;
        let m = fledge.expect("error").await["message"].as_str().unwrap().to_string();
        assert_eq!(m, format!("Reply asked for port {x} but we specified {y}"));

        // a stream for a name the peer never offered (it refused the reply above)
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let _ = s.read_to_end(&mut rest).await;
        assert_eq!(roost.expect("outgoing-lost").await["reason"], "Against local policy");
        assert_eq!(
            fledge.expect("incoming-lost").await["reason"],
            "Incoming connection against local policy: No service \"policy\""
        );
        close_both(&mut roost, &mut fledge).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn python_scenarios_rust_listens() {
    python_scenarios(Impl::Rust, Impl::Python).await;
}

#[tokio::test]
async fn python_scenarios_python_listens() {
    python_scenarios(Impl::Python, Impl::Rust).await;
}

/// Relay-only with Python: neither side offers direct hints; both use our relay. The Rust side
/// reports the path (`--status-events`).
async fn relay_only(inviter: Impl, roost_is_inviter: bool) {
    common::init_logging();
    common::require_loopback_only();
    let mailbox = MailboxServer::start();
    let relay = fowl::server::relay::serve(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        Default::default(),
    )
    .unwrap();
    let hint = relay.hint();
    let rust_args = ["--no-listen", "--relay", &hint, "--status-events"];
    let py_args = common::fowld::python_relay_only(&hint);
    let py_args: Vec<&str> = py_args.iter().map(String::as_str).collect();
    let args = |which| {
        if which == Impl::Rust {
            &rust_args[..]
        } else {
            &py_args[..]
        }
    };
    let peer = if inviter == Impl::Rust {
        Impl::Python
    } else {
        Impl::Rust
    };
    tokio::time::timeout(Duration::from_secs(120), async {
        let mut a = Fowld::spawn(inviter, &mailbox.url(), args(inviter));
        let mut b = Fowld::spawn(peer, &mailbox.url(), args(peer));
        pair(&mut a, &mut b).await;
        let ours = if inviter == Impl::Rust {
            &mut a
        } else {
            &mut b
        };
        assert_eq!(ours.expect("dilation-connected").await["path"], "relay");
        if roost_is_inviter {
            forward_echo(&mut a, &mut b, &[16 << 20]).await;
        } else {
            forward_echo(&mut b, &mut a, &[16 << 20]).await;
        }
        close_both(&mut a, &mut b).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn relay_only_rust_invites_and_listens() {
    relay_only(Impl::Rust, true).await;
}

#[tokio::test]
async fn relay_only_python_invites_and_listens() {
    relay_only(Impl::Python, true).await;
}
