//! Deterministic tests of the sans-IO mailbox client: explicit time, no sockets.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::machine::{backoff, MAILBOX_LIVENESS, RECONNECT_LIMIT};
use super::*;

fn frames(c: &mut MailboxClient) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(a) = c.poll_action() {
        match a {
            Action::Send(f) => out.push(serde_json::from_str(&f).unwrap()),
            other => panic!("unexpected action {other:?}"),
        }
    }
    out
}

fn kinds(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f["type"].as_str().unwrap().to_string())
        .collect()
}

fn events(c: &mut MailboxClient) -> Vec<MailboxEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn message(side: &str, phase: &str, body: &[u8]) -> String {
    format!(
        r#"{{"type": "message", "side": "{side}", "phase": "{phase}", "body": "{}", "server_rx": 1, "id": null}}"#,
        hex::encode(body)
    )
}

/// A client that is connected, has claimed nameplate 4 and opened mailbox "mb".
fn opened(now: Instant) -> MailboxClient {
    let mut c = MailboxClient::new("appid", "me", 1);
    c.start();
    assert_eq!(c.poll_action(), Some(Action::Connect));
    c.connection_made(now);
    c.claim("4");
    c.received(r#"{"type": "claimed", "mailbox": "mb"}"#);
    frames(&mut c);
    events(&mut c);
    c
}

#[test]
fn normal_sequence() {
    let now = Instant::now();
    let mut c = MailboxClient::new("appid", "me", 1);
    c.start();
    assert_eq!(c.poll_action(), Some(Action::Connect));
    assert_eq!(c.poll_action(), None);
    c.connection_made(now);
    let sent = frames(&mut c);
    assert_eq!(kinds(&sent), ["bind"]);
    assert_eq!(sent[0]["appid"], "appid");
    assert_eq!(sent[0]["side"], "me");
    c.allocate();
    c.add("pake", b"p".to_vec()); // queued until the mailbox is open
    assert_eq!(kinds(&frames(&mut c)), ["allocate"]);
    c.received(r#"{"type": "welcome", "welcome": {"motd": "hello", "other": 1}}"#);
    c.received(r#"{"type": "ack", "id": null}"#);
    c.received(r#"{"type": "allocated", "nameplate": "4"}"#);
    c.claim("4");
    assert_eq!(kinds(&frames(&mut c)), ["claim"]);
    c.received(r#"{"type": "claimed", "mailbox": "mb"}"#);
    let sent = frames(&mut c);
    assert_eq!(kinds(&sent), ["open", "add"]);
    assert_eq!(sent[0]["mailbox"], "mb");
    assert_eq!(sent[1]["body"], "70");
    assert_eq!(
        events(&mut c),
        vec![
            MailboxEvent::Connected,
            MailboxEvent::Welcome {
                motd: Some("hello".into()),
                welcome: serde_json::json!({"motd": "hello", "other": 1}),
            },
            MailboxEvent::Allocated("4".into()),
            MailboxEvent::Claimed("mb".into()),
        ]
    );
    // own echo is not delivered; the peer's message is, once
    c.received(&message("me", "pake", b"p"));
    c.received(&message("peer", "pake", b"q"));
    c.received(&message("peer", "pake", b"q"));
    assert_eq!(
        events(&mut c),
        vec![MailboxEvent::PeerMessage {
            side: "peer".into(),
            phase: "pake".into(),
            body: b"q".to_vec()
        }]
    );
}

#[test]
fn ids_are_four_hex_digits_and_change() {
    let mut c = opened(Instant::now());
    c.add("a", vec![]);
    c.add("b", vec![]);
    let sent = frames(&mut c);
    let ids: Vec<&str> = sent.iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert!(ids
        .iter()
        .all(|id| id.len() == 4 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn reconnect_replays_state_and_resends_unechoed_adds() {
    let t0 = Instant::now();
    let mut c = opened(t0);
    c.add("pake", b"1".to_vec());
    c.add("version", b"2".to_vec());
    c.add("0", b"3".to_vec());
    frames(&mut c);
    c.received(&message("me", "pake", b"1")); // echoed: done
    c.received(&message("peer", "pake", b"x"));
    events(&mut c);
    c.release();
    assert_eq!(kinds(&frames(&mut c)), ["release"]);

    c.connection_lost(t0);
    let retry_at = match events(&mut c).as_slice() {
        [MailboxEvent::Disconnected { retry_at }] => *retry_at,
        other => panic!("{other:?}"),
    };
    assert!(
        retry_at >= t0 + Duration::from_millis(250) && retry_at < t0 + Duration::from_millis(500)
    );
    assert_eq!(c.poll_timeout(), Some(retry_at));
    // commands while offline are only remembered
    c.add("1", b"4".to_vec());
    assert!(frames(&mut c).is_empty());
    c.handle_timeout(retry_at - Duration::from_millis(1));
    assert_eq!(c.poll_action(), None);
    c.handle_timeout(retry_at);
    assert_eq!(c.poll_action(), Some(Action::Connect));
    c.connection_made(retry_at);
    let sent = frames(&mut c);
    assert_eq!(
        kinds(&sent),
        ["bind", "release", "open", "add", "add", "add"]
    );
    let phases: Vec<&str> = sent[3..]
        .iter()
        .map(|f| f["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["version", "0", "1"]);
    // the server replays the whole mailbox: nothing is delivered twice
    events(&mut c);
    c.received(&message("me", "pake", b"1"));
    c.received(&message("peer", "pake", b"x"));
    c.received(&message("peer", "version", b"v"));
    assert_eq!(
        events(&mut c),
        vec![MailboxEvent::PeerMessage {
            side: "peer".into(),
            phase: "version".into(),
            body: b"v".to_vec()
        }]
    );
}

#[test]
fn unanswered_claim_and_allocate_are_resent_after_reconnect() {
    let t0 = Instant::now();
    let mut c = MailboxClient::new("appid", "me", 1);
    c.start();
    c.poll_action();
    c.connection_made(t0);
    c.allocate();
    c.list();
    frames(&mut c);
    c.connection_lost(t0);
    c.handle_timeout(t0 + Duration::from_secs(2));
    assert_eq!(c.poll_action(), Some(Action::Connect));
    c.connection_made(t0 + Duration::from_secs(2));
    assert_eq!(kinds(&frames(&mut c)), ["bind", "allocate", "list"]);
    c.received(r#"{"type": "allocated", "nameplate": "9"}"#);
    c.claim("9");
    frames(&mut c);
    c.connection_lost(t0 + Duration::from_secs(3));
    c.handle_timeout(t0 + Duration::from_secs(5));
    c.poll_action();
    c.connection_made(t0 + Duration::from_secs(5));
    assert_eq!(kinds(&frames(&mut c)), ["bind", "list", "claim"]);
}

#[test]
fn backoff_grows_by_half_and_caps_below_a_second() {
    assert_eq!(backoff(0), Duration::from_millis(250));
    assert_eq!(backoff(1), Duration::from_secs_f64(0.375));
    assert_eq!(backoff(2), Duration::from_secs_f64(0.5625));
    assert_eq!(backoff(3), Duration::from_millis(750));
    assert_eq!(backoff(1000), Duration::from_millis(750));

    let mut now = Instant::now();
    let mut c = opened(now);
    c.connection_lost(now);
    let mut delays = Vec::new();
    for _ in 0..15 {
        let at = c.poll_timeout().unwrap();
        delays.push(at - now);
        now = at;
        c.handle_timeout(now);
        assert_eq!(c.poll_action(), Some(Action::Connect));
        c.connection_failed(now, "refused");
    }
    for (n, d) in delays.iter().enumerate() {
        let base = backoff(n as u32);
        assert!(
            *d >= base && *d < base + Duration::from_millis(250),
            "attempt {n}: {d:?}"
        );
    }
    // a success resets the backoff
    let at = c.poll_timeout().unwrap();
    c.handle_timeout(at);
    c.poll_action();
    c.connection_made(at);
    c.connection_lost(at);
    assert!(c.poll_timeout().unwrap() < at + Duration::from_millis(500));
}

#[test]
fn a_silent_connection_is_pinged_then_abandoned_and_replaced() {
    let t0 = Instant::now();
    let mut c = opened(t0);
    frames(&mut c);
    let half = MAILBOX_LIVENESS / 2;
    assert_eq!(c.poll_timeout(), Some(t0 + half));
    // a frame pushes the deadline on
    c.heard(t0 + Duration::from_secs(1));
    c.received(r#"{"type": "ack", "id": null}"#);
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(1) + half));
    // quiet: a ping, whose pong is not reported as the application's
    let quiet = t0 + Duration::from_secs(1) + half;
    c.handle_timeout(quiet);
    assert_eq!(kinds(&frames(&mut c)), ["ping"]);
    c.heard(quiet + Duration::from_millis(10));
    c.received(r#"{"type": "pong", "pong": -1718581100}"#);
    assert!(events(&mut c).is_empty(), "the liveness pong is ours");
    // then silence for the whole interval: abandoned, and a reconnection within a second
    let heard = quiet + Duration::from_millis(10);
    c.handle_timeout(heard + half);
    assert_eq!(kinds(&frames(&mut c)), ["ping"]);
    c.handle_timeout(heard + MAILBOX_LIVENESS - Duration::from_millis(1));
    assert_eq!(c.poll_action(), None);
    c.handle_timeout(heard + MAILBOX_LIVENESS);
    assert_eq!(c.poll_action(), Some(Action::Abandon));
    let retry = c.poll_timeout().expect("a retry is scheduled");
    assert!(retry <= heard + MAILBOX_LIVENESS + Duration::from_secs(1));
    assert_eq!(c.connect_limit(), Some(RECONNECT_LIMIT));
}

#[test]
fn first_connection_failure_is_final() {
    let mut c = MailboxClient::new("appid", "me", 1);
    c.start();
    c.poll_action();
    c.connection_failed(Instant::now(), "connection refused");
    assert_eq!(
        events(&mut c),
        vec![MailboxEvent::ConnectFailed("connection refused".into())]
    );
    assert_eq!(c.poll_timeout(), None);
    assert!(c.is_stopped());
}

#[test]
fn close_waits_for_released_and_closed() {
    let mut c = opened(Instant::now());
    c.close("happy");
    let sent = frames(&mut c);
    assert_eq!(kinds(&sent), ["release", "close"]);
    assert_eq!(sent[0]["nameplate"], "4");
    assert_eq!(sent[1]["mood"], "happy");
    assert_eq!(sent[1]["mailbox"], "mb");
    c.received(r#"{"type": "closed"}"#);
    assert!(events(&mut c).is_empty());
    c.received(r#"{"type": "released"}"#);
    assert_eq!(
        events(&mut c),
        vec![MailboxEvent::Released, MailboxEvent::Closed]
    );
    assert_eq!(c.poll_action(), Some(Action::Disconnect));
    assert!(c.is_stopped());
}

#[test]
fn close_before_anything_is_immediate() {
    let mut c = MailboxClient::new("appid", "me", 1);
    c.start();
    c.poll_action();
    c.connection_made(Instant::now());
    frames(&mut c);
    c.close("lonely");
    assert_eq!(
        events(&mut c),
        vec![MailboxEvent::Connected, MailboxEvent::Closed]
    );
    assert_eq!(c.poll_action(), Some(Action::Disconnect));
}

#[test]
fn server_errors_and_welcome_errors_are_events_and_junk_is_ignored() {
    let mut c = opened(Instant::now());
    for junk in [
        "",
        "{",
        "[1]",
        r#"{"type": 3}"#,
        r#"{"type": "message"}"#,
        r#"{"type": "brand-new"}"#,
    ] {
        c.received(junk);
    }
    assert!(events(&mut c).is_empty());
    assert!(frames(&mut c).is_empty());
    c.received(r#"{"type": "error", "error": "crowded", "orig": {"type": "claim"}}"#);
    c.received(r#"{"type": "welcome", "welcome": {"error": "go away"}}"#);
    assert_eq!(
        events(&mut c),
        vec![
            MailboxEvent::ServerError("crowded".into()),
            MailboxEvent::WelcomeError("go away".into())
        ]
    );
}

#[test]
fn named_phases_are_remembered_up_to_a_bound_and_numbered_ones_left_to_the_wormhole() {
    let mut c = opened(Instant::now());
    events(&mut c);
    // a peer (or a server) sending ever new phase names: 64 are remembered, the rest ignored
    for i in 0..1000 {
        c.received(&message("peer", &format!("name-{i}"), b"x"));
    }
    let delivered = events(&mut c).len();
    assert_eq!(delivered, 64);
    // numbered phases are not remembered here: a repeat goes up (the wormhole drops it)
    c.received(&message("peer", "dilate-7", b"d"));
    c.received(&message("peer", "dilate-7", b"d"));
    c.received(&message("peer", "12", b"m"));
    assert_eq!(events(&mut c).len(), 3);
}
