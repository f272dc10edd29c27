//! Deterministic tests of [`Session`]: two sessions joined by an in-memory "connection" that the
//! test can cut, with explicit time.

use std::time::{Duration, Instant};

use super::*;

const PING: Duration = Duration::from_secs(30);

struct Link {
    l: Session,
    f: Session,
    /// records in flight, (to_leader, record); cutting the link loses them
    wire: Vec<(bool, Record)>,
    log: Vec<(char, Record)>,
}

impl Link {
    fn new(half_close: bool) -> Link {
        Link::at(Instant::now(), half_close)
    }

    fn at(now: Instant, half_close: bool) -> Link {
        let mut l = Session::new(Role::Leader, 1 << 20, PING, half_close);
        let mut f = Session::new(Role::Follower, 1 << 20, PING, half_close);
        l.connection_made(now);
        f.connection_made(now);
        Link {
            l,
            f,
            wire: vec![],
            log: vec![],
        }
    }

    /// Moves records until quiet; with `deliver == false` they are lost in flight.
    fn pump(&mut self) {
        for _ in 0..100 {
            let mut out = Vec::new();
            self.l
                .transmit(usize::MAX, |r| out.push((false, Record::clone(r))));
            self.f
                .transmit(usize::MAX, |r| out.push((true, Record::clone(r))));
            if out.is_empty() && self.wire.is_empty() {
                return;
            }
            self.wire.extend(out);
            for (to_leader, r) in std::mem::take(&mut self.wire) {
                self.log
                    .push((if to_leader { 'F' } else { 'L' }, Record::clone(&r)));
                if to_leader {
                    self.l.received(r)
                } else {
                    self.f.received(r)
                }
            }
        }
        panic!("records kept flowing");
    }

    fn reconnect(&mut self, now: Instant) {
        self.wire.clear();
        self.l.connection_lost();
        self.f.connection_lost();
        self.l.connection_made(now);
        self.f.connection_made(now);
    }
}

/// Events other than `Sent`.
fn events(s: &mut Session) -> Vec<SessionEvent> {
    std::iter::from_fn(|| s.poll_event())
        .filter(|e| !matches!(e, SessionEvent::Sent { .. }))
        .collect()
}

#[test]
fn open_data_and_python_style_close() {
    let mut link = Link::new(false);
    let scid = link.l.open("hello").unwrap();
    assert_eq!(scid, 1);
    link.l.send_data(scid, b"hello\n".to_vec()).unwrap();
    link.pump();
    assert_eq!(
        events(&mut link.f),
        vec![
            SessionEvent::Incoming {
                scid: 1,
                subprotocol: "hello".into()
            },
            SessionEvent::Data {
                scid: 1,
                data: b"hello\n".to_vec()
            },
        ]
    );
    link.f.send_data(1, b"hello\n".to_vec()).unwrap();
    link.pump();
    link.log.clear();
    link.l.close(1).unwrap();
    assert_eq!(
        link.l.send_data(1, b"late".to_vec()),
        Err(SubchannelError::Closed(1))
    );
    link.pump();
    // the reference's example: L: CLOSE(1, seq=2); F: ACK(2), CLOSE(1, seq=1); L: ACK(1)
    assert_eq!(
        link.log,
        vec![
            ('L', Record::Close { scid: 1, seqnum: 2 }),
            ('F', Record::Ack(2)),
            ('F', Record::Close { scid: 1, seqnum: 1 }),
            ('L', Record::Ack(1)),
        ]
    );
    let le = events(&mut link.l);
    assert!(
        le.ends_with(&[
            SessionEvent::Closed { scid: 1 },
            SessionEvent::ReadClosed { scid: 1 }
        ]),
        "{le:?}"
    );
    let fe = events(&mut link.f);
    assert_eq!(
        fe,
        vec![
            SessionEvent::Closed { scid: 1 },
            SessionEvent::ReadClosed { scid: 1 }
        ]
    );
    assert_eq!(link.l.open_subchannels(), 0);
    assert_eq!(link.f.open_subchannels(), 0);
    assert_eq!(
        link.f.send_data(1, b"x".to_vec()),
        Err(SubchannelError::Unknown(1))
    );
}

#[test]
fn scids_are_odd_for_the_leader_and_even_for_the_follower() {
    let mut link = Link::new(false);
    assert_eq!(
        [link.l.open("a").unwrap(), link.l.open("a").unwrap()],
        [1, 3]
    );
    assert_eq!(
        [link.f.open("a").unwrap(), link.f.open("a").unwrap()],
        [2, 4]
    );
}

#[test]
fn unacked_records_are_resent_in_order_and_duplicates_dropped() {
    let now = Instant::now();
    let mut link = Link::new(false);
    let scid = link.l.open("p").unwrap();
    link.l.send_data(scid, b"0".to_vec()).unwrap();
    link.pump();
    events(&mut link.f);
    // sent, then the connection dies before the ACKs come back
    link.l.send_data(scid, b"1".to_vec()).unwrap();
    link.l.send_data(scid, b"2".to_vec()).unwrap();
    let mut sent = Vec::new();
    link.l.transmit(usize::MAX, |r| sent.push(Record::clone(r)));
    for r in sent {
        link.f.received(r); // delivered, but its ACKs are lost with the connection
    }
    assert_eq!(events(&mut link.f).len(), 2);
    link.reconnect(now);
    // written while offline
    link.l.connection_lost();
    link.l.send_data(scid, b"3".to_vec()).unwrap();
    assert!(!link.l.wants_transmit());
    link.l.connection_made(now);
    link.log.clear();
    link.pump();
    let resent: Vec<_> = link
        .log
        .iter()
        .filter(|(who, r)| *who == 'L' && r.is_reliable())
        .map(|(_, r)| r.seqnum().unwrap())
        .collect();
    assert_eq!(
        resent,
        [2, 3, 4],
        "the unacked queue is resent in order before the new record"
    );
    assert_eq!(
        events(&mut link.f),
        vec![SessionEvent::Data {
            scid,
            data: b"3".to_vec()
        }],
        "duplicates are dropped"
    );
    assert_eq!(link.l.unacked_bytes(), 0);
}

fn sent_bytes(s: &mut Session) -> usize {
    std::iter::from_fn(|| s.poll_event())
        .map(|e| match e {
            SessionEvent::Sent { data_bytes } => data_bytes,
            _ => 0,
        })
        .sum()
}

#[test]
fn first_transmission_releases_writer_budget_and_resends_do_not() {
    let now = Instant::now();
    let mut link = Link::new(false);
    let scid = link.l.open("p").unwrap();
    link.l.send_data(scid, vec![0; 1000]).unwrap();
    link.l.send_data(scid, vec![0; 500]).unwrap();
    link.l.transmit(usize::MAX, |_| {});
    assert_eq!(sent_bytes(&mut link.l), 1500);
    link.reconnect(now);
    link.pump(); // resent, not counted again
    assert_eq!(sent_bytes(&mut link.l), 0);
    assert_eq!(link.l.unacked_bytes(), 0);
}

/// A connected Leader with a 3000-byte cap on unacknowledged data, one subchannel open and five
/// 1000-byte DATA records queued on it.
fn capped_leader() -> (Session, Scid) {
    let mut l = Session::new(Role::Leader, 3000, PING, false);
    l.connection_made(Instant::now());
    let scid = l.open("p").unwrap();
    for _ in 0..5 {
        l.send_data(scid, vec![0; 1000]).unwrap();
    }
    (l, scid)
}

#[test]
fn fresh_records_wait_while_too_much_is_unacknowledged() {
    let (mut l, _) = capped_leader();
    let mut n = 0;
    l.transmit(usize::MAX, |_| n += 1);
    assert_eq!(n, 4, "OPEN and DATA until 3000 bytes are in flight");
    assert!(!l.wants_transmit());
    l.received(Record::Ack(1));
    assert!(l.wants_transmit());
    l.transmit(usize::MAX, |_| n += 1);
    assert_eq!(n, 5, "one more fits under the limit");
    l.received(Record::Ack(3));
    l.transmit(usize::MAX, |_| n += 1);
    assert_eq!(n, 6);
}

#[test]
fn a_raised_cap_lets_fresh_records_go_without_acks() {
    // what the driver does while its own reading is paused and no ACK can arrive
    let (mut l, scid) = capped_leader();
    let mut n = 0;
    l.transmit(usize::MAX, |_| n += 1);
    assert!(!l.wants_transmit(), "held at the cap");
    l.set_unacked_limit(1 << 20);
    assert!(l.wants_transmit());
    l.transmit(usize::MAX, |_| n += 1);
    assert_eq!(n, 6, "OPEN and all five DATA records went out");
    l.set_unacked_limit(3000);
    l.send_data(scid, vec![0; 1000]).unwrap();
    assert!(!l.wants_transmit(), "back at the cap once reading resumes");
}

#[test]
fn budget_limits_one_transmit_call() {
    let mut link = Link::new(false);
    let scid = link.l.open("p").unwrap();
    for _ in 0..10 {
        link.l.send_data(scid, vec![0; 1000]).unwrap();
    }
    let mut n = 0;
    assert!(link.l.transmit(3000, |_| n += 1));
    assert_eq!(n, 4); // OPEN plus three DATA reach the budget
    assert!(link.l.wants_transmit());
}

/// Takes what `s` transmits.
fn sent(s: &mut Session) -> Vec<Record> {
    let mut out = Vec::new();
    s.transmit(usize::MAX, |r| out.push(Record::clone(r)));
    out
}

/// Calls `handle_timeout` whenever `poll_timeout` is due, up to `until` (as a driver does);
/// returns the first verdict that is not `Fine` and when it came, and the PINGs sent.
fn run_timers(
    s: &mut Session,
    until: Instant,
    reading: bool,
) -> (Option<(Liveness, Instant)>, usize) {
    let mut pings = 0;
    for _ in 0..100_000 {
        let Some(t) = s.poll_timeout().filter(|t| *t <= until) else {
            break;
        };
        let verdict = s.handle_timeout(t, reading);
        pings += sent(s)
            .iter()
            .filter(|r| matches!(r, Record::Ping(_)))
            .count();
        if verdict != Liveness::Fine {
            return (Some((verdict, t)), pings);
        }
    }
    (None, pings)
}

#[test]
fn both_roles_ping_when_quiet_and_declare_a_silent_connection_dead() {
    let now = Instant::now();
    let third = PING / 3;
    for role in [Role::Leader, Role::Follower] {
        let mut s = Session::new(role, 1 << 20, PING, false);
        s.connection_made(now);
        assert_eq!(s.poll_timeout(), Some(now + third), "{role:?}");
        // heard something just before the first check: no ping needed then
        s.heard(now + third - Duration::from_millis(1));
        assert_eq!(s.handle_timeout(now + third, true), Liveness::Fine);
        assert!(sent(&mut s).is_empty(), "{role:?}: not quiet, no PING");
        // quiet for a third of the interval: a PING
        assert_eq!(s.handle_timeout(now + third * 2, true), Liveness::Fine);
        assert!(
            matches!(sent(&mut s).as_slice(), [Record::Ping(_)]),
            "{role:?}"
        );
        // anything heard (here the PONG) keeps it alive; then silence for a whole interval
        let heard = now + third * 2 + Duration::from_millis(5);
        s.heard(heard);
        s.received(Record::Pong([0; 4]));
        let (verdict, pings) = run_timers(&mut s, heard + PING * 2, true);
        assert_eq!(
            verdict,
            Some((Liveness::Silent(PING), heard + PING)),
            "{role:?}: nothing heard for the whole interval"
        );
        assert!(
            pings >= 2,
            "{role:?}: it kept asking meanwhile ({pings} PINGs)"
        );
    }
}

#[test]
fn a_paused_reader_is_never_judged_silent_and_keeps_pinging() {
    let now = Instant::now();
    let mut s = Session::new(Role::Follower, 1 << 20, PING, false);
    s.connection_made(now);
    // ten intervals without reading (a slow local consumer): pings go out, no verdict
    let (verdict, pings) = run_timers(&mut s, now + PING * 10, false);
    assert_eq!(verdict, None);
    assert!(
        pings >= 25,
        "the peer must hear us while we do not read: {pings} pings"
    );
    // reading again: a fresh interval starts at the next check
    let t = s.poll_timeout().unwrap();
    assert_eq!(s.handle_timeout(t, true), Liveness::Fine);
    let (verdict, _) = run_timers(&mut s, t + PING * 2, true);
    assert_eq!(verdict, Some((Liveness::Silent(PING), t + PING)));
}

#[test]
fn a_process_that_slept_does_not_call_its_connection_silent() {
    let now = Instant::now();
    let mut s = Session::new(Role::Follower, 1 << 20, PING, false);
    s.connection_made(now);
    // the process was stopped for three intervals: its first timer fires late
    let woke = now + PING * 3;
    assert_eq!(s.handle_timeout(woke, true), Liveness::Fine);
    assert!(
        matches!(sent(&mut s).as_slice(), [Record::Ping(_)]),
        "it asks at once whether the connection still lives"
    );
    // and judges it a whole interval later if nothing comes
    let (verdict, _) = run_timers(&mut s, woke + PING * 2, true);
    assert_eq!(verdict, Some((Liveness::Silent(PING), woke + PING)));
}

#[test]
fn a_probe_must_be_answered_by_its_deadline() {
    let now = Instant::now();
    let mut link = Link::at(now, false);
    let deadline = now + Duration::from_secs(1);
    link.l.probe(deadline);
    assert_eq!(link.l.poll_timeout(), Some(deadline));
    link.pump();
    assert_eq!(
        link.l.handle_timeout(deadline, true),
        Liveness::Fine,
        "answered"
    );
    link.l.probe(deadline);
    let lost = sent(&mut link.l);
    assert!(matches!(lost.as_slice(), [Record::Ping(_)]));
    // a PONG for another ping does not answer it
    link.l.received(Record::Pong([9, 9, 9, 9]));
    assert_eq!(
        link.l.handle_timeout(deadline, true),
        Liveness::ProbeUnanswered
    );
}

#[test]
fn hostile_opens_are_refused_and_leave_nothing_behind() {
    let mut link = Link::new(false);
    // the Follower (even ids) opens an odd id: one the Leader will allocate
    link.l.received(Record::Open {
        scid: 1,
        seqnum: 0,
        subprotocol: "x".into(),
    });
    assert_eq!(
        events(&mut link.l),
        vec![SessionEvent::Abuse(PeerAbuse::OurSubchannelId)],
        "an OPEN with our parity is ignored (and counted as abuse)"
    );
    let ours = link.l.open("mine").unwrap();
    assert_eq!(ours, 1, "the id stays ours");
    // a huge name is refused with CLOSE and forgotten
    let name = "n".repeat(MAX_SUBPROTOCOL + 1);
    link.l.received(Record::Open {
        scid: 2,
        seqnum: 1,
        subprotocol: name,
    });
    assert_eq!(
        events(&mut link.l),
        vec![SessionEvent::Abuse(PeerAbuse::LongSubprotocol)]
    );
    assert_eq!(link.l.open_subchannels(), 1, "only ours");
    let out = sent(&mut link.l);
    assert!(
        out.iter()
            .any(|r| matches!(r, Record::Close { scid: 2, .. })),
        "{out:?}"
    );
}

#[test]
fn refusals_the_peer_never_acknowledges_stop_at_a_bound_and_resume_after_its_ack() {
    let mut link = Link::new(false);
    // a peer that floods OPENs we refuse and never acknowledges our CLOSEs
    let mut ignored = 0;
    for i in 0..5_000u32 {
        link.l.received(Record::Open {
            scid: 2 + 2 * i,
            seqnum: i,
            subprotocol: "nobody".into(),
        });
        while let Some(e) = link.l.poll_event() {
            match e {
                SessionEvent::Incoming { scid, .. } => link.l.refuse(scid),
                SessionEvent::Abuse(PeerAbuse::Unacknowledged) => ignored += 1,
                other => panic!("{other:?}"),
            }
        }
    }
    let out = sent(&mut link.l);
    let closes = out
        .iter()
        .filter(|r| matches!(r, Record::Close { .. }))
        .count();
    assert_eq!(closes, MAX_UNACKED_REFUSALS, "refusals stop at the bound");
    assert_eq!(
        link.l.open_subchannels(),
        0,
        "nothing is kept for the others"
    );
    assert_eq!(ignored, 5_000 - MAX_UNACKED_REFUSALS);
    assert!(link.l.unacked_bytes() < 32 * MAX_UNACKED_REFUSALS);
    // once the peer acknowledges them, OPENs are refused with CLOSE again
    let last_close = out.iter().rev().find_map(Record::seqnum).unwrap();
    link.l.received(Record::Ack(last_close));
    link.l.received(Record::Open {
        scid: 20_000,
        seqnum: 5_000,
        subprotocol: "nobody".into(),
    });
    if let Some(SessionEvent::Incoming { scid, .. }) = link.l.poll_event() {
        link.l.refuse(scid);
    }
    let out = sent(&mut link.l);
    assert!(
        out.iter()
            .any(|r| matches!(r, Record::Close { scid: 20_000, .. })),
        "{out:?}"
    );
}

#[test]
fn control_records_stay_bounded_while_the_writer_is_stalled() {
    let mut link = Link::new(false);
    // the peer floods while we send nothing: one cumulative ACK and a few PONGs wait, not one
    // record per inbound record
    for seqnum in 0..10_000u32 {
        link.f.received(Record::Ping(seqnum.to_be_bytes()));
        link.f.received(Record::Open {
            scid: 1 + 2 * seqnum,
            seqnum,
            subprotocol: "p".into(),
        });
    }
    let out = sent(&mut link.f);
    let acks: Vec<u32> = out
        .iter()
        .filter_map(|r| match r {
            Record::Ack(s) => Some(*s),
            _ => None,
        })
        .collect();
    assert_eq!(acks, vec![9_999]);
    let pongs = out.iter().filter(|r| matches!(r, Record::Pong(_))).count();
    assert!(pongs <= MAX_QUEUED_PONGS, "{pongs} PONGs");
    let last_pong = out.iter().rev().find_map(|r| match r {
        Record::Pong(id) => Some(u32::from_be_bytes(*id)),
        _ => None,
    });
    assert_eq!(last_pong, Some(9_999), "the newest PING is answered");
}

#[test]
fn half_close_between_our_peers() {
    let mut link = Link::new(true);
    let scid = link.l.open("p").unwrap();
    link.l.send_data(scid, b"request".to_vec()).unwrap();
    link.l.close(scid).unwrap();
    link.pump();
    assert_eq!(
        events(&mut link.f),
        vec![
            SessionEvent::Incoming {
                scid,
                subprotocol: "p".into()
            },
            SessionEvent::Data {
                scid,
                data: b"request".to_vec()
            },
            SessionEvent::ReadClosed { scid },
        ]
    );
    // the follower still answers after the leader's CLOSE
    link.f.send_data(scid, b"response".to_vec()).unwrap();
    link.f.close(scid).unwrap();
    link.pump();
    assert_eq!(
        events(&mut link.l),
        vec![
            SessionEvent::Data {
                scid,
                data: b"response".to_vec()
            },
            SessionEvent::Closed { scid },
            SessionEvent::ReadClosed { scid },
        ]
    );
    assert_eq!(events(&mut link.f), vec![SessionEvent::Closed { scid }]);
}

#[test]
fn records_for_unknown_subchannels_are_acked_and_dropped() {
    let mut s = Session::new(Role::Follower, 1 << 20, PING, false);
    s.connection_made(Instant::now());
    s.received(Record::Data {
        scid: 77,
        seqnum: 0,
        data: b"x".to_vec(),
    });
    s.received(Record::Close {
        scid: 77,
        seqnum: 1,
    });
    s.received(Record::Open {
        scid: 5,
        seqnum: 2,
        subprotocol: "a".into(),
    });
    s.received(Record::Open {
        scid: 5,
        seqnum: 3,
        subprotocol: "b".into(),
    });
    let mut acks = Vec::new();
    s.transmit(usize::MAX, |r| acks.push(Record::clone(r)));
    // every record was acknowledged: ACKs are cumulative, the newest covers them all
    assert_eq!(acks, vec![Record::Ack(3)]);
    assert_eq!(
        events(&mut s),
        vec![SessionEvent::Incoming {
            scid: 5,
            subprotocol: "a".into()
        }]
    );
}

#[test]
fn a_held_ack_rides_with_the_answer_or_goes_alone_when_due() {
    let now = Instant::now();
    let delay = Duration::from_millis(10);
    let mut s = Session::new(Role::Follower, 1 << 20, PING, false);
    s.set_ack_delay(delay);
    s.connection_made(now);
    let open = Record::Open {
        scid: 1,
        seqnum: 0,
        subprotocol: "echo".into(),
    };
    let ping = |seqnum| Record::Data {
        scid: 1,
        seqnum,
        data: b"ping".to_vec(),
    };
    s.received(open);
    s.received(ping(1));
    s.stamp_ack(now);
    assert!(!s.wants_transmit(), "a lone ACK waits");
    assert_eq!(s.poll_timeout(), Some(now + delay));
    // the local service answers within the delay: one transmit carries the ACK and the answer
    s.send_data(1, b"pong".to_vec()).unwrap();
    let out = sent(&mut s);
    assert!(
        matches!(out[..], [Record::Ack(1), Record::Data { seqnum: 0, .. }]),
        "{out:?}"
    );
    // no answer: the ACK goes alone once due, not before
    s.received(ping(2));
    s.stamp_ack(now + delay);
    s.stamp_ack(now + delay * 2); // later reads keep the first deadline
    assert_eq!(
        s.handle_timeout(now + delay * 2 - Duration::from_millis(1), true),
        Liveness::Fine
    );
    assert!(sent(&mut s).is_empty());
    assert_eq!(s.handle_timeout(now + delay * 2, true), Liveness::Fine);
    assert!(matches!(sent(&mut s)[..], [Record::Ack(2)]));
    // a bulk sender is acknowledged every 256 KiB (ACK_EVERY_BYTES) without waiting
    let mut seqnum = 3;
    let mut acks = Vec::new();
    while seqnum < 3 + 80 {
        s.received(Record::Data {
            scid: 1,
            seqnum,
            data: vec![0; 16 << 10],
        });
        s.stamp_ack(now + delay * 3);
        acks.extend(sent(&mut s));
        seqnum += 1;
    }
    assert_eq!(acks.len(), 5, "one ACK per 256 KiB of 1280 KiB: {acks:?}");
    assert!(acks.iter().all(|a| matches!(a, Record::Ack(_))));
    // a cut connection forgets the held ACK: the peer resends and is acknowledged again
    s.received(ping(seqnum));
    s.stamp_ack(now + delay * 3);
    s.connection_lost();
    s.connection_made(now + delay * 4);
    let resent = sent(&mut s);
    assert!(
        !resent.iter().any(|r| matches!(r, Record::Ack(_))),
        "only our unacknowledged answer is resent: {resent:?}"
    );
}

#[test]
fn without_a_delay_every_ack_goes_at_once_as_python_does() {
    let now = Instant::now();
    let mut s = Session::new(Role::Follower, 1 << 20, PING, false);
    s.connection_made(now);
    s.received(Record::Open {
        scid: 1,
        seqnum: 0,
        subprotocol: "echo".into(),
    });
    assert!(s.wants_transmit());
    assert!(matches!(sent(&mut s)[..], [Record::Ack(0)]));
}

#[test]
fn credits_reach_the_writer_replace_each_other_and_are_sent_again_after_a_reconnect() {
    let t0 = Instant::now();
    let mut link = Link::at(t0, true);
    let scid = link.l.open("bulk").unwrap();
    link.l.send_data(scid, vec![1; 1000]).unwrap();
    link.pump();
    events(&mut link.f);
    // two credits before a transmit: only the latest goes out
    link.f.credit(scid, 400);
    link.f.credit(scid, 1000);
    link.log.clear();
    link.pump();
    let credits: Vec<_> = link
        .log
        .iter()
        .filter(|(_, r)| matches!(r, Record::Credit { .. }))
        .collect();
    assert_eq!(
        credits,
        vec![&(
            'F',
            Record::Credit {
                scid,
                consumed: 1000
            }
        )]
    );
    assert_eq!(
        events(&mut link.l),
        vec![SessionEvent::Credit {
            scid,
            consumed: 1000
        }]
    );
    // a new connection carries the latest total again (CREDIT is not reliable)
    link.reconnect(t0 + Duration::from_secs(1));
    link.log.clear();
    link.pump();
    assert!(link.log.contains(&(
        'F',
        Record::Credit {
            scid,
            consumed: 1000
        }
    )));
    // a credit for an unknown subchannel is ignored on both sides
    link.f.credit(99, 5);
    link.f.received(Record::Credit {
        scid: 77,
        consumed: 1,
    });
    assert!(events(&mut link.f).is_empty());
    // once closed both ways, the total is forgotten and not sent again
    link.l.close(scid).unwrap();
    link.pump();
    link.f.close(scid).unwrap();
    link.pump();
    link.reconnect(t0 + Duration::from_secs(2));
    link.log.clear();
    link.pump();
    assert!(!link
        .log
        .iter()
        .any(|(_, r)| matches!(r, Record::Credit { .. })));
}
