//! Deterministic tests of [`WormholeCore`]: two cores talk through a minimal in-memory mailbox
//! (unit-test scaffolding only; interop is proven against the real server in `tests/`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::key;
use crate::mailbox::Action;

#[derive(Default)]
struct FakeMailbox {
    stored: Vec<Value>,
    subscribed: HashMap<usize, bool>,
    outbox: Vec<(usize, String)>,
    closes: Vec<String>,
}

impl FakeMailbox {
    fn handle(&mut self, from: usize, frame: &str) {
        let m: Value = serde_json::from_str(frame).unwrap();
        let reply = |t: Value| (from, t.to_string());
        match m["type"].as_str().unwrap() {
            "allocate" => self
                .outbox
                .push(reply(json!({"type": "allocated", "nameplate": "4"}))),
            "claim" => self
                .outbox
                .push(reply(json!({"type": "claimed", "mailbox": "mb"}))),
            "release" => self.outbox.push(reply(json!({"type": "released"}))),
            "open" => {
                self.subscribed.insert(from, true);
                for s in &self.stored {
                    self.outbox.push((from, s.to_string()));
                }
            }
            "add" => {
                let msg = json!({"type": "message", "side": m["side_hint"], "phase": m["phase"], "body": m["body"]});
                self.stored.push(msg.clone());
                for (&c, _) in self.subscribed.iter() {
                    self.outbox.push((c, msg.to_string()));
                }
            }
            "close" => {
                self.closes.push(m["mood"].as_str().unwrap().into());
                self.outbox.push(reply(json!({"type": "closed"})));
            }
            _ => {}
        }
    }
}

struct Pair {
    cores: [WormholeCore; 2],
    server: FakeMailbox,
    events: [Vec<WormholeEvent>; 2],
    now: Instant,
}

fn config(versions: Value) -> WormholeConfig {
    let mut c = WormholeConfig::new("appid", "ws://fake/v1");
    c.app_versions = versions;
    c
}

impl Pair {
    fn new() -> Pair {
        let now = Instant::now();
        let mut cores = [
            WormholeCore::new(config(json!({"who": "a"})), "aaaaaaaaaa", 1),
            WormholeCore::new(config(json!({"who": "b"})), "bbbbbbbbbb", 2),
        ];
        for c in &mut cores {
            c.start();
            assert_eq!(c.poll_action(), Some(Action::Connect));
            c.connection_made(now);
        }
        let mut pair = Pair {
            cores,
            server: FakeMailbox::default(),
            events: [vec![], vec![]],
            now,
        };
        pair.run();
        pair
    }

    /// Moves frames until nothing is in flight.
    fn run(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for i in 0..2 {
                while let Some(a) = self.cores[i].poll_action() {
                    if let Action::Send(f) = a {
                        // the fake server learns the sender's side from the connection
                        let mut v: Value = serde_json::from_str(&f).unwrap();
                        v["side_hint"] = json!(self.cores[i].side());
                        self.server.handle(i, &v.to_string());
                        moved = true;
                    }
                }
                while let Some(e) = self.cores[i].poll_event() {
                    self.events[i].push(e);
                }
            }
            for (to, frame) in std::mem::take(&mut self.server.outbox) {
                self.cores[to].received(self.now, &frame);
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("frames kept moving");
    }

    fn connect_with_codes(&mut self, second_code: Option<&str>) -> String {
        self.cores[0].allocate_code(2, self.now);
        self.run();
        let code = self.events[0]
            .iter()
            .find_map(|e| match e {
                WormholeEvent::CodeAllocated(c) => Some(c.clone()),
                _ => None,
            })
            .expect("code allocated");
        self.cores[1]
            .set_code(second_code.unwrap_or(&code), self.now)
            .unwrap();
        self.run();
        code
    }

    fn take(&mut self, i: usize) -> Vec<WormholeEvent> {
        std::mem::take(&mut self.events[i])
    }
}

fn messages(events: &[WormholeEvent]) -> Vec<Vec<u8>> {
    events
        .iter()
        .filter_map(|e| match e {
            WormholeEvent::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

fn verifier(events: &[WormholeEvent]) -> Option<key::Key> {
    events.iter().find_map(|e| match e {
        WormholeEvent::KeyConfirmed { verifier, .. } => Some(*verifier),
        _ => None,
    })
}

#[test]
fn key_exchange_versions_messages_and_happy_close() {
    let mut p = Pair::new();
    // sent before any key exists: queued, then delivered in order
    p.cores[0].send_message(b"early".to_vec());
    let code = p.connect_with_codes(None);
    assert!(
        code.starts_with("4-") && code.split('-').count() == 3,
        "{code}"
    );
    for i in 0..3u8 {
        p.cores[0].send_message(vec![b'a', i]);
        p.cores[1].send_message(vec![b'b', i]);
    }
    p.cores[1].send_dilate(b"please".to_vec());
    p.run();
    let (a, b) = (p.take(0), p.take(1));
    assert_eq!(verifier(&a), verifier(&b));
    assert!(verifier(&a).is_some());
    assert!(a.contains(&WormholeEvent::PeerVersions {
        app_versions: json!({"who": "b"}),
        can_dilate: vec!["ged".into()]
    }));
    assert!(b.contains(&WormholeEvent::PeerVersions {
        app_versions: json!({"who": "a"}),
        can_dilate: vec!["ged".into()]
    }));
    assert_eq!(
        messages(&a),
        vec![b"b\x00".to_vec(), b"b\x01".to_vec(), b"b\x02".to_vec()]
    );
    assert_eq!(
        messages(&b),
        vec![
            b"early".to_vec(),
            b"a\x00".to_vec(),
            b"a\x01".to_vec(),
            b"a\x02".to_vec()
        ]
    );
    assert!(a.contains(&WormholeEvent::Dilate(b"please".to_vec())));

    let now = p.now;
    p.cores[0].close(now);
    p.cores[1].close(now);
    p.run();
    assert_eq!(
        p.take(0).last(),
        Some(&WormholeEvent::Closed(Ok(Mood::Happy)))
    );
    assert_eq!(
        p.take(1).last(),
        Some(&WormholeEvent::Closed(Ok(Mood::Happy)))
    );
    assert_eq!(p.server.closes, ["happy", "happy"]);
    assert!(p.cores.iter().all(WormholeCore::is_done));
}

#[test]
fn wrong_code_makes_both_sides_scary() {
    let mut p = Pair::new();
    p.connect_with_codes(Some("4-wrong-words"));
    for i in 0..2 {
        let events = p.take(i);
        assert!(verifier(&events).is_none());
        assert_eq!(
            events.last(),
            Some(&WormholeEvent::Closed(Err(WormholeError::WrongCode))),
            "side {i}"
        );
    }
    assert_eq!(p.server.closes, ["scary", "scary"]);
}

#[test]
fn lonely_close_before_the_peer_came() {
    let mut p = Pair::new();
    p.cores[0].allocate_code(2, p.now);
    p.run();
    let now = p.now;
    p.cores[0].close(now);
    p.run();
    assert_eq!(
        p.take(0).last(),
        Some(&WormholeEvent::Closed(Ok(Mood::Lonely)))
    );
    assert_eq!(p.server.closes, ["lonely"]);
}

#[test]
fn out_of_order_and_duplicate_phases_are_delivered_in_order_once() {
    let mut p = Pair::new();
    p.connect_with_codes(None);
    p.take(1);
    let key = *p.cores[0].key().unwrap();
    let inject = |core: &mut WormholeCore, phase: &str, text: &[u8], now| {
        let body = key::encrypt(&key::derive_phase_key(&key, "aaaaaaaaaa", phase), text);
        let frame = json!({"type": "message", "side": "aaaaaaaaaa", "phase": phase, "body": hex::encode(body)});
        core.received(now, &frame.to_string());
    };
    let now = p.now;
    inject(&mut p.cores[1], "2", b"two", now);
    inject(&mut p.cores[1], "dilate-1", b"d1", now);
    inject(&mut p.cores[1], "0", b"zero", now);
    inject(&mut p.cores[1], "1", b"one", now);
    inject(&mut p.cores[1], "1", b"one again", now);
    inject(&mut p.cores[1], "dilate-0", b"d0", now);
    inject(&mut p.cores[1], "something-else", b"?", now);
    let events: Vec<_> = std::iter::from_fn(|| p.cores[1].poll_event()).collect();
    assert_eq!(
        events,
        vec![
            WormholeEvent::Message(b"zero".to_vec()),
            WormholeEvent::Message(b"one".to_vec()),
            WormholeEvent::Message(b"two".to_vec()),
            WormholeEvent::Dilate(b"d0".to_vec()),
            WormholeEvent::Dilate(b"d1".to_vec()),
        ]
    );
}

#[test]
fn bad_pake_body_is_scary() {
    let mut p = Pair::new();
    p.cores[1].set_code("4-purple-sausages", p.now).unwrap();
    p.run();
    let frame = json!({"type": "message", "side": "cccccccccc", "phase": "pake", "body": hex::encode(b"{\"nope\": 1}")});
    let now = p.now;
    p.cores[1].received(now, &frame.to_string());
    p.run();
    let last = p.take(1).pop();
    assert!(
        matches!(
            last,
            Some(WormholeEvent::Closed(Err(WormholeError::Pake(_))))
        ),
        "{last:?}"
    );
    assert_eq!(p.server.closes, ["scary"]);
}

#[test]
fn close_gives_up_after_the_timeout_when_the_server_is_gone() {
    let mut p = Pair::new();
    p.connect_with_codes(None);
    let t = p.now;
    p.cores[0].connection_lost(t);
    p.cores[0].close(t);
    assert!(!p.cores[0].is_done());
    let deadline = p.cores[0].poll_timeout().unwrap();
    assert!(deadline <= t + Duration::from_secs(10));
    p.cores[0].handle_timeout(t + Duration::from_secs(10));
    assert!(p.cores[0].is_done());
    let events: Vec<_> = std::iter::from_fn(|| p.cores[0].poll_event()).collect();
    assert_eq!(events.last(), Some(&WormholeEvent::Closed(Ok(Mood::Happy))));
}

#[test]
fn first_connection_failure_names_the_url() {
    let mut core = WormholeCore::new(config(json!({})), "aaaaaaaaaa", 1);
    core.start();
    core.poll_action();
    core.connection_failed(Instant::now(), "Connection refused");
    let events: Vec<_> = std::iter::from_fn(|| core.poll_event()).collect();
    let Some(WormholeEvent::Closed(Err(e))) = events.last() else {
        panic!("{events:?}")
    };
    assert!(
        e.to_string().contains("ws://fake/v1") && e.to_string().contains("Connection refused"),
        "{e}"
    );
}

#[test]
fn malformed_codes_are_rejected_before_anything_is_sent() {
    let mut core = WormholeCore::new(config(json!({})), "aaaaaaaaaa", 1);
    core.start();
    core.poll_action();
    core.connection_made(Instant::now());
    core.poll_action();
    for bad in ["", "four-words", "4 purple", "4"] {
        assert!(
            matches!(
                core.set_code(bad, Instant::now()),
                Err(WormholeError::Code(_))
            ),
            "{bad:?}"
        );
    }
    assert_eq!(core.poll_action(), None);
}
