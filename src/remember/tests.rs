//! The agreement between two simulated peers (messages carried by hand, files kept in memory),
//! and the store on a temporary folder.

use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use super::*;

fn meeting() -> Meeting {
    Meeting {
        mailbox_url: "ws://127.0.0.1:1/v1".into(),
        appid: "test/app".into(),
        relay: Some("tcp:127.0.0.1:2".into()),
    }
}

fn versions(pending: bool) -> Value {
    let mut v = json!({"fowl": {"features": ["core-v1"]}});
    advertise(&mut v, pending);
    v
}

/// One simulated side: its agreement, its file as last saved, what it reported.
struct Side {
    r: Remembering,
    saved: Option<PeerFile>,
    reports: Vec<RememberReport>,
    outbox: Vec<RememberMessage>,
}

impl Side {
    fn new(r: Remembering) -> Side {
        Side {
            r,
            saved: None,
            reports: Vec::new(),
            outbox: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(a) = self.r.poll_action() {
            match a {
                RememberAction::Save(f) => self.saved = Some(f),
                RememberAction::Send(m) => self.outbox.push(m),
                RememberAction::Report(r) => self.reports.push(r),
            }
        }
    }
}

/// Delivers every message queued on either side until none is left.
fn exchange(a: &mut Side, b: &mut Side) {
    for _ in 0..10 {
        a.drain();
        b.drain();
        if a.outbox.is_empty() && b.outbox.is_empty() {
            return;
        }
        for m in std::mem::take(&mut a.outbox) {
            b.r.handle_message(m, 100);
        }
        for m in std::mem::take(&mut b.outbox) {
            a.r.handle_message(m, 100);
        }
    }
    panic!("the agreement does not settle");
}

fn paired() -> (Side, Side, Secret) {
    let session = Secret::from_session_key(&[1; 32]);
    let mut a = Side::new(Remembering::pairing(meeting()));
    let mut b = Side::new(Remembering::pairing(meeting()));
    a.r.handle_request("bob", 1);
    a.r.handle_keyed(session, &versions(false), 1);
    b.r.handle_keyed(session, &versions(false), 1);
    exchange(&mut a, &mut b);
    assert_eq!(b.reports, vec![RememberReport::PeerAsked]);
    assert!(a.saved.is_none() && b.saved.is_none(), "one side asked");
    b.r.handle_request("alice", 2);
    exchange(&mut a, &mut b);
    (a, b, session)
}

#[test]
fn both_asking_stores_one_secret_on_both_sides_confirmed() {
    let (a, b, session) = paired();
    let (fa, fb) = (a.saved.unwrap(), b.saved.unwrap());
    assert_eq!(fa.name, "bob");
    assert_eq!(fb.name, "alice");
    let g = Generation {
        number: 1,
        secret: session,
    };
    assert_eq!((fa.current, fa.next), (Some(g), None));
    assert_eq!((fb.current, fb.next), (Some(g), None));
    assert_eq!(fa.relay.as_deref(), Some("tcp:127.0.0.1:2"));
    assert!(a.reports.contains(&RememberReport::Remembered {
        name: "bob".into(),
        generation: 1
    }));
}

#[test]
fn nothing_is_stored_when_the_peer_cannot_or_does_not_ask() {
    let mut a = Side::new(Remembering::pairing(meeting()));
    a.r.handle_request("old", 1);
    a.r.handle_keyed(Secret::from_bytes([2; 32]), &json!({"fowl": {}}), 1);
    a.r.handle_close();
    a.drain();
    assert!(a.saved.is_none() && a.outbox.is_empty());
    assert_eq!(
        a.reports[0],
        RememberReport::PeerCannot { name: "old".into() }
    );
    assert!(
        matches!(&a.reports[1], RememberReport::NotRemembered { reason, .. } if reason.contains("cannot"))
    );

    let mut a = Side::new(Remembering::pairing(meeting()));
    a.r.handle_keyed(Secret::from_bytes([2; 32]), &versions(false), 1);
    a.r.handle_request("shy", 1);
    a.r.handle_close();
    a.drain();
    assert!(a.saved.is_none());
    assert_eq!(a.outbox, vec![RememberMessage::Offer]);
    assert!(
        matches!(&a.reports[0], RememberReport::NotRemembered { reason, .. } if reason.contains("did not ask"))
    );
}

/// Reconnects `a` and `b` at their meeting points the way the daemon picks one: the newest
/// generation both hold.
fn meet(fa: &PeerFile, fb: &PeerFile) -> Generation {
    let common: Vec<Generation> = fa
        .meeting_points()
        .into_iter()
        .filter(|g| fb.meeting_points().contains(g))
        .collect();
    *common.first().expect("the two files share a generation")
}

fn reconnect(
    fa: &PeerFile,
    fb: &PeerFile,
    key: u8,
    deliver_to_b: bool,
    deliver_to_a: bool,
) -> (PeerFile, PeerFile) {
    let used = meet(fa, fb);
    let mut a = Side::new(Remembering::reconnect(fa.clone(), used));
    let mut b = Side::new(Remembering::reconnect(fb.clone(), used));
    let next = Secret::from_session_key(&[key; 32]);
    a.r.handle_keyed(next, &versions(fa.pending()), 5);
    b.r.handle_keyed(next, &versions(fb.pending()), 5);
    a.drain();
    b.drain();
    if deliver_to_b {
        for m in std::mem::take(&mut a.outbox) {
            b.r.handle_message(m, 6);
        }
    }
    if deliver_to_a {
        for m in std::mem::take(&mut b.outbox) {
            a.r.handle_message(m, 6);
        }
    }
    a.drain();
    b.drain();
    (a.saved.unwrap(), b.saved.unwrap())
}

#[test]
fn every_reconnection_rotates_and_a_lost_confirmation_still_meets() {
    let (a, b, _) = paired();
    let (fa, fb) = (a.saved.unwrap(), b.saved.unwrap());
    let first = fa.current.unwrap().secret.rendezvous();
    let (fa, fb) = reconnect(&fa, &fb, 3, true, true);
    assert_eq!(fa.current.unwrap().number, 2);
    assert_eq!(fa.current, fb.current);
    assert!(!fa.pending() && !fb.pending());
    assert_eq!(fa.last_used, Some(5));
    let second = fa.current.unwrap().secret.rendezvous();
    assert_ne!(first.mailbox, second.mailbox, "the mailbox moves");
    assert_ne!(first.password, second.password);

    // b's `stored` never reaches a (a crash, a cut): a keeps 2 and 3, b promoted 3
    let (fa2, fb2) = reconnect(&fa, &fb, 4, true, false);
    assert!(fa2.pending() && !fb2.pending());
    assert_eq!(meet(&fa2, &fb2).number, 3);
    // neither hears the other: both keep both and meet at the newest
    let (fa3, fb3) = reconnect(&fa, &fb, 4, false, false);
    assert!(fa3.pending() && fb3.pending());
    assert_eq!(meet(&fa3, &fb3).number, 3);
    // b crashed before storing: a holds 2 and 3, b only 2: they meet at 2
    assert_eq!(meet(&fa3, &fb).number, 2);
    // and from there the next reconnection settles both
    let (fa4, fb4) = reconnect(&fa2, &fb2, 5, true, true);
    assert_eq!(fa4.current.unwrap().number, 4);
    assert_eq!(fa4.current, fb4.current);
}

#[test]
fn the_store_writes_0600_refuses_edits_open_modes_and_unknown_names() {
    let dir = std::env::temp_dir().join(format!("fowl-remember-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = PeerStore::at(&dir);
    let (a, _, _) = paired();
    let file = a.saved.unwrap();
    store.save(&file).unwrap();
    let path = store.path("bob");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let loaded = store.load("bob").unwrap();
    assert_eq!(loaded.current, file.current);
    assert_eq!(store.list().unwrap().len(), 1);

    let text = std::fs::read_to_string(&path).unwrap();
    let secret = hex::encode([9u8; 32]);
    let old = serde_json::to_value(file.current.unwrap().secret).unwrap();
    std::fs::write(&path, text.replace(old.as_str().unwrap(), &secret)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        store.load("bob"),
        Err(RememberError::Damaged { .. })
    ));
    std::fs::write(&path, "{").unwrap();
    assert!(matches!(
        store.load("bob"),
        Err(RememberError::Damaged { .. })
    ));
    store.save(&file).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        store.load("bob"),
        Err(RememberError::TooOpen { .. })
    ));

    store.forget("bob").unwrap();
    assert!(matches!(store.load("bob"), Err(RememberError::Unknown(_))));
    assert!(matches!(
        store.forget("bob"),
        Err(RememberError::Unknown(_))
    ));
    for bad in ["", "../x", ".hidden", "a/b", &"x".repeat(65)] {
        assert!(
            matches!(store.load(bad), Err(RememberError::BadName(_))),
            "{bad:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn messages_and_versions_round_trip() {
    for m in [RememberMessage::Offer, RememberMessage::Stored(7)] {
        assert_eq!(RememberMessage::parse(&m.to_bytes()), Some(m));
    }
    assert_eq!(RememberMessage::parse(br#"{"closing": 0}"#), None);
    assert_eq!(RememberMessage::parse(b"not json"), None);
    assert!(peer_can_remember(&versions(false)) && !peer_pending(&versions(false)));
    assert!(peer_pending(&versions(true)));
    // the newest meeting point is kept; an older one only if the peer does not wait at both
    assert!(keep_meeting(0, &versions(true)) && keep_meeting(0, &versions(false)));
    assert!(keep_meeting(1, &versions(false)));
    assert!(!keep_meeting(1, &versions(true)));
    assert!(!peer_can_remember(
        &json!({"fowl": {"features": ["core-v1"]}})
    ));
}
