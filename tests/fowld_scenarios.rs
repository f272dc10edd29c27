//! fowld's behaviour beyond the happy path, mostly between two of our daemons on our in-process
//! mailbox server, some against Python fowld: the reference's error table, bad input, wrong codes,
//! every way to close, a burst of clients, and backpressure into a slow local consumer.

mod common;

use std::time::{Duration, Instant};

use common::dilation::{pattern, sha};
use common::fowld::{echo_server, pair, service, through, Fowld, Impl};
use fowl::server::mailbox::{serve, MailboxConfig, MailboxServerHandle};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn mailbox() -> MailboxServerHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve(listener, MailboxConfig::default()).unwrap()
}

/// Two paired daemons of the given kinds on `mb`.
async fn paired(mb: &MailboxServerHandle, a: Impl, b: Impl) -> (Fowld, Fowld) {
    common::require_loopback_only();
    let mut a = Fowld::spawn(a, &mb.url(), &["--no-relay"]);
    let mut b = Fowld::spawn(b, &mb.url(), &["--no-relay"]);
    pair(&mut a, &mut b).await;
    (a, b)
}

/// `local` on `roost`, `remote` on `fledge` for an echo server; returns the listening port.
async fn echo_service(roost: &mut Fowld, fledge: &mut Fowld, name: &str) -> u16 {
    service(roost, fledge, name, echo_server().await).await
}

fn rss_kib(pid: u32) -> u64 {
    (common::rss_of(pid) / 1024) as u64
}

async fn error_message(f: &mut Fowld) -> String {
    f.expect("error").await["message"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn bad_lines_get_json_errors_while_a_stream_goes_on() {
    let mb = mailbox().await;
    tokio::time::timeout(Duration::from_secs(120), async {
        let (mut a, mut b) = paired(&mb, Impl::Rust, Impl::Rust).await;
        let port = echo_service(&mut a, &mut b, "echo").await;
        // a stream in flight, written slowly while the bad lines arrive
        let data = pattern(4 << 20, 3);
        let sent = data.clone();
        let stream = tokio::spawn(async move {
            let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let (mut r, mut w) = s.into_split();
            let writer = tokio::spawn(async move {
                for chunk in sent.chunks(64 * 1024) {
                    w.write_all(chunk).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                w
            });
            let mut got = vec![0u8; 4 << 20];
            r.read_exact(&mut got).await.unwrap();
            drop(writer.await.unwrap());
            got
        });
        let mut rng: u64 = 0x5eed;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let fragments = [
            "{",
            "}",
            "[",
            "]",
            "\"kind\"",
            ":",
            ",",
            "\"local\"",
            "\"name\"",
            "null",
            "1e999",
            "-1",
            "65536",
            "\"\\u0000\"",
            "true",
            "\"remote\"",
            "\"ping\"",
            " ",
            "\"x\"",
        ];
        let mut lines: Vec<String> = (0..200)
            .map(|_| {
                let n = 1 + next() % 12;
                (0..n)
                    .map(|_| fragments[(next() % fragments.len() as u64) as usize])
                    .collect()
            })
            .filter(|l: &String| {
                // only lines our parser must refuse (a random line can be a valid command)
                fowl::interfaces::fowld::commands::parse(l).is_err()
            })
            .collect();
        lines.extend(
            [
                "this is not json",
                "",
                "[1, 2]",
                r#"{"no": "kind"}"#,
                r#"{"kind": "frobnicate"}"#,
                r#"{"kind": "local"}"#,
                r#"{"kind": "local", "name": "x", "local_listen_port": 0}"#,
                r#"{"kind": "local", "name": "x", "local_listen_port": "80"}"#,
                r#"{"kind": "grant-permission"}"#,
            ]
            .map(String::from),
        );
        lines.push("x".repeat(100 * 1024)); // over the line limit
        let count = lines.len();
        for l in &lines {
            a.send_raw(l).await;
        }
        for i in 0..count {
            let m = error_message(&mut a).await;
            assert!(!m.is_empty(), "line {i}: empty message");
        }
        // still reading: the next good line is served
        a.send(json!({"kind": "ping", "ping_id": "after"})).await;
        assert_eq!(a.expect("pong").await["ping_id"], "after");
        let got = stream.await.unwrap();
        assert_eq!(sha(&got), sha(&data));
        assert_eq!(a.expect("outgoing-done").await["service_name"], "echo");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_reference_error_table() {
    let mb = mailbox().await;
    tokio::time::timeout(Duration::from_secs(120), async {
        let (mut a, mut b) = paired(&mb, Impl::Rust, Impl::Rust).await;
        // a second code
        a.send(json!({"kind": "allocate-code"})).await;
        assert!(error_message(&mut a).await.contains("already"));
        // remote before the peer's local: both sides told, no retry
        b.send(json!({"kind": "remote", "name": "early", "local_connect_port": 9}))
            .await;
        assert_eq!(
            error_message(&mut a).await,
            "Failed to listen on \"early\": No service permitted for name: early"
        );
        assert_eq!(a.expect("listening-failed").await["name"], "early");
        assert_eq!(
            error_message(&mut b).await,
            "Service \"early\" failed: No service permitted for name: early"
        );
        // remote for a name we roost, and the same name twice
        a.send_local(json!({"kind": "local", "name": "late"})).await;
        a.send(json!({"kind": "remote", "name": "late"})).await;
        assert_eq!(
            error_message(&mut a).await,
            "fledge(late) when we already have a roost for that name"
        );
        b.send(json!({"kind": "remote", "name": "early"})).await;
        assert_eq!(
            error_message(&mut b).await,
            "Supposedly unique \"early\" already in our services"
        );
        // listen port in use
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        a.send_local(json!({"kind": "local", "name": "dup", "local_listen_port": port}))
            .await;
        b.send(json!({"kind": "remote", "name": "dup"})).await;
        let m = error_message(&mut a).await;
        assert!(
            m.starts_with(&format!(
                "Failed to listen on \"dup\": Couldn't listen on 127.0.0.1:{port}"
            )),
            "{m}"
        );
        assert!(error_message(&mut b)
            .await
            .starts_with("Service \"dup\" failed: Couldn't listen"));
        // port disagreements
        a.send_local(json!({"kind": "local", "name": "p1", "local_listen_port": 7101}))
            .await;
        b.send(json!({"kind": "remote", "name": "p1", "remote_listen_port": 7102}))
            .await;
        assert_eq!(
            error_message(&mut a).await,
            "Failed to listen on \"p1\": Desired port 7102 does not match 7101"
        );
        assert_eq!(
            error_message(&mut b).await,
            "Service \"p1\" failed: Desired port 7102 does not match 7101"
        );
        a.send_local(json!({"kind": "local", "name": "p2", "remote_connect_port": 7103}))
            .await;
        b.send(json!({"kind": "remote", "name": "p2", "local_connect_port": 7104}))
            .await;
        let listening = a.expect("listening").await;
        assert_eq!(
            error_message(&mut b).await,
            "Reply asked for port 7103 but we specified 7104"
        );
        // ... and a stream for that name is refused by the peer's policy
        let port = listening["listening_port"].as_u64().unwrap() as u16;
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        let lost = a.expect("outgoing-lost").await;
        assert_eq!(lost["reason"], "Against local policy");
        assert_eq!(lost["service_name"], "p2");
        assert_eq!(a.expect("outgoing-done").await["id"], lost["id"]);
        assert_eq!(
            b.expect("incoming-lost").await["reason"],
            "Incoming connection against local policy: No service \"p2\""
        );
        // the peer names the local port our streams would reach, and we named none: refused
        // (Python would connect there); a stream for the name is refused by our policy
        let target = echo_server().await;
        a.send_local(json!({"kind": "local", "name": "p3", "remote_connect_port": target}))
            .await;
        b.send(json!({"kind": "remote", "name": "p3"})).await;
        let listening = a.expect("listening").await;
        assert_eq!(
            error_message(&mut b).await,
            format!(
                "Service \"p3\" refused: the peer asked us to connect to local port {target}, \
                 which we did not name (name the port with local_connect_port, or set \
                 allow_peer_port)"
            )
        );
        let port = listening["listening_port"].as_u64().unwrap() as u16;
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let _ = s.read_to_end(&mut rest).await;
        assert_eq!(
            a.expect("outgoing-lost").await["reason"],
            "Against local policy"
        );
        assert_eq!(
            b.expect("incoming-lost").await["reason"],
            "Incoming connection against local policy: No service \"p3\""
        );
        // the service's server is not running
        let dead = common::RefusingPort::reserve();
        let dead_port = dead.port;
        let port = service(&mut a, &mut b, "down", dead_port).await;
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let _ = s.read_to_end(&mut rest).await;
        let refused = "Connection was refused by other side: 111: Connection refused.";
        assert_eq!(b.expect("incoming-lost").await["reason"], refused);
        assert_eq!(a.expect("outgoing-lost").await["reason"], refused);
    })
    .await
    .unwrap();
}

async fn wrong_code(inviter: Impl, joiner: Impl) {
    common::require_loopback_only();
    let mb = mailbox().await;
    let mut a = Fowld::spawn(inviter, &mb.url(), &["--no-relay"]);
    let mut b = Fowld::spawn(joiner, &mb.url(), &["--no-relay"]);
    a.send(json!({"kind": "allocate-code"})).await;
    let code = a.expect("code-allocated").await["code"]
        .as_str()
        .unwrap()
        .to_string();
    let wrong = format!("{}-aardvark-adroitness", code.split('-').next().unwrap());
    b.send(json!({"kind": "set-code", "code": wrong})).await;
    for f in [&mut a, &mut b] {
        if f.which == Impl::Rust {
            assert!(error_message(f).await.contains("wrong code"));
            assert_eq!(f.expect("closed").await["result"], "scary");
        } else {
            f.expect("closed").await;
        }
        assert_eq!(f.wait_exit(Duration::from_secs(5)).await, Some(0));
    }
}

#[tokio::test]
async fn wrong_code_rust_invites() {
    wrong_code(Impl::Rust, Impl::Python).await;
}

#[tokio::test]
async fn wrong_code_python_invites() {
    wrong_code(Impl::Python, Impl::Rust).await;
}

/// Ends `a`'s session by `how`; both daemons report `closed: happy` and exit 0 within 3 s.
async fn closes(how: &str, peer: Impl) {
    let mb = mailbox().await;
    let (mut a, mut b) = paired(&mb, Impl::Rust, peer).await;
    let started = Instant::now();
    match how {
        "eof" => a.close_stdin(),
        "sigterm" => {
            let _ = std::process::Command::new("kill")
                .arg(a.pid().to_string())
                .status();
        }
        "sigint" => {
            let _ = std::process::Command::new("kill")
                .args(["-INT", &a.pid().to_string()])
                .status();
        }
        _ => unreachable!(),
    }
    assert_eq!(a.expect("closed").await["result"], "happy");
    assert_eq!(b.expect("closed").await["result"], "happy");
    assert_eq!(a.wait_exit(Duration::from_secs(3)).await, Some(0));
    assert_eq!(b.wait_exit(Duration::from_secs(3)).await, Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn stdin_eof_closes_both() {
    closes("eof", Impl::Rust).await;
}

#[tokio::test]
async fn sigterm_closes_both_with_python() {
    closes("sigterm", Impl::Python).await;
}

#[tokio::test]
async fn sigint_closes_both() {
    closes("sigint", Impl::Rust).await;
}

#[tokio::test]
async fn session_close_before_a_peer_is_lonely() {
    let mb = mailbox().await;
    let mut a = Fowld::spawn(Impl::Rust, &mb.url(), &["--no-relay"]);
    a.send(json!({"kind": "allocate-code"})).await;
    a.expect("code-allocated").await;
    a.send(json!({"kind": "session-close"})).await;
    assert_eq!(a.expect("closed").await["result"], "lonely");
    assert_eq!(a.wait_exit(Duration::from_secs(3)).await, Some(0));
}

#[tokio::test]
async fn unreachable_mailbox_is_a_clear_error() {
    let dead = common::RefusingPort::reserve();
    let url = format!("ws://127.0.0.1:{}/v1", dead.port);
    let mut a = Fowld::spawn(Impl::Rust, &url, &["--no-relay"]);
    let m = error_message(&mut a).await;
    assert!(m.contains(&url), "{m}");
    assert_eq!(a.expect("closed").await["result"], "errory");
    assert_eq!(a.wait_exit(Duration::from_secs(5)).await, Some(0));
}

#[tokio::test]
async fn a_hundred_clients_at_once() {
    let mb = mailbox().await;
    tokio::time::timeout(Duration::from_secs(120), async {
        let (mut a, mut b) = paired(&mb, Impl::Rust, Impl::Rust).await;
        let port = echo_service(&mut a, &mut b, "burst").await;
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(100));
        let clients: Vec<_> = (0..100u64)
            .map(|i| {
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    let data = pattern(64 * 1024, i);
                    barrier.wait().await;
                    let got = through(port, &data).await;
                    sha(&got) == sha(&data)
                })
            })
            .collect();
        for c in clients {
            assert!(c.await.unwrap(), "a client got other bytes back");
        }
        let mut done = 0;
        while done < 100 {
            a.expect("outgoing-done").await;
            done += 1;
        }
        assert!(!a.seen.iter().any(|v| v["kind"] == "outgoing-lost"));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_slow_local_consumer_holds_both_daemons_back() {
    let mb = mailbox().await;
    tokio::time::timeout(Duration::from_secs(120), async {
        let (mut a, mut b) = paired(&mb, Impl::Rust, Impl::Rust).await;
        // b serves a sink that reads 4 MB/s; a's client pushes 64 MiB
        let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink_port = sink.local_addr().unwrap().port();
        let reader = tokio::spawn(async move {
            let (mut s, _) = sink.accept().await.unwrap();
            let mut buf = vec![0u8; 40 * 1024];
            let (mut total, start) = (0usize, Instant::now());
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    return total;
                }
                total += n;
                let due = start + Duration::from_secs_f64(total as f64 / 4e6);
                tokio::time::sleep_until(due.into()).await;
            }
        });
        let port = service(&mut a, &mut b, "sink", sink_port).await;
        let (base_a, base_b) = (rss_kib(a.pid()), rss_kib(b.pid()));
        let (pa, pb) = (a.pid(), b.pid());
        let peak = std::sync::Arc::new(std::sync::Mutex::new((0u64, 0u64)));
        let sampler = {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    {
                        let mut p = peak.lock().unwrap();
                        p.0 = p.0.max(rss_kib(pa));
                        p.1 = p.1.max(rss_kib(pb));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let data = pattern(64 << 20, 9);
        s.write_all(&data).await.unwrap();
        s.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), 64 << 20);
        sampler.abort();
        let (peak_a, peak_b) = *peak.lock().unwrap();
        let (grow_a, grow_b) = (peak_a.saturating_sub(base_a), peak_b.saturating_sub(base_b));
        eprintln!("RSS growth: sender daemon {grow_a} KiB, receiver daemon {grow_b} KiB");
        assert!(
            grow_a < 8 * 1024 && grow_b < 8 * 1024,
            "{grow_a} / {grow_b} KiB"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_stalled_controller_slows_nothing_and_counts_stay_exact() {
    let mb = mailbox().await;
    tokio::time::timeout(Duration::from_secs(120), async {
        let (mut a, mut b) = paired(&mb, Impl::Rust, Impl::Rust).await;
        let port = echo_service(&mut a, &mut b, "echo").await;
        // neither controller reads stdout while 256 MiB go through and back; 3000 error lines
        // (about 150 KB) fill each stdout pipe first, so both daemons' writers are blocked
        a.stall(true);
        b.stall(true);
        for f in [&mut a, &mut b] {
            for _ in 0..3000 {
                f.send_raw("not json").await;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let data = pattern(256 << 20, 5);
        let started = Instant::now();
        let got = through(port, &data).await;
        let took = started.elapsed();
        assert_eq!(sha(&got), sha(&data));
        a.stall(false);
        b.stall(false);
        let out = a.expect("outgoing-done").await;
        let inc = b.expect("incoming-done").await;
        a.settle(Duration::from_millis(500)).await;
        b.settle(Duration::from_millis(500)).await;
        for f in [&a, &b] {
            assert_eq!(f.seen.iter().filter(|v| v["kind"] == "error").count(), 3000);
        }
        let n = 256u64 << 20;
        for (f, id) in [(&a, &out["id"]), (&b, &inc["id"])] {
            assert_eq!(f.total("bytes-in", id), n);
            assert_eq!(f.total("bytes-out", id), n);
            let lines = f
                .seen
                .iter()
                .filter(|v| v["kind"] == "bytes-in" && &v["id"] == id)
                .count();
            // one line per 32 KiB read would be 8192
            assert!(lines < 8192, "{lines} bytes-in lines: not coalesced");
        }
        eprintln!("256 MiB echoed in {took:?} with both controllers stalled");
        assert!(took < Duration::from_secs(30), "{took:?}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_application_id_of_its_own_separates_and_still_forwards() {
    common::require_loopback_only();
    let mb = mailbox().await;
    tokio::time::timeout(Duration::from_secs(60), async {
        const SHWIM: &str = "example.com/shwim-like";
        // a peer of the other application meets fowld only under that app id: fowld used it
        let mut a = Fowld::spawn(Impl::Rust, &mb.url(), &["--no-relay", "--appid", SHWIM]);
        a.send(json!({"kind": "allocate-code"})).await;
        let code = a.expect("code-allocated").await["code"]
            .as_str()
            .unwrap()
            .to_string();
        let config = fowl::wormhole::WormholeConfig::new(SHWIM, &mb.url());
        let mut w = fowl::wormhole::Wormhole::connect(config).await.unwrap();
        w.set_code(&code).await.unwrap();
        w.verifier().await.unwrap(); // the key exchange went through
        drop(w);
        // two daemons of that application forward as fowl's do
        let mut b = Fowld::spawn(Impl::Rust, &mb.url(), &["--no-relay", "--appid", SHWIM]);
        let mut c = Fowld::spawn(Impl::Rust, &mb.url(), &["--no-relay", "--appid", SHWIM]);
        pair(&mut b, &mut c).await;
        let port = echo_service(&mut b, &mut c, "svc").await;
        assert_eq!(through(port, b"same protocol").await, b"same protocol");
        drop(a);
    })
    .await
    .unwrap();
}
