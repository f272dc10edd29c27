//! Remembered peers end to end: two of our fowlds pair with a code and `remember`, exit, and meet
//! again by name (`connect`) without one, through the Python mailbox server and through ours;
//! the secret rotates at every reconnection; both starting at the same instant; a side that lost
//! the last rotation (a crash between the confirmation steps) still meets; a Python peer that
//! cannot remember; and `fowl connect`/`peers`/`forget` on a forgotten, edited or open file.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cli::Fowl as Cli;
use common::dilation::{pattern, sha};
use common::fowld::{echo_server, service, through, Fowld, Impl};
use fowl::remember::{Generation, PeerFile, PeerStore};
use fowl::server::mailbox::{serve, MailboxConfig, MailboxServerHandle};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(120);

async fn our_mailbox() -> MailboxServerHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve(listener, MailboxConfig::default()).unwrap()
}

/// One person: a configuration folder of their own.
struct Person {
    home: tempfile::TempDir,
}

impl Person {
    fn new() -> Person {
        Person {
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn peers_dir(&self) -> PathBuf {
        self.home.path().join("fowl/peers")
    }

    fn store(&self) -> PeerStore {
        PeerStore::at(self.peers_dir())
    }

    fn file(&self, name: &str) -> PeerFile {
        self.store().load(name).unwrap()
    }

    fn fowld(&self, mailbox: &str) -> Fowld {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_fowld"));
        cmd.args(["--no-relay", "--mailbox", mailbox])
            .env("XDG_CONFIG_HOME", self.home.path());
        Fowld::from_command(Impl::Rust, cmd)
    }

    fn fowl(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_fowl"))
            .args(args)
            .env("XDG_CONFIG_HOME", self.home.path())
            .output()
            .unwrap()
    }
}

/// Waits for the `remember` line in `state` (failing on a `not-remembered` or `peer-cannot`).
async fn remember_state(f: &mut Fowld, state: &str) -> Value {
    loop {
        let line = f.expect("remember").await;
        if line["state"] == state {
            return line;
        }
        assert!(
            !matches!(
                line["state"].as_str(),
                Some("not-remembered" | "peer-cannot")
            ),
            "{line}"
        );
    }
}

async fn close(mut a: Fowld, mut b: Fowld) {
    a.send(json!({"kind": "session-close"})).await;
    for f in [&mut a, &mut b] {
        f.expect("closed").await;
        assert_eq!(f.wait_exit(Duration::from_secs(15)).await, Some(0));
    }
}

/// Pairs `alice` and `bob` with a code, both asking to remember; returns when both confirmed.
async fn pair_and_remember(mailbox: &str, alice: &Person, bob: &Person) {
    let mut a = alice.fowld(mailbox);
    let mut b = bob.fowld(mailbox);
    a.send(json!({"kind": "allocate-code"})).await;
    a.send(json!({"kind": "remember", "name": "bob"})).await;
    let code = a.expect("code-allocated").await["code"].clone();
    b.send(json!({"kind": "set-code", "code": code})).await;
    let versions = b.expect("peer-connected").await["versions"].clone();
    assert_eq!(versions["fowl-rs"]["remember"], 1, "{versions}");
    // bob hears that alice asks, then agrees
    assert_eq!(b.expect("remember").await["state"], "peer-asked");
    b.send(json!({"kind": "remember", "name": "alice"})).await;
    let (ra, rb) = (
        remember_state(&mut a, "remembered").await,
        remember_state(&mut b, "remembered").await,
    );
    assert_eq!((&ra["name"], &ra["generation"]), (&json!("bob"), &json!(1)));
    assert_eq!(
        (&rb["name"], &rb["generation"]),
        (&json!("alice"), &json!(1))
    );
    close(a, b).await;
    let (fa, fb) = (alice.file("bob"), bob.file("alice"));
    assert_eq!(fa.current, fb.current, "one secret on both sides");
    assert!(fa.next.is_none() && fb.next.is_none());
    assert_eq!(fa.mailbox_url, mailbox);
    for (person, name) in [(alice, "bob"), (bob, "alice")] {
        let meta = std::fs::metadata(person.store().path(name)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let dir = std::fs::metadata(person.peers_dir()).unwrap();
        assert_eq!(dir.permissions().mode() & 0o777, 0o700);
    }
}

/// Alice and bob `connect` by name (bob once alice waits, or both at once); a stream is echoed
/// through the session; returns the generation both confirmed.
async fn reconnect(mailbox: &str, alice: &Person, bob: &Person, at_once: bool) -> u64 {
    let mut a = alice.fowld(mailbox);
    let mut b = bob.fowld(mailbox);
    a.expect("welcome").await;
    b.expect("welcome").await;
    if at_once {
        tokio::join!(
            a.send(json!({"kind": "connect", "name": "bob"})),
            b.send(json!({"kind": "connect", "name": "alice"}))
        );
    } else {
        a.send(json!({"kind": "connect", "name": "bob"})).await;
        assert_eq!(a.expect("rendezvous").await["name"], "bob");
        b.send(json!({"kind": "connect", "name": "alice"})).await;
    }
    let (pa, pb) = (
        a.expect("peer-connected").await,
        b.expect("peer-connected").await,
    );
    assert_eq!(pa["verifier"], pb["verifier"], "a fresh key both confirmed");
    // forwarding works as after a code
    let port = service(&mut a, &mut b, "echo", echo_server().await).await;
    let data = pattern(256 << 10, 11);
    assert_eq!(sha(&through(port, &data).await), sha(&data));
    let (ra, rb) = (
        remember_state(&mut a, "remembered").await,
        remember_state(&mut b, "remembered").await,
    );
    assert_eq!(ra["generation"], rb["generation"]);
    close(a, b).await;
    ra["generation"].as_u64().unwrap()
}

/// Pair, then reconnect twice (the second time both at once), checking that each rotation moves
/// the secret and with it the mailbox.
async fn pair_reconnect_rotate(mailbox: &str) {
    let (alice, bob) = (Person::new(), Person::new());
    pair_and_remember(mailbox, &alice, &bob).await;
    let first = alice.file("bob").current.unwrap();
    assert_eq!(reconnect(mailbox, &alice, &bob, false).await, 2);
    let second = alice.file("bob").current.unwrap();
    assert_eq!(second.number, 2);
    assert_ne!(second.secret, first.secret, "rotated");
    assert_ne!(
        second.secret.rendezvous().mailbox,
        first.secret.rendezvous().mailbox,
        "the mailbox moves with the secret"
    );
    assert_eq!(bob.file("alice").current, Some(second));
    assert!(alice.file("bob").last_used.is_some());
    assert_eq!(reconnect(mailbox, &alice, &bob, true).await, 3);
    let third = bob.file("alice").current.unwrap();
    assert_eq!(alice.file("bob").current, Some(third));
    assert_ne!(third.secret, second.secret);
}

#[tokio::test]
async fn remembered_peers_reconnect_by_name_through_the_python_mailbox_server() {
    common::require_loopback_only();
    let server = common::MailboxServer::start();
    tokio::time::timeout(LIMIT, pair_reconnect_rotate(&server.url()))
        .await
        .expect("in time");
}

#[tokio::test]
async fn remembered_peers_reconnect_by_name_through_our_mailbox_server() {
    common::require_loopback_only();
    let server = our_mailbox().await;
    tokio::time::timeout(LIMIT, pair_reconnect_rotate(&server.url()))
        .await
        .expect("in time");
}

/// Rewrites `person`'s file as if it had stored `next` but never heard the peer's confirmation.
fn unconfirmed(person: &Person, name: &str, current: Generation, next: Generation) {
    let mut file = person.file(name);
    file.current = Some(current);
    file.next = Some(next);
    person.store().save(&file).unwrap();
}

#[tokio::test]
async fn a_side_that_lost_the_last_rotation_still_meets_its_peer() {
    common::require_loopback_only();
    let server = our_mailbox().await;
    let url = server.url();
    tokio::time::timeout(LIMIT, async {
        let (alice, bob) = (Person::new(), Person::new());
        pair_and_remember(&url, &alice, &bob).await;
        let g1 = alice.file("bob").current.unwrap();
        assert_eq!(reconnect(&url, &alice, &bob, false).await, 2);
        let g2 = alice.file("bob").current.unwrap();

        // bob stored generation 2 and crashed before alice's confirmation reached him: he
        // waits at 2 and at 1, alice (confirmed) at 2 only
        unconfirmed(&bob, "alice", g1, g2);
        assert_eq!(reconnect(&url, &alice, &bob, false).await, 3);
        assert!(!bob.file("alice").pending(), "settled");
        assert_eq!(bob.file("alice").current, alice.file("bob").current);

        // now alice stored a next generation that bob never stored (he crashed before): she
        // waits at it and at the one before, bob at that one only, and they meet there
        let g3 = alice.file("bob").current.unwrap();
        assert_eq!(bob.file("alice").current, Some(g3));
        let made_up = Generation {
            number: 4,
            secret: fowl::remember::Secret::from_bytes([0x44; 32]),
        };
        unconfirmed(&alice, "bob", g3, made_up);
        assert_eq!(reconnect(&url, &alice, &bob, true).await, 4);
        assert_eq!(alice.file("bob").current, bob.file("alice").current);
        assert_ne!(alice.file("bob").current, Some(made_up));

        // both stored the next one and neither heard the other: both wait at both, see at the
        // older mailbox that the peer waits at the newer too, and meet there once
        let g4 = alice.file("bob").current.unwrap();
        let g5 = Generation {
            number: 5,
            secret: fowl::remember::Secret::from_bytes([0x55; 32]),
        };
        unconfirmed(&alice, "bob", g4, g5);
        unconfirmed(&bob, "alice", g4, g5);
        assert_eq!(reconnect(&url, &alice, &bob, true).await, 6);
        assert_eq!(alice.file("bob").current, bob.file("alice").current);
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_python_peer_cannot_remember_and_nothing_is_stored() {
    common::require_loopback_only();
    let server = our_mailbox().await;
    let url = server.url();
    tokio::time::timeout(LIMIT, async {
        let alice = Person::new();
        let mut a = alice.fowld(&url);
        let mut py = Fowld::spawn(Impl::Python, &url, &[]);
        a.send(json!({"kind": "allocate-code"})).await;
        a.send(json!({"kind": "remember", "name": "py"})).await;
        let code = a.expect("code-allocated").await["code"].clone();
        py.send(json!({"kind": "set-code", "code": code})).await;
        let line = a.expect("remember").await;
        assert_eq!(
            (&line["state"], &line["name"]),
            (&json!("peer-cannot"), &json!("py"))
        );
        a.expect("peer-connected").await;
        close(a, py).await;
        assert!(!alice.store().contains("py"));
    })
    .await
    .expect("in time");
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn secret_of(path: &Path) -> String {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["current"]["secret"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn forgotten_edited_and_open_files_fail_cleanly_and_peers_lists_them() {
    common::require_loopback_only();
    let server = our_mailbox().await;
    let url = server.url();
    let (alice, bob) = (Person::new(), Person::new());
    tokio::time::timeout(LIMIT, pair_and_remember(&url, &alice, &bob))
        .await
        .expect("in time");
    let listed = text(&alice.fowl(&["peers"]));
    assert!(listed.contains("bob") && listed.contains(&url), "{listed}");
    assert!(listed.contains("never"), "not used yet: {listed}");
    let spec = ["-L", "svc:1"];

    // an edited secret: refused before anything starts, and by fowld's `connect`
    let path = bob.store().path("alice");
    let secret = secret_of(&path);
    let edited = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&secret, &"ab".repeat(32));
    std::fs::write(&path, edited).unwrap();
    let out = bob.fowl(&[&["connect", "alice"][..], &spec].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("damaged or was edited"),
        "{}",
        text(&out)
    );
    let mut b = bob.fowld(&url);
    b.send(json!({"kind": "connect", "name": "alice"})).await;
    let error = b.expect("error").await;
    assert!(
        error["message"].as_str().unwrap().contains("damaged"),
        "{error}"
    );
    assert!(text(&bob.fowl(&["peers"])).contains("unusable"));
    drop(b);

    // a file others may read
    let apath = alice.store().path("bob");
    std::fs::set_permissions(&apath, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = alice.fowl(&[&["connect", "bob"][..], &spec].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("may be read by others"),
        "{}",
        text(&out)
    );
    std::fs::set_permissions(&apath, std::fs::Permissions::from_mode(0o600)).unwrap();

    // forgotten
    let out = alice.fowl(&["forget", "bob"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!apath.exists());
    let out = alice.fowl(&[&["connect", "bob"][..], &spec].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("no remembered peer named \"bob\""),
        "{}",
        text(&out)
    );
    assert_eq!(alice.fowl(&["forget", "bob"]).status.code(), Some(1));
    // remembering under a taken name is refused up front
    let out = bob.fowl(&["invite", "--remember", "alice", "-L", "svc:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("already remembered"), "{}", text(&out));
}

/// `fowl ARGS` as `person`.
fn cli(person: &Person, args: &[String]) -> Cli {
    Cli::spawn(args, &[("XDG_CONFIG_HOME", person.home.path())])
}

/// The README's everyday commands: `fowl invite/accept --remember`, then `fowl connect` on both
/// sides (twice), a stream through each session, `fowl peers` showing the last use.
#[tokio::test]
async fn the_readme_flow_invite_accept_remember_then_connect_by_name() {
    common::require_loopback_only();
    let server = our_mailbox().await;
    let url = server.url();
    let (alice, bob) = (Person::new(), Person::new());
    tokio::time::timeout(LIMIT, async {
        let echo = echo_server().await;
        let net = |mut v: Vec<String>| {
            v.extend(["--mailbox".into(), url.clone(), "--no-relay".into()]);
            v
        };
        let s = |x: &str| x.to_string();
        let mut a = cli(
            &alice,
            &net(vec![
                s("invite"),
                s("-R"),
                format!("echo:{echo}"),
                s("--remember"),
                s("bob"),
            ]),
        );
        let code = a.line("code: ").await["code: ".len()..].to_string();
        let mut b = cli(
            &bob,
            &net(vec![
                s("accept"),
                code,
                s("-L"),
                s("echo"),
                s("--remember"),
                s("alice"),
            ]),
        );
        assert!(a
            .line("remembered as bob")
            .await
            .contains("fowl connect bob"));
        b.line("remembered as alice").await;
        assert_eq!(a.interrupt().await, Some(0));
        assert_eq!(b.interrupt().await, Some(0));

        for round in 2..=3 {
            let mut a = cli(
                &alice,
                &net(vec![
                    s("connect"),
                    s("bob"),
                    s("-R"),
                    format!("echo:{echo}"),
                ]),
            );
            a.line("meeting remembered peer bob").await;
            let mut b = cli(
                &bob,
                &net(vec![s("connect"), s("alice"), s("-L"), s("echo")]),
            );
            let (va, vb) = (
                a.line("peer connected; verifier: ").await,
                b.line("peer connected; verifier: ").await,
            );
            assert_eq!(va, vb);
            let listening = b.line("echo: listening on port ").await;
            // the service side takes streams once it has the listener's answer
            a.line("echo: the peer listens").await;
            let port: u16 = listening["echo: listening on port ".len()..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let data = pattern(64 << 10, round);
            assert_eq!(sha(&through(port, &data).await), sha(&data));
            let rotated = format!("secret rotated (generation {round})");
            assert!(a.line("bob: secret rotated").await.contains(&rotated));
            b.line("alice: secret rotated").await;
            assert_eq!(a.interrupt().await, Some(0));
            assert_eq!(b.interrupt().await, Some(0));
        }
        let listed = text(&alice.fowl(&["peers"]));
        assert!(
            listed.contains("bob") && !listed.contains("never"),
            "{listed}"
        );
    })
    .await
    .expect("in time");
}
