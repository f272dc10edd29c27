//! Whole Dilation endpoints against each other on virtual time (see `endpoint_harness.rs`): every
//! reconnect path, and seeded random fault schedules asserting exactly-once, in-order delivery.

use std::time::Duration;

use super::harness::{config, Pair, Rng};
use super::*;
use crate::dilation::hints::Hint;

const LEADER: usize = 0;
const FOLLOWER: usize = 1;
const SECOND: Duration = Duration::from_secs(1);

fn connected_pair() -> Pair {
    let mut pair = Pair::default_pair();
    pair.start_dilation();
    assert!(
        pair.run_until(10 * SECOND, Pair::connected),
        "did not connect"
    );
    pair
}

/// A stream of seeded bytes from peer `from`, written in chunks.
struct Stream {
    from: usize,
    name: String,
    open: OpenId,
    payload: Vec<u8>,
    written: usize,
    closed: bool,
}

impl Stream {
    fn new(pair: &mut Pair, from: usize, name: &str, len: usize, rng: &mut Rng) -> Stream {
        pair.peers[1 - from].ep.listen(name);
        Stream {
            from,
            name: name.into(),
            open: pair.open(from, name),
            payload: rng.bytes(len),
            written: 0,
            closed: false,
        }
    }

    /// Writes the next chunk (and CLOSE after the last one); false once everything is written.
    fn write(&mut self, pair: &mut Pair, chunk: usize) -> bool {
        let Some(scid) = pair.scid(self.from, self.open) else {
            return true; // not open yet
        };
        if self.written < self.payload.len() {
            let end = (self.written + chunk).min(self.payload.len());
            let data = self.payload[self.written..end].to_vec();
            let now = pair.now;
            assert!(pair.peers[self.from].ep.send_data(now, scid, data));
            self.written = end;
        } else if !self.closed {
            pair.peers[self.from].ep.close_subchannel(scid);
            self.closed = true;
        }
        pair.pump();
        !self.closed
    }

    /// What the other peer received on this stream.
    fn received<'a>(&self, pair: &'a Pair) -> Option<&'a [u8]> {
        let other = &pair.peers[1 - self.from];
        let scid = other
            .incoming
            .iter()
            .find(|(_, name)| *name == self.name)?
            .0;
        Some(other.received.get(&scid).map_or(&[][..], Vec::as_slice))
    }

    fn complete(&self, pair: &Pair) -> bool {
        let other = &pair.peers[1 - self.from];
        let done = other
            .incoming
            .iter()
            .find(|(_, name)| *name == self.name)
            .is_some_and(|(scid, _)| other.read_closed.contains(scid));
        done && self
            .received(pair)
            .is_some_and(|r| r.len() == self.payload.len())
    }
}

/// Writes every stream to its end, running `slice` of virtual time between chunks.
fn write_all(pair: &mut Pair, streams: &mut [Stream], chunk: usize, slice: Duration) {
    for _ in 0..100_000 {
        let mut more = false;
        for s in streams.iter_mut() {
            more |= s.write(pair, chunk);
        }
        if !more {
            return;
        }
        pair.run_for(slice);
    }
    panic!("streams were not written");
}

fn assert_intact(pair: &Pair, streams: &[Stream]) {
    for s in streams {
        let got = s.received(pair).expect("the stream arrived");
        assert_eq!(got.len(), s.payload.len(), "{}: length", s.name);
        assert!(got == &s.payload[..], "{}: bytes differ", s.name);
    }
}

#[test]
fn connects_direct_in_both_roles_and_carries_data_both_ways() {
    let mut pair = connected_pair();
    assert_eq!(pair.peers[LEADER].ep.role(), Some(Role::Leader));
    assert_eq!(pair.peers[FOLLOWER].ep.role(), Some(Role::Follower));
    assert_eq!(pair.last_connected(LEADER), Some((0, PathKind::Direct)));
    assert_eq!(pair.last_connected(FOLLOWER), Some((0, PathKind::Direct)));
    // the relay connections of the generation are closed once direct won
    let mut rng = Rng::new(1);
    let mut streams = vec![
        Stream::new(&mut pair, LEADER, "a", 300_000, &mut rng),
        Stream::new(&mut pair, FOLLOWER, "b", 300_000, &mut rng),
    ];
    write_all(&mut pair, &mut streams, 16 * 1024, Duration::from_millis(1));
    assert!(pair.run_until(10 * SECOND, |p| streams.iter().all(|s| s.complete(p))));
    assert_intact(&pair, &streams);
    let acked = |p: &Pair| p.peers.iter().all(|p| p.ep.unacked_bytes() == 0);
    assert!(pair.run_until(SECOND, acked), "everything is acknowledged");
}

#[test]
fn relay_only_selects_the_relay_at_once_without_a_grace_period() {
    let (mut c0, mut c1) = (config("ffffffffffffffff"), config("0000000000000001"));
    c0.no_listen = true;
    c1.no_listen = true;
    let grace = c0.relay_grace;
    let mut pair = Pair::new(c0, c1);
    pair.start_dilation();
    assert!(pair.run_until(10 * SECOND, Pair::connected));
    assert_eq!(pair.last_connected(LEADER), Some((0, PathKind::Relay)));
    assert!(
        pair.elapsed() < Duration::from_millis(100),
        "connected after {:?} (the grace is {grace:?}: no direct path can win here)",
        pair.elapsed()
    );
}

#[test]
fn leader_skips_the_relay_grace_once_every_direct_dial_failed() {
    // the Leader does not listen (nobody can reach it directly) and every dial to the
    // Follower's direct hints is refused; the Follower releases its KCM at once here
    let (mut c0, mut c1) = (config("ffffffffffffffff"), config("0000000000000001"));
    c0.no_listen = true;
    c1.relay_grace = Duration::ZERO;
    let grace = c0.relay_grace;
    let mut pair = Pair::new(c0, c1);
    pair.direct_refused = true;
    pair.start_dilation();
    assert!(pair.run_until(10 * SECOND, Pair::connected));
    assert_eq!(pair.last_connected(LEADER), Some((0, PathKind::Relay)));
    assert!(
        pair.elapsed() < grace,
        "{:?} (grace {grace:?})",
        pair.elapsed()
    );
}

#[test]
fn a_listening_leader_keeps_the_relay_grace_though_its_own_dials_failed() {
    // the peer may still reach our listener: its dial is not ours to see failing
    let mut pair = Pair::default_pair();
    pair.direct_refused = true;
    let grace = config("00").relay_grace;
    pair.start_dilation();
    assert!(pair.run_until(10 * SECOND, Pair::connected));
    assert_eq!(pair.last_connected(LEADER), Some((0, PathKind::Relay)));
    assert!(pair.elapsed() >= grace, "{:?}", pair.elapsed());
}

#[test]
fn a_direct_path_beats_the_relay() {
    let pair = connected_pair();
    assert_eq!(pair.last_connected(LEADER), Some((0, PathKind::Direct)));
    // both peers dialed the relay too, and the relay connections lost the race
    for p in &pair.peers {
        assert!(p.dials.iter().any(|d| d.2 == PathKind::Relay));
    }
}

#[test]
fn opens_before_the_roles_are_known_are_answered_once_connected() {
    let mut pair = Pair::default_pair();
    let mut rng = Rng::new(2);
    let mut streams = vec![Stream::new(&mut pair, FOLLOWER, "early", 10_000, &mut rng)];
    assert_eq!(pair.scid(FOLLOWER, streams[0].open), None);
    pair.start_dilation();
    assert!(pair.run_until(10 * SECOND, Pair::connected));
    assert_eq!(
        pair.scid(FOLLOWER, streams[0].open),
        Some(2),
        "the Follower's ids are even"
    );
    write_all(&mut pair, &mut streams, 4096, Duration::from_millis(1));
    assert!(pair.run_until(10 * SECOND, |p| streams[0].complete(p)));
    assert_intact(&pair, &streams);
}

#[test]
fn an_empty_subprotocol_is_refused() {
    let mut pair = connected_pair();
    let id = pair.open(LEADER, "");
    assert!(pair.peers[LEADER].events.iter().any(|e| matches!(
        e,
        Event::Opened { id: i, result: Err(DilationError::EmptySubprotocol), .. } if *i == id
    )));
}

/// A cut at each point of the connection's life: the session comes back and nothing is lost or
/// duplicated.
#[test]
fn a_cut_in_every_manager_state_loses_and_duplicates_nothing() {
    // cut after this much time from the start: during the dials and handshakes (Connecting),
    // right at selection, and while connected with data in flight
    for at_ms in [4, 6, 9, 12, 16, 25, 40, 200] {
        let mut pair = Pair::default_pair();
        let mut rng = Rng::new(at_ms);
        let mut streams = vec![
            Stream::new(&mut pair, LEADER, "a", 100_000, &mut rng),
            Stream::new(&mut pair, FOLLOWER, "b", 100_000, &mut rng),
        ];
        pair.start_dilation();
        pair.run_for(Duration::from_millis(at_ms));
        let state = pair.peers[LEADER].ep.manager_state();
        pair.cut();
        write_all(&mut pair, &mut streams, 8192, Duration::from_millis(1));
        assert!(
            pair.run_until(30 * SECOND, |p| streams.iter().all(|s| s.complete(p))),
            "cut at {at_ms} ms ({state:?}) did not recover"
        );
        assert_intact(&pair, &streams);
    }
}

#[test]
fn a_cut_while_connected_is_replaced_and_unacknowledged_data_is_resent() {
    let mut pair = connected_pair();
    let mut rng = Rng::new(3);
    let mut streams = vec![
        Stream::new(&mut pair, LEADER, "a", 200_000, &mut rng),
        Stream::new(&mut pair, FOLLOWER, "b", 200_000, &mut rng),
    ];
    // write half, cut with records in flight, write the rest
    for _ in 0..12 {
        for s in streams.iter_mut() {
            s.write(&mut pair, 8192);
        }
    }
    assert!(pair.peers[LEADER].ep.unacked_bytes() > 0);
    pair.cut();
    write_all(&mut pair, &mut streams, 8192, Duration::from_millis(1));
    assert!(pair.run_until(30 * SECOND, |p| streams.iter().all(|s| s.complete(p))));
    assert_intact(&pair, &streams);
    assert_eq!(pair.last_connected(LEADER).map(|c| c.0), Some(1));
    assert_eq!(pair.last_connected(FOLLOWER).map(|c| c.0), Some(1));
    assert_eq!(
        pair.count(LEADER, |e| matches!(e, Event::ConnectionLost { .. })),
        1
    );
}

/// The time of peer `i`'s `Connected` event number `n` (from 0), from its event log.
fn lost_reasons(pair: &Pair, i: usize) -> Vec<LossReason> {
    pair.peers[i]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Status(DilationEvent::Lost { reason, .. }) => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// The outage reported by peer `i`'s last `Connected` event.
fn last_outage(pair: &Pair, i: usize) -> Option<Duration> {
    pair.peers[i].events.iter().rev().find_map(|e| match e {
        Event::Status(DilationEvent::Connected { outage, .. }) => Some(outage.unwrap_or_default()),
        _ => None,
    })
}

#[test]
fn silent_loss_is_detected_by_both_roles_within_the_interval_and_the_session_resumes() {
    let mut pair = connected_pair();
    let interval = config("00").liveness_interval;
    let mut rng = Rng::new(4);
    let mut streams = vec![
        Stream::new(&mut pair, LEADER, "a", 50_000, &mut rng),
        Stream::new(&mut pair, FOLLOWER, "b", 50_000, &mut rng),
    ];
    pair.run_for(SECOND);
    pair.blackhole = true;
    let lost_at = pair.now;
    write_all(&mut pair, &mut streams, 4096, Duration::from_millis(10));
    let silent = |p: &Pair, i| {
        lost_reasons(p, i)
            .iter()
            .any(|r| matches!(r, LossReason::Silent(_)))
    };
    assert!(pair.run_until(3 * interval, |p| silent(p, LEADER) && silent(p, FOLLOWER)));
    let detected = pair.now - lost_at;
    assert!(
        detected <= interval + SECOND,
        "silent loss noticed by both after {detected:?} (interval {interval:?})"
    );
    pair.run_for(20 * SECOND - detected);
    pair.blackhole = false;
    let back = pair.now;
    assert!(pair.run_until(30 * SECOND, Pair::connected));
    let resumed = pair.now - back;
    assert!(
        resumed <= 2 * SECOND,
        "connected again {resumed:?} after the path returned"
    );
    assert!(pair.run_until(60 * SECOND, |p| streams.iter().all(|s| s.complete(p))));
    assert_intact(&pair, &streams);
    let outage = last_outage(&pair, LEADER).expect("reconnected");
    assert!(
        outage >= 20 * SECOND - detected,
        "the outage is reported: {outage:?}"
    );
}

#[test]
fn an_address_change_of_either_peer_is_noticed_at_once_and_the_session_resumes() {
    for (changer, host) in [(FOLLOWER, "198.18.0.12"), (LEADER, "198.18.0.11")] {
        let mut pair = connected_pair();
        let mut rng = Rng::new(11);
        let mut streams = vec![
            Stream::new(&mut pair, LEADER, "a", 50_000, &mut rng),
            Stream::new(&mut pair, FOLLOWER, "b", 50_000, &mut rng),
        ];
        pair.run_for(SECOND);
        write_all(&mut pair, &mut streams, 4096, Duration::from_millis(10));
        let changed = pair.now;
        pair.change_address(changer, host);
        pair.pump();
        assert!(
            matches!(
                lost_reasons(&pair, changer).as_slice(),
                [LossReason::AddressGone(_)]
            ),
            "{:?}",
            lost_reasons(&pair, changer)
        );
        assert!(pair.run_until(30 * SECOND, |p| p.connected()
            && p.peers[LEADER].ep.generation() > 0));
        let resumed = pair.now - changed;
        // the Follower's empty hints tell the Leader at once
        assert!(
            resumed <= SECOND,
            "peer {changer}: connected again {resumed:?} after its address changed"
        );
        assert!(pair.run_until(60 * SECOND, |p| streams.iter().all(|s| s.complete(p))));
        assert_intact(&pair, &streams);
        if changer == FOLLOWER {
            assert_eq!(lost_reasons(&pair, LEADER), vec![LossReason::PeerLost]);
        }
    }
}

#[test]
fn a_paused_reader_is_never_declared_lost_but_its_peer_notices_silence() {
    let mut pair = connected_pair();
    let interval = config("00").liveness_interval;
    // the Follower's local consumer is slow: it stops reading; the path goes silent too
    pair.peers[FOLLOWER].ep.handle_backlog(99, true);
    pair.blackhole = true;
    pair.run_for(4 * interval);
    // (it may still drop the link when the Leader's `reconnect` arrives through the mailbox)
    assert!(
        !lost_reasons(&pair, FOLLOWER)
            .iter()
            .any(|r| matches!(r, LossReason::Silent(_))),
        "a paused reader cannot hear: no verdict of silence"
    );
    assert!(
        matches!(
            lost_reasons(&pair, LEADER).as_slice(),
            [LossReason::Silent(_)]
        ),
        "{:?}",
        lost_reasons(&pair, LEADER)
    );
}

#[test]
fn an_idle_connection_stays_up_with_pings_from_both_sides() {
    let mut pair = connected_pair();
    let interval = config("00").liveness_interval;
    pair.run_for(20 * interval);
    for i in [LEADER, FOLLOWER] {
        assert!(lost_reasons(&pair, i).is_empty(), "peer {i}");
    }
    assert_eq!(pair.peers[LEADER].ep.generation(), 0);
}

/// A Leader in generation 0 whose listener is up at 198.18.0.1:4321.
fn listening_leader(now: std::time::Instant) -> Endpoint {
    let mut ep = Endpoint::new(config("ffffffffffffffff"), "ffffffffffffffff");
    ep.handle_key(now, [7; 32]);
    ep.handle_peer_versions(now, vec!["ged".into()]);
    let please = br#"{"type": "please", "side": "0000000000000001", "use-version": "ged"}"#;
    ep.handle_dilate(now, please);
    while ep.poll_action().is_some() {}
    ep.handle_listening(now, 0, Some((4321, vec!["198.18.0.1".parse().unwrap()])));
    ep
}

#[test]
fn unauthenticated_handshakes_are_capped_and_time_out() {
    let now = std::time::Instant::now();
    let mut ep = listening_leader(now);
    let local = "198.18.0.1:4321".parse().unwrap();
    // one address gets its share, not every slot
    let greedy: Vec<Option<ConnId>> = (0..MAX_INBOUND_HANDSHAKES)
        .map(|i| {
            let peer = format!("198.18.0.8:{}", 1000 + i).parse().unwrap();
            ep.handle_accepted(now, 0, peer, local)
        })
        .collect();
    let admitted = greedy.iter().flatten().count();
    assert_eq!(admitted, MAX_INBOUND_HANDSHAKES_PER_ADDRESS);
    // the others fill the rest, up to the cap for all
    let mut accepted: Vec<Option<ConnId>> = greedy.into_iter().filter(Option::is_some).collect();
    accepted.extend((0..MAX_INBOUND_HANDSHAKES).map(|i| {
        let peer = format!("198.18.1.{}:{}", i / 4, 1000 + i).parse().unwrap();
        ep.handle_accepted(now, 0, peer, local)
    }));
    assert!(accepted[..MAX_INBOUND_HANDSHAKES]
        .iter()
        .all(Option::is_some));
    assert!(accepted[MAX_INBOUND_HANDSHAKES..]
        .iter()
        .all(Option::is_none));
    // silent clients: all dropped by the handshake deadline
    let ours: HashSet<ConnId> = accepted.iter().flatten().copied().collect();
    let mut closed = 0;
    let mut t = now;
    while t < now + Duration::from_secs(10) {
        t = ep.poll_timeout().expect("timers run");
        ep.handle_timeout(t);
        closed += std::iter::from_fn(|| ep.poll_action())
            .filter(|a| matches!(a, Action::Close { conn } if ours.contains(conn)))
            .count();
    }
    assert_eq!(
        closed,
        MAX_INBOUND_HANDSHAKES,
        "all dropped by {:?}",
        t - now
    );
}

#[test]
fn new_addresses_while_connecting_are_advertised_as_new_hints() {
    let now = std::time::Instant::now();
    let mut ep = listening_leader(now);
    let old: std::net::IpAddr = "198.18.0.1".parse().unwrap();
    let sent = |ep: &mut Endpoint| -> Vec<String> {
        std::iter::from_fn(|| ep.poll_action())
            .filter_map(|a| match a {
                Action::SendDilate(b) => Some(String::from_utf8(b).unwrap()),
                _ => None,
            })
            .collect()
    };
    let first = sent(&mut ep);
    assert!(first.iter().any(|m| m.contains("198.18.0.1")), "{first:?}");
    ep.handle_addresses(now, vec![old, "198.18.0.7".parse().unwrap()]);
    let refreshed = sent(&mut ep);
    assert_eq!(refreshed.len(), 1, "{refreshed:?}");
    assert!(refreshed[0].contains("connection-hints") && refreshed[0].contains("198.18.0.7"));
    assert!(
        !refreshed[0].contains("198.18.0.1"),
        "only the new address: {refreshed:?}"
    );
    ep.handle_addresses(now, vec![old, "198.18.0.7".parse().unwrap()]);
    assert!(sent(&mut ep).is_empty(), "nothing changed, nothing sent");
}

#[test]
fn a_lost_connection_waits_for_the_mailbox_and_resumes_after_it_returns() {
    let mut pair = connected_pair();
    let mut rng = Rng::new(5);
    let mut streams = vec![Stream::new(&mut pair, LEADER, "a", 20_000, &mut rng)];
    pair.run_for(SECOND);
    pair.set_mailbox(false);
    pair.cut();
    write_all(&mut pair, &mut streams, 4096, Duration::from_millis(10));
    pair.run_for(30 * SECOND);
    assert!(
        !streams[0].complete(&pair),
        "nothing can flow without the mailbox"
    );
    assert_eq!(pair.peers[LEADER].ep.manager_state(), State::Flushing);
    assert_eq!(pair.peers[FOLLOWER].ep.manager_state(), State::Lonely);
    pair.set_mailbox(true);
    let back = pair.now;
    assert!(pair.run_until(30 * SECOND, |p| streams.iter().all(|s| s.complete(p))));
    assert!(
        pair.now - back < SECOND,
        "resumed {:?} after the mailbox",
        pair.now - back
    );
    assert_intact(&pair, &streams);
}

#[test]
fn a_relay_only_session_survives_a_relay_restart() {
    let (mut c0, mut c1) = (config("ffffffffffffffff"), config("0000000000000001"));
    c0.no_listen = true;
    c1.no_listen = true;
    let mut pair = Pair::new(c0, c1);
    pair.start_dilation();
    assert!(pair.run_until(10 * SECOND, Pair::connected));
    let mut rng = Rng::new(6);
    let mut streams = vec![
        Stream::new(&mut pair, LEADER, "a", 30_000, &mut rng),
        Stream::new(&mut pair, FOLLOWER, "b", 30_000, &mut rng),
    ];
    pair.set_relay(false);
    write_all(&mut pair, &mut streams, 4096, Duration::from_millis(10));
    pair.run_for(10 * SECOND);
    assert!(!pair.connected());
    pair.set_relay(true);
    let back = pair.now;
    assert!(pair.run_until(60 * SECOND, |p| streams.iter().all(|s| s.complete(p))));
    assert_intact(&pair, &streams);
    // dials retry at least once a second
    assert!(pair.now - back <= 2 * SECOND, "{:?}", pair.now - back);
    assert_eq!(
        pair.last_connected(LEADER).map(|c| c.1),
        Some(PathKind::Relay)
    );
}

/// However long the relay was away, a relay-only session is connected again within about a second
/// of its return: dials retry at least once a second, and no relay grace applies.
#[test]
fn a_relay_only_session_resumes_within_a_second_of_the_relay_returning() {
    let mut worst = Duration::ZERO;
    for outage_ms in (500..40_000).step_by(1_300) {
        let (mut c0, mut c1) = (config("ffffffffffffffff"), config("0000000000000001"));
        c0.no_listen = true;
        c1.no_listen = true;
        let mut pair = Pair::new(c0, c1);
        pair.start_dilation();
        assert!(pair.run_until(10 * SECOND, Pair::connected));
        pair.set_relay(false);
        pair.run_for(Duration::from_millis(outage_ms));
        pair.set_relay(true);
        let back = pair.now;
        assert!(pair.run_until(30 * SECOND, Pair::connected));
        worst = worst.max(pair.now - back);
    }
    eprintln!("relay-only: worst resume {worst:?} after the relay returned");
    assert!(
        worst <= Duration::from_millis(1100),
        "worst resume {worst:?}"
    );
}

#[test]
fn close_during_a_reconnect_ends_after_the_flush_timeout() {
    let mut pair = connected_pair();
    let mut rng = Rng::new(7);
    let mut streams = vec![Stream::new(&mut pair, LEADER, "a", 20_000, &mut rng)];
    pair.set_mailbox(false);
    pair.cut();
    write_all(&mut pair, &mut streams, 4096, Duration::from_millis(1));
    assert!(pair.peers[LEADER].ep.unacked_bytes() > 0);
    let flush = config("00").flush_timeout;
    pair.peers[LEADER].ep.close(pair.now);
    let closed_at = pair.now;
    assert!(!pair.peers[LEADER].ep.is_finished(pair.now));
    assert!(pair.run_until(2 * flush, |p| p.peers[LEADER].ep.is_finished(p.now)));
    assert_eq!(pair.now - closed_at, flush);
}

#[test]
fn close_finishes_as_soon_as_everything_is_acknowledged() {
    let mut pair = connected_pair();
    let mut rng = Rng::new(8);
    let mut streams = vec![Stream::new(&mut pair, LEADER, "a", 20_000, &mut rng)];
    write_all(&mut pair, &mut streams, 4096, Duration::ZERO);
    pair.peers[LEADER].ep.close(pair.now);
    let closed_at = pair.now;
    assert!(pair.run_until(SECOND, |p| p.peers[LEADER].ep.is_finished(p.now)));
    assert!(pair.now - closed_at < Duration::from_millis(100));
    assert_intact(&pair, &streams);
}

#[test]
fn stale_connections_and_records_are_ignored() {
    let mut pair = connected_pair();
    let generation = pair.peers[FOLLOWER].ep.generation();
    let now = pair.now;
    let peer = "198.18.0.9:1".parse().unwrap();
    // an accept for a generation that ended, or while connected, is refused
    assert_eq!(
        pair.peers[FOLLOWER]
            .ep
            .handle_accepted(now, generation, peer, peer),
        None
    );
    assert_eq!(
        pair.peers[FOLLOWER]
            .ep
            .handle_accepted(now, generation + 1, peer, peer),
        None
    );
    // records from a connection that is not the selected one change nothing
    let selected = pair.peers[FOLLOWER].ep.selected().expect("connected");
    let stale = Record::Data {
        seqnum: 0,
        scid: 1,
        data: b"stale".to_vec(),
    };
    pair.peers[FOLLOWER]
        .ep
        .handle_records(now, selected + 1000, vec![stale]);
    pair.pump();
    assert!(pair.peers[FOLLOWER].received.is_empty());
}

#[test]
fn duplicate_and_out_of_window_records_are_delivered_once() {
    let mut pair = connected_pair();
    pair.peers[FOLLOWER].ep.listen("dup");
    let conn = pair.peers[FOLLOWER].ep.selected().expect("connected");
    let data = |seqnum, byte: u8| Record::Data {
        seqnum,
        scid: 1,
        data: vec![byte; 3],
    };
    let open = Record::Open {
        seqnum: 0,
        scid: 1,
        subprotocol: "dup".into(),
    };
    let now = pair.now;
    let records = vec![
        open.clone(),
        data(1, b'a'),
        data(1, b'a'),
        open,
        data(2, b'b'),
    ];
    pair.peers[FOLLOWER].ep.handle_records(now, conn, records);
    // a resend after a reconnect repeats records the receiver already has
    pair.peers[FOLLOWER].ep.handle_records(
        now,
        conn,
        vec![data(1, b'a'), data(2, b'b'), data(3, b'c')],
    );
    pair.pump();
    let f = &pair.peers[FOLLOWER];
    assert_eq!(f.incoming, vec![(1, "dup".to_string())]);
    assert_eq!(f.received[&1], b"aaabbbccc");
}

#[test]
fn a_slow_link_is_not_mistaken_for_loss() {
    let mut pair = Pair::default_pair();
    pair.latency = Duration::from_millis(800); // 1.6 s round trips, a third of the ping interval
    pair.start_dilation();
    assert!(pair.run_until(60 * SECOND, Pair::connected));
    let mut rng = Rng::new(10);
    let mut streams = vec![
        Stream::new(&mut pair, LEADER, "a", 200_000, &mut rng),
        Stream::new(&mut pair, FOLLOWER, "b", 200_000, &mut rng),
    ];
    write_all(&mut pair, &mut streams, 2048, Duration::from_millis(50));
    assert!(pair.run_until(120 * SECOND, |p| streams.iter().all(|s| s.complete(p))));
    pair.run_for(60 * SECOND); // idle: pings and their PONGs cross the slow link
    assert_intact(&pair, &streams);
    for i in [LEADER, FOLLOWER] {
        assert_eq!(
            pair.count(i, |e| matches!(e, Event::ConnectionLost { .. })),
            0
        );
    }
    assert_eq!(pair.peers[LEADER].ep.generation(), 0);
}

#[test]
fn a_flood_of_names_nobody_listens_for_never_keeps_out_a_listened_one() {
    let mut pair = connected_pair();
    let max = config("00").max_held;
    for i in 0..max + 40 {
        let _ = pair.open(FOLLOWER, &format!("junk-{i}"));
    }
    pair.run_for(SECOND);
    let held = pair.peers[LEADER].incoming.len();
    assert_eq!(held, max, "held subchannels are bounded across names");
    // the legitimate one still gets in
    pair.peers[LEADER].ep.listen("real");
    pair.open(FOLLOWER, "real");
    pair.run_for(SECOND);
    assert!(pair.peers[LEADER].incoming.iter().any(|(_, n)| n == "real"));
    // the 40 refusals are reported, the first at once and the rest in one report a second later (by now)
    let reports: Vec<u64> = pair.peers[LEADER]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Status(DilationEvent::PeerAbuse {
                abuse: PeerAbuse::TooManyWaiting,
                count,
            }) => Some(*count),
            _ => None,
        })
        .collect();
    assert_eq!(reports.iter().sum::<u64>(), 40, "{reports:?}");
    assert!(reports.len() <= 2, "{reports:?}");
}

#[test]
fn subchannels_nobody_listens_for_are_held_up_to_the_limit_then_refused() {
    let mut pair = connected_pair();
    let max = config("00").max_pending_opens;
    let ids: Vec<OpenId> = (0..max + 5)
        .map(|_| pair.open(FOLLOWER, "nobody"))
        .collect();
    pair.run_for(SECOND);
    let held = pair.peers[LEADER]
        .incoming
        .iter()
        .filter(|(_, n)| n == "nobody")
        .count();
    assert_eq!(held, max);
    // the refused ones are closed back to the opener
    let refused = ids
        .iter()
        .filter_map(|id| pair.scid(FOLLOWER, *id))
        .filter(|scid| pair.peers[FOLLOWER].read_closed.contains(scid))
        .count();
    assert_eq!(refused, 5);
    // a listener appearing takes the held ones; new ones are admitted again
    pair.peers[LEADER].ep.listen("nobody");
    pair.open(FOLLOWER, "nobody");
    pair.run_for(SECOND);
    let admitted = pair.peers[LEADER]
        .incoming
        .iter()
        .filter(|(_, n)| n == "nobody")
        .count();
    assert_eq!(admitted, max + 1);
}

#[test]
fn a_paused_reader_raises_the_unacknowledged_cap_and_resuming_restores_it() {
    let (mut c0, c1) = (config("ffffffffffffffff"), config("0000000000000001"));
    c0.unacked_limit = 64 * 1024;
    c0.paused_unacked_limit = 1 << 20;
    let mut pair = Pair::new(c0, c1);
    pair.start_dilation();
    assert!(pair.run_until(10 * SECOND, Pair::connected));
    let mut rng = Rng::new(9);
    let mut stream = Stream::new(&mut pair, LEADER, "a", 400_000, &mut rng);
    // the Follower's acknowledgements never arrive: the path is silent
    pair.blackhole = true;
    for _ in 0..100 {
        stream.write(&mut pair, 8192);
    }
    let capped = pair.peers[LEADER].transmitted;
    assert!(capped <= 64 * 1024 + 16 * 1024, "the cap holds: {capped}");
    // our reader of some subchannel is full: the cap rises, fresh records go
    pair.peers[LEADER].ep.handle_backlog(99, true);
    assert!(!pair.peers[LEADER].ep.wants_read());
    pair.pump();
    let raised = pair.peers[LEADER].transmitted;
    assert!(
        raised > 400_000,
        "the raised cap let fresh records go: {raised}"
    );
    pair.peers[LEADER].ep.handle_backlog(99, false);
    assert!(pair.peers[LEADER].ep.wants_read());
}

/// Random fault schedules: cuts, silent loss, mailbox and relay outages, at random times and for
/// random durations, in direct, relay-only and mixed sessions. Every stream arrives exactly once,
/// in order, and the session is connected again at the end.
#[test]
fn seeded_fault_schedules_deliver_every_byte_exactly_once_in_order() {
    let seeds: u64 = std::env::var("FOWL_HARNESS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let first: u64 = std::env::var("FOWL_HARNESS_FIRST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let losses: usize = (first..first + seeds).map(run_schedule).sum();
    // the faults bite: most schedules lose the connection at least once
    assert!(
        losses as u64 >= seeds / 2,
        "{losses} losses in {seeds} schedules"
    );
}

/// Runs one schedule; returns how often the Leader lost its connection.
fn run_schedule(seed: u64) -> usize {
    let mut rng = Rng::new(seed);
    let (mut c0, mut c1) = (config("ffffffffffffffff"), config("0000000000000001"));
    match rng.below(3) {
        0 => {}
        1 => {
            c0.no_listen = true;
            c1.no_listen = true;
        }
        _ => {
            c1.no_listen = true;
        }
    }
    if rng.below(2) == 0 {
        std::mem::swap(&mut c0.side, &mut c1.side); // peer 1 leads
    }
    let mut pair = Pair::new(c0, c1);
    pair.latency = Duration::from_millis(1 + rng.below(150));
    let mut streams = Vec::new();
    for (n, from) in [0, 1, 0, 1]
        .into_iter()
        .enumerate()
        .take(2 + rng.below(3) as usize)
    {
        let len = 1 + rng.below(120_000) as usize;
        streams.push(Stream::new(
            &mut pair,
            from,
            &format!("s{n}"),
            len,
            &mut rng,
        ));
    }
    pair.start_dilation();
    // the faults: (start ms, kind, duration ms)
    let mut faults: Vec<(u64, u64, u64)> = (0..1 + rng.below(4))
        .map(|_| (rng.below(20_000), rng.below(5), 1 + rng.below(25_000)))
        .collect();
    if std::env::var_os("FOWL_HARNESS_VERBOSE").is_some() {
        eprintln!("seed {seed}: faults {faults:?}");
    }
    faults.sort();
    let slice = Duration::from_millis(20);
    let mut ends: Vec<(Instant, u64)> = Vec::new();
    let start = pair.now;
    // paced so that the writing lasts about as long as the fault window
    let longest = streams.iter().map(|s| s.payload.len()).max().unwrap_or(1);
    let chunk = 1 + longest / (200 + rng.below(1000) as usize);
    let mut writing = true;
    let mut steps = 0;
    loop {
        let t = (pair.now - start).as_millis() as u64;
        while faults.first().is_some_and(|f| f.0 <= t) {
            let (_, kind, dur) = faults.remove(0);
            let until = pair.now + Duration::from_millis(dur);
            match kind {
                0 => pair.cut(),
                1 => pair.blackhole = true,
                2 => pair.set_mailbox(false),
                3 => pair.set_relay(false),
                _ => {
                    pair.cut();
                    pair.set_mailbox(false);
                }
            }
            ends.push((until, kind));
        }
        ends.retain(|(until, kind)| {
            if pair.now < *until {
                return true;
            }
            match kind {
                1 => pair.blackhole = false,
                2 | 4 => pair.set_mailbox(true),
                3 => pair.set_relay(true),
                _ => {}
            }
            false
        });
        if writing {
            writing = streams
                .iter_mut()
                .fold(false, |more, s| s.write(&mut pair, chunk) | more);
        }
        if !writing && faults.is_empty() && ends.is_empty() {
            break;
        }
        pair.run_for(slice);
        steps += 1;
        assert!(steps < 200_000, "seed {seed}: the schedule did not end");
    }
    let healed = pair.now;
    let ok = pair.run_until(120 * SECOND, |p| streams.iter().all(|s| s.complete(p)));
    if !ok {
        for (i, p) in pair.peers.iter().enumerate() {
            eprintln!("peer {i}: events {:?}", p.events);
            eprintln!("peer {i}: dials {:?}", p.dials);
        }
        eprintln!("faults ended at {:?}", healed - start);
    }
    assert!(
        ok,
        "seed {seed}: not every stream arrived within 120 s of the last fault ({:?} after the start); \
         leader state {:?}, follower state {:?}",
        healed - start,
        pair.peers[0].ep.manager_state(),
        pair.peers[1].ep.manager_state(),
    );
    assert_intact(&pair, &streams);
    let lost = |i| pair.count(i, |e| matches!(e, Event::ConnectionLost { .. }));
    eprintln!(
        "seed {seed}: {} streams, generation {}, {:?} virtual, lost {} / {}",
        streams.len(),
        pair.peers[0].ep.generation(),
        pair.elapsed(),
        lost(0),
        lost(1),
    );
    lost(0)
}

use std::time::Instant;

#[test]
fn hints_name_every_usable_address_and_loopback_only_when_nothing_else() {
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let hosts = |hints: Vec<Hint>| -> Vec<String> {
        hints
            .into_iter()
            .map(|h| match h {
                Hint::DirectTcp { hostname, .. } => hostname,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let all = [
        ip("127.0.0.1"),
        ip("198.18.0.1"),
        ip("::1"),
        ip("fe80::1"),
        ip("2001:db8::1"),
    ];
    assert_eq!(
        hosts(direct_hints(9, &all, false)),
        ["198.18.0.1", "2001:db8::1"]
    );
    assert_eq!(hosts(direct_hints(9, &all, true)), ["127.0.0.1", "::1"]);
    assert_eq!(
        hosts(direct_hints(9, &[ip("127.0.0.1")], false)),
        ["127.0.0.1"]
    );
    assert_eq!(hosts(direct_hints(9, &[], true)), ["127.0.0.1"]);
}

/// An endpoint of side ffff... (the Leader) with the key and the peer's versions, told `please`
/// by the peer; the actions it took.
fn leading_after_please(c: DilationConfig, now: Instant) -> (Endpoint, Vec<Action>) {
    let mut ep = Endpoint::new(c, "ffffffffffffffff");
    ep.handle_key(now, [7; 32]);
    ep.handle_peer_versions(now, vec!["ged".into()]);
    let please = br#"{"type": "please", "side": "0000000000000001", "use-version": "ged"}"#;
    ep.handle_dilate(now, please);
    let actions = std::iter::from_fn(|| ep.poll_action()).collect();
    (ep, actions)
}

#[test]
fn loopback_only_listens_advertises_and_dials_only_loopback() {
    let mut c = config("ffffffffffffffff"); // its relay is at 198.18.0.100
    c.loopback_only = true;
    let now = Instant::now();
    let (mut ep, actions) = leading_after_please(c, now);
    assert!(
        matches!(
            actions[..],
            [
                Action::SendDilate(_),
                Action::Listen {
                    generation: 0,
                    loopback: true
                }
            ]
        ),
        "no dial of the relay at 198.18.0.100: {actions:?}"
    );
    let interfaces = vec!["198.18.0.1".parse().unwrap(), "127.0.0.1".parse().unwrap()];
    ep.handle_listening(now, 0, Some((4000, interfaces)));
    let Some(Action::SendDilate(hints)) = ep.poll_action() else {
        panic!("hints are sent")
    };
    let hints = String::from_utf8(hints).unwrap();
    assert!(
        hints.contains("127.0.0.1") && !hints.contains("198.18"),
        "{hints}"
    );
    let peer = br#"{"type": "connection-hints", "hints": [
        {"type": "direct-tcp-v1", "priority": 0.0, "hostname": "198.18.0.2", "port": 4001},
        {"type": "direct-tcp-v1", "priority": 0.0, "hostname": "127.0.0.1", "port": 4002},
        {"type": "relay-v1", "hints": [{"type": "direct-tcp-v1", "priority": 0.0, "hostname": "198.18.0.3", "port": 4003}]}
    ]}"#;
    ep.handle_dilate(now, peer);
    let actions: Vec<Action> = std::iter::from_fn(|| ep.poll_action()).collect();
    assert_eq!(dialed(&actions), [("127.0.0.1".to_string(), 4002)]);
}

/// The hosts and ports `actions` dial.
fn dialed(actions: &[Action]) -> Vec<(String, u16)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Dial { host, port, .. } => Some((host.clone(), *port)),
            _ => None,
        })
        .collect()
}

#[test]
fn through_a_proxy_there_is_no_listener_no_direct_hint_and_only_relays_are_dialed() {
    let mut c = config("ffffffffffffffff"); // its relay is at 198.18.0.100
    c.proxy = Some("socks5h://127.0.0.1:9050".parse().unwrap());
    let now = Instant::now();
    let (mut ep, actions) = leading_after_please(c, now);
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Listen { .. })),
        "no listener: {actions:?}"
    );
    let hints: Vec<String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::SendDilate(m) => Some(String::from_utf8(m.clone()).unwrap()),
            _ => None,
        })
        .filter(|m| m.contains("connection-hints"))
        .collect();
    assert_eq!(hints.len(), 1, "{actions:?}");
    assert!(
        hints[0].contains("relay-v1") && hints[0].matches("direct-tcp-v1").count() == 1,
        "our relay only: {}",
        hints[0]
    );
    assert_eq!(dialed(&actions), [("198.18.0.100".to_string(), 4001)]);
    let peer = br#"{"type": "connection-hints", "hints": [
        {"type": "direct-tcp-v1", "priority": 0.0, "hostname": "198.18.0.2", "port": 4001},
        {"type": "direct-tcp-v1", "priority": 0.0, "hostname": "127.0.0.1", "port": 4002},
        {"type": "relay-v1", "hints": [{"type": "direct-tcp-v1", "priority": 0.0, "hostname": "relay.example", "port": 4003}]}
    ]}"#;
    ep.handle_dilate(now, peer);
    let actions: Vec<Action> = std::iter::from_fn(|| ep.poll_action()).collect();
    assert_eq!(dialed(&actions), [("relay.example".to_string(), 4003)]);
}

#[test]
fn running_out_of_sequence_numbers_stops_dilation_with_an_error_never_silently() {
    let mut pair = connected_pair();
    let mut rng = Rng::new(12);
    let mut stream = Stream::new(&mut pair, LEADER, "a", 10, &mut rng);
    pair.run_for(SECOND);
    let scid = pair.scid(LEADER, stream.open).expect("opened");
    stream.written = stream.payload.len(); // written by hand below
    let ep = &mut pair.peers[LEADER].ep;
    ep.session_mut().expect("a session").exhaust_seqnums(1);
    let now = pair.now;
    assert!(
        ep.send_data(now, scid, b"last".to_vec()),
        "the last sequence number"
    );
    assert!(
        !ep.send_data(now, scid, b"lost?".to_vec()),
        "refused, not dropped"
    );
    pair.pump();
    assert!(
        pair.peers[LEADER].events.iter().any(|e| matches!(
            e,
            Event::Status(DilationEvent::Failed(DilationError::SeqnumsExhausted))
        )),
        "the application is told"
    );
    assert_eq!(pair.peers[LEADER].ep.manager_state(), State::Stopped);
}

#[test]
fn a_cut_relay_connection_is_replaced_within_100_ms() {
    let (mut c0, mut c1) = (config("ffffffffffffffff"), config("0000000000000001"));
    c0.no_listen = true;
    c1.no_listen = true;
    let mut pair = Pair::new(c0, c1);
    pair.start_dilation();
    assert!(pair.run_until(10 * SECOND, Pair::connected));
    pair.run_for(SECOND);
    let cut = pair.now;
    pair.cut();
    assert!(pair.run_until(10 * SECOND, |p| p.connected()
        && p.peers[LEADER].ep.generation() == 1));
    let replaced = pair.now - cut;
    // a mailbox round trip and a relay connection (5 ms a hop here): no grace, no backoff
    assert!(
        replaced < Duration::from_millis(100),
        "replaced after {replaced:?}"
    );
}

#[test]
fn streams_opened_while_the_connection_is_down_arrive_once_it_is_back() {
    let mut pair = connected_pair();
    let mut rng = Rng::new(13);
    pair.blackhole = true;
    pair.run_for(SECOND);
    // opened and written during the outage, in both directions
    let mut streams = vec![
        Stream::new(&mut pair, LEADER, "during-a", 30_000, &mut rng),
        Stream::new(&mut pair, FOLLOWER, "during-b", 30_000, &mut rng),
    ];
    write_all(&mut pair, &mut streams, 4096, Duration::from_millis(100));
    pair.run_for(20 * SECOND);
    assert!(
        !streams.iter().any(|s| s.complete(&pair)),
        "nothing can arrive yet"
    );
    pair.blackhole = false;
    assert!(pair.run_until(60 * SECOND, |p| streams.iter().all(|s| s.complete(p))));
    assert_intact(&pair, &streams);
}

#[test]
fn our_own_opens_are_capped_too() {
    let (mut c0, c1) = (config("ffffffffffffffff"), config("0000000000000001"));
    c0.max_subchannels = 10;
    let mut pair = Pair::new(c0, c1);
    pair.start_dilation();
    assert!(pair.run_until(10 * SECOND, Pair::connected));
    let ids: Vec<OpenId> = (0..12).map(|_| pair.open(LEADER, "p")).collect();
    pair.run_for(SECOND);
    let opened = ids
        .iter()
        .filter(|id| pair.scid(LEADER, **id).is_some())
        .count();
    assert_eq!(opened, 10);
}

#[test]
fn two_of_ours_agree_on_windows_and_a_python_please_keeps_the_pause_model() {
    let pair = connected_pair();
    let window = config("00").inbound_limit;
    for i in [LEADER, FOLLOWER] {
        assert_eq!(pair.peers[i].ep.peer_window(), Some(window), "peer {i}");
    }
    // Python's please has no window: no flow control, whatever we announced
    let ep = listening_leader(std::time::Instant::now());
    assert_eq!(ep.peer_window(), None);
}
