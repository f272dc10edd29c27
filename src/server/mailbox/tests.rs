//! The mailbox server core, deterministically: exact error strings and message flows.

use serde_json::{json, Value};

use super::{MailboxConfig, MailboxState};

struct Client<'a> {
    server: &'a mut MailboxState,
    id: u64,
}

fn drain(server: &mut MailboxState) -> Vec<(u64, Value)> {
    std::iter::from_fn(|| server.poll_transmit())
        .map(|(to, f)| (to, serde_json::from_str(&f).unwrap()))
        .collect()
}

impl Client<'_> {
    /// Sends `msg` and returns what this connection got, acks left out.
    fn send(&mut self, msg: Value) -> Vec<Value> {
        self.server.received(self.id, &msg.to_string(), 1.0);
        drain(self.server)
            .into_iter()
            .filter(|(to, v)| *to == self.id && v["type"] != "ack")
            .map(|(_, v)| v)
            .collect()
    }

    fn error(&mut self, msg: Value) -> String {
        let replies = self.send(msg);
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert_eq!(replies[0]["type"], "error");
        replies[0]["error"].as_str().unwrap().to_string()
    }
}

fn connect(server: &mut MailboxState, id: u64) -> Vec<Value> {
    server.connected(id, 0.0);
    drain(server).into_iter().map(|(_, v)| v).collect()
}

fn bound(server: &mut MailboxState, id: u64, side: &str) {
    connect(server, id);
    Client { server, id }.send(json!({"type": "bind", "appid": "app", "side": side}));
}

#[test]
fn welcome_carries_motd_and_signal_error() {
    let mut s = MailboxState::new(MailboxConfig {
        motd: Some("hi".into()),
        signal_error: Some("down".into()),
        ..Default::default()
    });
    let w = connect(&mut s, 1);
    assert_eq!(w[0]["type"], "welcome");
    assert_eq!(w[0]["welcome"], json!({"motd": "hi", "error": "down"}));
    assert!(w[0]["server_tx"].is_number());
}

#[test]
fn every_message_is_acked_first_with_its_id() {
    let mut s = MailboxState::new(MailboxConfig::default());
    connect(&mut s, 1);
    s.received(1, r#"{"type": "nonsense", "id": "0a3e"}"#, 1.0);
    let out = drain(&mut s);
    assert_eq!(out[0].1["type"], "ack");
    assert_eq!(out[0].1["id"], "0a3e");
    assert_eq!(out[1].1["error"], "must bind first");
    assert_eq!(out[1].1["orig"]["id"], "0a3e");
}

#[test]
fn reference_error_strings() {
    let mut s = MailboxState::new(MailboxConfig::default());
    connect(&mut s, 1);
    let mut c = Client {
        server: &mut s,
        id: 1,
    };
    assert_eq!(c.error(json!({"no": "type"})), "missing 'type'");
    assert_eq!(c.error(json!({"type": "list"})), "must bind first");
    assert_eq!(c.error(json!({"type": "ping"})), "ping requires 'ping'");
    assert_eq!(c.send(json!({"type": "ping", "ping": 5}))[0]["pong"], 5);
    assert_eq!(
        c.error(json!({"type": "bind", "side": "s"})),
        "bind requires 'appid'"
    );
    assert_eq!(
        c.error(json!({"type": "bind", "appid": "a"})),
        "bind requires 'side'"
    );
    assert!(c
        .send(json!({"type": "bind", "appid": "app", "side": "s1"}))
        .is_empty());
    assert_eq!(
        c.error(json!({"type": "bind", "appid": "app", "side": "s1"})),
        "already bound"
    );
    assert_eq!(c.error(json!({"type": "frobnicate"})), "unknown type");
    assert_eq!(
        c.error(json!({"type": "claim"})),
        "claim requires 'nameplate'"
    );
    assert_eq!(
        c.error(json!({"type": "release"})),
        "release without nameplate must follow claim"
    );
    assert_eq!(c.error(json!({"type": "open"})), "open requires 'mailbox'");
    assert_eq!(
        c.error(json!({"type": "add", "phase": "p", "body": ""})),
        "must open mailbox before adding"
    );
    assert_eq!(
        c.error(json!({"type": "close"})),
        "close without mailbox must follow open"
    );
    assert_eq!(c.send(json!({"type": "allocate"}))[0]["type"], "allocated");
    assert_eq!(
        c.error(json!({"type": "allocate"})),
        "you already allocated one, don't be greedy"
    );
    let mailbox = c.send(json!({"type": "claim", "nameplate": "7"}))[0]["mailbox"].clone();
    assert_eq!(
        c.error(json!({"type": "claim", "nameplate": "7"})),
        "only one claim per connection"
    );
    assert_eq!(
        c.error(json!({"type": "release", "nameplate": "8"})),
        "release and claim must use same nameplate"
    );
    assert_eq!(c.send(json!({"type": "release"}))[0]["type"], "released");
    assert_eq!(
        c.error(json!({"type": "release"})),
        "only one release per connection"
    );
    assert!(c
        .send(json!({"type": "open", "mailbox": mailbox}))
        .is_empty());
    assert_eq!(
        c.error(json!({"type": "open", "mailbox": mailbox})),
        "only one open per connection"
    );
    assert_eq!(
        c.error(json!({"type": "add", "body": ""})),
        "missing 'phase'"
    );
    assert_eq!(
        c.error(json!({"type": "add", "phase": "p"})),
        "missing 'body'"
    );
    assert_eq!(
        c.error(json!({"type": "close", "mailbox": "other"})),
        "open and close must use same mailbox"
    );
    assert_eq!(
        c.send(json!({"type": "close", "mood": "happy"}))[0]["type"],
        "closed"
    );
    assert_eq!(
        c.error(json!({"type": "close"})),
        "only one close per connection"
    );
}

#[test]
fn allocation_takes_the_shortest_free_ids_first() {
    let mut s = MailboxState::new(MailboxConfig::default());
    let mut seen = Vec::new();
    for id in 0..12 {
        bound(&mut s, id, &format!("side{id}"));
        let r = Client { server: &mut s, id }.send(json!({"type": "allocate"}));
        seen.push(r[0]["nameplate"].as_str().unwrap().to_string());
    }
    let mut one_digit: Vec<_> = seen[..9].to_vec();
    one_digit.sort();
    assert_eq!(one_digit, ["1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    assert!(seen[9..].iter().all(|n| n.len() == 2), "{seen:?}");
    bound(&mut s, 99, "lister");
    let listed = Client {
        server: &mut s,
        id: 99,
    }
    .send(json!({"type": "list"}));
    assert_eq!(listed[0]["nameplates"].as_array().unwrap().len(), 12);
}

#[test]
fn crowded_reclaimed_echo_and_replay() {
    let mut s = MailboxState::new(MailboxConfig::default());
    for (id, side) in [(1, "a"), (2, "b"), (3, "c")] {
        bound(&mut s, id, side);
    }
    let mb = Client {
        server: &mut s,
        id: 1,
    }
    .send(json!({"type": "claim", "nameplate": "4"}))[0]["mailbox"]
        .clone();
    let mb2 = Client {
        server: &mut s,
        id: 2,
    }
    .send(json!({"type": "claim", "nameplate": "4"}))[0]["mailbox"]
        .clone();
    assert_eq!(mb, mb2);
    assert_eq!(
        Client {
            server: &mut s,
            id: 3
        }
        .error(json!({"type": "claim", "nameplate": "4"})),
        "crowded"
    );
    Client {
        server: &mut s,
        id: 1,
    }
    .send(json!({"type": "open", "mailbox": mb}));
    // the sender's own message comes back to it (echo), and to the other listener
    s.received(
        1,
        &json!({"type": "add", "phase": "pake", "body": "7b7d", "id": "x"}).to_string(),
        2.0,
    );
    let out = drain(&mut s);
    let msg = out
        .iter()
        .find(|(to, v)| *to == 1 && v["type"] == "message")
        .unwrap();
    assert_eq!(
        (
            msg.1["side"].as_str(),
            msg.1["phase"].as_str(),
            msg.1["body"].as_str()
        ),
        (Some("a"), Some("pake"), Some("7b7d"))
    );
    // opening later replays the mailbox
    let replay = Client {
        server: &mut s,
        id: 2,
    }
    .send(json!({"type": "open", "mailbox": mb}));
    assert_eq!(replay.len(), 1);
    assert_eq!(replay[0]["phase"], "pake");
    // a third side cannot open the mailbox either
    assert_eq!(
        Client {
            server: &mut s,
            id: 3
        }
        .error(json!({"type": "open", "mailbox": mb})),
        "crowded"
    );
    // a side that released cannot claim again, on a new connection
    Client {
        server: &mut s,
        id: 1,
    }
    .send(json!({"type": "release"}));
    bound(&mut s, 4, "a");
    assert_eq!(
        Client {
            server: &mut s,
            id: 4
        }
        .error(json!({"type": "claim", "nameplate": "4"})),
        "reclaimed"
    );
    // reconnect: same side re-opens on a new connection and gets the replay again
    s.disconnected(2);
    bound(&mut s, 5, "b");
    let replay = Client {
        server: &mut s,
        id: 5,
    }
    .send(json!({"type": "open", "mailbox": mb}));
    assert_eq!(replay.len(), 1);
}

#[test]
fn hostile_frames_do_not_break_the_server() {
    let mut s = MailboxState::new(MailboxConfig::default());
    connect(&mut s, 1);
    for junk in [
        "",
        "x",
        "[]",
        "null",
        "{\"type\": 5}",
        "{\"type\": \"claim\", \"nameplate\": \"../x\"}",
    ] {
        s.received(1, junk, 1.0);
    }
    s.received(7, "{\"type\": \"list\"}", 1.0); // a connection the server never saw
    drain(&mut s);
}

#[test]
fn unlistened_mailboxes_are_pruned_and_listened_ones_live_on() {
    let mut s = MailboxState::new(MailboxConfig {
        mailbox_expiry: 100.0,
        ..Default::default()
    });
    // connection 1 claims nameplate 5 and goes away; connection 2 opens a mailbox and stays
    bound(&mut s, 1, "s1");
    s.received(1, r#"{"type": "claim", "nameplate": "5"}"#, 10.0);
    s.disconnected(1);
    bound(&mut s, 2, "s2");
    s.received(2, r#"{"type": "open", "mailbox": "kept"}"#, 10.0);
    drain(&mut s);
    assert_eq!(s.mailboxes(), 2);
    assert_eq!(s.prune(109.0), 0, "not expired yet");
    assert_eq!(s.prune(111.0), 1, "the claimed mailbox nobody listens to");
    assert_eq!(s.prune(10_000.0), 0, "a live listener keeps its mailbox");
    // the nameplate went with its mailbox: it is free for a new claim by anyone
    bound(&mut s, 3, "s3");
    s.received(3, r#"{"type": "list"}"#, 10_000.0);
    let out = drain(&mut s);
    assert_eq!(out.last().unwrap().1["nameplates"], json!([]));
    // once its listener leaves, the kept mailbox expires after the expiry time
    s.disconnected(2);
    assert_eq!(s.prune(10_050.0), 0);
    assert_eq!(s.prune(10_101.0), 1);
    assert_eq!(s.mailboxes(), 0);
}

#[test]
fn a_full_mailbox_refuses_more_messages() {
    // what is stored counts whole (side, phase, id and time too): about 75 bytes a message here
    let mut s = MailboxState::new(MailboxConfig {
        max_mailbox_bytes: 100,
        ..Default::default()
    });
    bound(&mut s, 1, "s1");
    let mut c = Client {
        server: &mut s,
        id: 1,
    };
    c.send(json!({"type": "open", "mailbox": "m"}));
    let echoed = c.send(json!({"type": "add", "phase": "1", "body": "0011223344"}));
    assert_eq!(echoed[0]["type"], "message");
    assert_eq!(
        c.error(json!({"type": "add", "phase": "2", "body": "55"})),
        "mailbox full"
    );
}

#[test]
fn phases_count_against_the_mailbox_size_not_only_bodies() {
    let mut s = MailboxState::new(MailboxConfig {
        max_mailbox_bytes: 1000,
        ..Default::default()
    });
    bound(&mut s, 1, "s1");
    let mut c = Client {
        server: &mut s,
        id: 1,
    };
    c.send(json!({"type": "open", "mailbox": "m"}));
    let phase = "p".repeat(600);
    let echoed = c.send(json!({"type": "add", "phase": phase, "body": ""}));
    assert_eq!(echoed[0]["type"], "message");
    assert_eq!(
        c.error(json!({"type": "add", "phase": phase, "body": ""})),
        "mailbox full",
        "empty bodies, yet 1.2 KB stored"
    );
}

#[test]
fn long_strings_and_too_many_mailboxes_are_refused() {
    let mut s = MailboxState::new(MailboxConfig {
        max_mailboxes: 2,
        max_string: 64,
        ..Default::default()
    });
    connect(&mut s, 1);
    let mut c = Client {
        server: &mut s,
        id: 1,
    };
    let long = "a".repeat(65);
    assert_eq!(
        c.error(json!({"type": "bind", "appid": long, "side": "s"})),
        "string too long"
    );
    c.send(json!({"type": "bind", "appid": "app", "side": "s1"}));
    assert_eq!(
        c.error(json!({"type": "open", "mailbox": long})),
        "string too long"
    );
    c.send(json!({"type": "open", "mailbox": "m1"}));
    for (id, mailbox) in [(2, "m2"), (3, "m3")] {
        bound(c.server, id, "s2");
        let mut other = Client {
            server: c.server,
            id,
        };
        let replies = other.send(json!({"type": "open", "mailbox": mailbox}));
        if mailbox == "m3" {
            assert_eq!(replies[0]["error"], "too many mailboxes");
        } else {
            assert!(replies.is_empty(), "{replies:?}");
        }
    }
    // an existing mailbox can still be opened
    bound(c.server, 4, "s3");
    let mut joiner = Client {
        server: c.server,
        id: 4,
    };
    assert!(joiner
        .send(json!({"type": "open", "mailbox": "m2"}))
        .is_empty());
}

#[test]
fn a_listened_mailbox_without_messages_expires_and_its_listeners_are_disconnected() {
    let mut s = MailboxState::new(MailboxConfig {
        mailbox_expiry: 100.0,
        listened_expiry: 1000.0,
        ..Default::default()
    });
    bound(&mut s, 1, "s1");
    s.received(1, r#"{"type": "open", "mailbox": "m"}"#, 10.0);
    s.received(1, r#"{"type": "add", "phase": "1", "body": "00"}"#, 500.0);
    drain(&mut s);
    assert_eq!(s.prune(1400.0), 0, "a message 900 s ago: kept");
    assert!(s.take_evicted().is_empty());
    assert!(s.stored_bytes() > 0);
    assert_eq!(s.prune(1501.0), 1, "no message for 1001 s: deleted");
    assert_eq!(
        s.take_evicted(),
        vec![1],
        "its listener is to be disconnected"
    );
    assert_eq!(s.stored_bytes(), 0, "its bytes are freed");
    // the client reconnects and opens the mailbox again: a fresh, empty one
    s.disconnected(1);
    bound(&mut s, 2, "s1");
    s.received(2, r#"{"type": "open", "mailbox": "m"}"#, 1502.0);
    let replay = drain(&mut s);
    assert!(
        replay.iter().all(|(_, v)| v["type"] != "message"),
        "{replay:?}"
    );
}

#[test]
fn stored_bytes_of_all_mailboxes_together_are_capped() {
    let mut s = MailboxState::new(MailboxConfig {
        max_stored_bytes: 1000,
        ..Default::default()
    });
    let body = "00".repeat(200);
    for (id, mailbox) in [(1, "m1"), (2, "m2"), (3, "m3")] {
        bound(&mut s, id, "s1");
        let mut c = Client { server: &mut s, id };
        c.send(json!({"type": "open", "mailbox": mailbox}));
        let replies = c.send(json!({"type": "add", "phase": "1", "body": body}));
        if id < 3 {
            assert_eq!(replies[0]["type"], "message", "{replies:?}");
        } else {
            assert_eq!(replies[0]["error"], "server full", "{replies:?}");
        }
    }
    // a closed mailbox gives its bytes back
    let mut c = Client {
        server: &mut s,
        id: 1,
    };
    c.send(json!({"type": "close", "mailbox": "m1"}));
    let mut c = Client {
        server: &mut s,
        id: 3,
    };
    let replies = c.send(json!({"type": "add", "phase": "1", "body": body}));
    assert_eq!(replies[0]["type"], "message", "{replies:?}");
}

fn restarted(path: &std::path::Path, now: f64) -> (MailboxState, super::Store) {
    let store = super::Store::open(path).unwrap();
    let state = MailboxState::restore(MailboxConfig::default(), store.load().unwrap(), now);
    (state, store)
}

#[test]
fn a_restarted_server_has_every_nameplate_mailbox_and_message_of_its_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailbox.sqlite");
    let (mut s, mut store) = restarted(&path, 1.0);
    bound(&mut s, 1, "s1");
    s.received(1, r#"{"type": "claim", "nameplate": "4"}"#, 1.0);
    let mailbox = drain(&mut s)
        .into_iter()
        .find_map(|(_, v)| v["mailbox"].as_str().map(str::to_owned))
        .unwrap();
    s.received(
        1,
        &json!({"type": "open", "mailbox": mailbox}).to_string(),
        1.0,
    );
    s.received(1, r#"{"type": "add", "phase": "pake", "body": "aa"}"#, 2.0);
    s.received(
        1,
        r#"{"type": "add", "phase": "version", "body": "bb"}"#,
        3.0,
    );
    store.apply(s.take_changes()).unwrap();
    drop((s, store)); // the server stops (killed: nothing more is written)

    let (mut s, mut store) = restarted(&path, 10.0);
    // the peer arrives with the code: the nameplate leads to the same mailbox, whose messages
    // are all there, once each
    bound(&mut s, 7, "s2");
    s.received(7, r#"{"type": "claim", "nameplate": "4"}"#, 10.0);
    let claimed = drain(&mut s);
    assert!(
        claimed
            .iter()
            .any(|(_, v)| v["mailbox"] == mailbox.as_str()),
        "{claimed:?}"
    );
    s.received(
        7,
        &json!({"type": "open", "mailbox": mailbox}).to_string(),
        10.0,
    );
    let phases: Vec<String> = drain(&mut s)
        .into_iter()
        .filter(|(_, v)| v["type"] == "message")
        .map(|(_, v)| v["phase"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(phases, ["pake", "version"]);
    // the first side comes back too; a third is still one too many
    bound(&mut s, 8, "s1");
    s.received(8, r#"{"type": "claim", "nameplate": "4"}"#, 11.0);
    let out = drain(&mut s);
    assert!(out.iter().any(|(to, v)| *to == 8 && v["type"] == "claimed"));
    bound(&mut s, 9, "s3");
    s.received(9, r#"{"type": "claim", "nameplate": "4"}"#, 11.0);
    let out = drain(&mut s);
    assert!(out
        .iter()
        .any(|(to, v)| *to == 9 && v["error"] == "crowded"));
    // both release and close: after another restart nothing is left
    for id in [7, 8] {
        s.received(id, r#"{"type": "release"}"#, 12.0);
    }
    s.received(
        8,
        &json!({"type": "open", "mailbox": mailbox}).to_string(),
        12.0,
    );
    for id in [7, 8] {
        s.received(
            id,
            &json!({"type": "close", "mailbox": mailbox}).to_string(),
            12.0,
        );
    }
    store.apply(s.take_changes()).unwrap();
    drop((s, store));
    let store = super::Store::open(&path).unwrap();
    assert_eq!(store.load().unwrap(), super::Snapshot::default());
}

#[test]
fn finished_sessions_go_to_the_usage_record_with_their_moods_and_age_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailbox.sqlite");
    let (mut s, mut store) = restarted(&path, 100.0);
    // connections `ids` (sides s1 and s2) open `mailbox` at `opened` and close it with `moods`
    let session =
        |s: &mut MailboxState, ids: [u64; 2], mailbox: &str, opened, moods: [&str; 2], closed| {
            for (id, side) in ids.into_iter().zip(["s1", "s2"]) {
                bound(s, id, side);
                let open = json!({"type": "open", "mailbox": mailbox});
                s.received(id, &open.to_string(), opened);
            }
            for (id, mood) in ids.into_iter().zip(moods) {
                let close = json!({"type": "close", "mailbox": mailbox, "mood": mood});
                s.received(id, &close.to_string(), closed);
            }
        };
    // a session both sides close happily, 30 s after it started
    session(&mut s, [1, 2], "m1", 100.0, ["happy", "happy"], 130.0);
    // one where a side was scared (a wrong code), and one nobody closed: pruned
    session(&mut s, [3, 4], "m2", 200.0, ["happy", "scary"], 201.0);
    bound(&mut s, 5, "s1");
    s.received(5, r#"{"type": "open", "mailbox": "m3"}"#, 300.0);
    s.disconnected(5);
    assert_eq!(s.prune(300.0 + 661.0), 1);
    store.record_usage(s.take_usage()).unwrap();
    let rows = store.usage().unwrap();
    let summary: Vec<(f64, f64, &str, &str)> = rows
        .iter()
        .map(|(app, started, duration, moods, result)| {
            assert_eq!(app, "app");
            (*started, *duration, moods.as_str(), result.as_str())
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (100.0, 30.0, r#"["happy","happy"]"#, "happy"),
            (200.0, 1.0, r#"["happy","scary"]"#, "scary"),
            (300.0, 661.0, "[]", "pruney"),
        ]
    );
    // retention: rows of sessions that started before the cut are forgotten
    assert_eq!(store.forget_usage_before(250.0).unwrap(), 2);
    assert_eq!(store.usage().unwrap().len(), 1);
}
