//! L2 against the reference's Noise vectors (wormhole-dilation.md §7.2) and hostile input.

use super::*;
use crate::dilation::record::Record;
use crate::key::Key;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace([' ', '\n'], "")).unwrap()
}

fn dilation_key() -> Key {
    h("4e01b8cadfae3cacf6919fb8dd0c3da2cc6722430324bd729e854474fa966d91")
        .try_into()
        .unwrap()
}

fn pair() -> (L2Connection, L2Connection) {
    let k = dilation_key();
    (
        L2Connection::with_ephemeral(Role::Leader, &k, None, Some([0x11; 32])),
        L2Connection::with_ephemeral(Role::Follower, &k, None, Some([0x22; 32])),
    )
}

fn events(c: &mut L2Connection) -> Vec<L2Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

#[test]
fn handshake_and_records_match_python_bytes() {
    let (mut l, mut f) = pair();
    assert_eq!(l.take_output(), PROLOGUE_LEADER);
    assert_eq!(f.take_output(), PROLOGUE_FOLLOWER);
    assert_eq!(PROLOGUE_LEADER.len(), 45);
    assert_eq!(PROLOGUE_FOLLOWER.len(), 47);

    l.receive(PROLOGUE_FOLLOWER).unwrap();
    let msg1 = l.take_output();
    assert_eq!(
        msg1,
        h("00000030 7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13ca65dfd49169f6babb9e6b775254507c")
    );
    f.receive(PROLOGUE_LEADER).unwrap();
    assert!(f.take_output().is_empty(), "the follower waits for msg1");
    f.receive(&msg1).unwrap();
    let out = f.take_output();
    assert_eq!(
        out,
        h("00000030 0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f2002ea36633ac757df0cddbe2f1ad7ebe0
           000000112b1f78caa8400279cc5122e7f8e948aa9d")
    );
    l.receive(&out).unwrap();
    assert_eq!(events(&mut l), vec![L2Event::Ready]);
    assert!(
        l.take_output().is_empty(),
        "the leader sends nothing before selecting"
    );
    l.select();
    l.send_record(&Record::Open {
        scid: 1,
        seqnum: 0,
        subprotocol: "hello".into(),
    });
    l.send_record(&Record::Data {
        scid: 1,
        seqnum: 1,
        data: b"hi".to_vec(),
    });
    let out = l.take_output();
    assert_eq!(
        out,
        h("00000011c40efae7e4b733b5ff20319a9c9ac7eb5b
           0000001ed559bbd22c92f10f3a48c981088f4b2db0532592a5bf9273ae48c7614875
           0000001b7765e823d321b7062d67a630383d763b4355a2a65f519d8e6625d2")
    );
    // the leader's KCM and two records in one chunk (test_follower_combined)
    f.receive(&out).unwrap();
    assert_eq!(
        events(&mut f),
        vec![
            L2Event::Ready,
            L2Event::Record(Record::Open {
                scid: 1,
                seqnum: 0,
                subprotocol: "hello".into()
            }),
            L2Event::Record(Record::Data {
                scid: 1,
                seqnum: 1,
                data: b"hi".to_vec()
            }),
        ]
    );
    f.send_record(&Record::Ack(0));
    assert_eq!(
        f.take_output(),
        h("0000001556d226b98431b557930326015b052e2a14da9e5726")
    );
}

fn open_pair() -> (L2Connection, L2Connection) {
    let (mut l, mut f) = pair();
    let (lo, fo) = (l.take_output(), f.take_output());
    l.receive(&fo).unwrap();
    f.receive(&lo).unwrap();
    f.receive(&l.take_output()).unwrap();
    l.receive(&f.take_output()).unwrap();
    l.select();
    f.receive(&l.take_output()).unwrap();
    assert_eq!(events(&mut l), vec![L2Event::Ready]);
    assert_eq!(events(&mut f), vec![L2Event::Ready]);
    (l, f)
}

#[test]
fn large_records_are_chunked_inside_one_frame() {
    let (mut l, mut f) = open_pair();
    // test_record.py::test_large_frame: a 65537-byte record
    let big = Record::Data {
        scid: 1,
        seqnum: 0,
        data: vec![0xff; 65528],
    };
    l.send_record(&big);
    let out = l.take_output();
    assert_eq!(&out[..4], &65569u32.to_be_bytes());
    assert_eq!(out.len(), 4 + 65569);
    // byte by byte delivery works as well
    for b in out.chunks(7000) {
        f.receive(b).unwrap();
    }
    assert_eq!(events(&mut f), vec![L2Event::Record(big)]);
    let huge = Record::Data {
        scid: 1,
        seqnum: 1,
        data: vec![7; 3 * 65519 + 5],
    };
    l.send_record(&huge);
    f.receive(&l.take_output()).unwrap();
    assert_eq!(events(&mut f), vec![L2Event::Record(huge)]);
}

#[test]
fn relay_line_then_ok_then_prologue() {
    let k = dilation_key();
    assert_eq!(
        relay_line(&crate::key::relay_token(&k), "0123456789abcdef"),
        b"please relay 3b85b70dc4a7e2adf2c0a2da14d3776d9ffc9a2809e9c894c7cd091783382598 for side 0123456789abcdef\n"
    );
    let mut c = L2Connection::new(
        Role::Leader,
        &k,
        Some(b"please relay x for side y\n".to_vec()),
    );
    assert_eq!(c.take_output(), b"please relay x for side y\n");
    c.receive(b"o").unwrap();
    c.receive(b"k").unwrap();
    assert!(c.take_output().is_empty(), "nothing before ok");
    c.receive(b"\n").unwrap();
    assert_eq!(c.take_output(), PROLOGUE_LEADER);

    for refusal in [&b"impatient\n"[..], b"bad handshake\n", b"o\n", b"okk"] {
        let mut c = L2Connection::new(Role::Follower, &k, Some(b"x\n".to_vec()));
        assert!(
            matches!(c.receive(refusal), Err(L2Error::RelayRefused(_))),
            "{refusal:?}"
        );
    }
}

#[test]
fn hostile_input_drops_the_connection() {
    let k = dilation_key();
    // bad prologue, detected as early as the first wrong byte
    let mut l = L2Connection::new(Role::Leader, &k, None);
    assert_eq!(
        l.receive(b"Magic-Wormhole Dilation Handshake v1 Leader\n\n"),
        Err(L2Error::BadPrologue)
    );
    assert_eq!(l.receive(PROLOGUE_FOLLOWER), Err(L2Error::Closed));
    let mut l = L2Connection::new(Role::Leader, &k, None);
    assert_eq!(l.receive(b"GET / HTTP/1.1\r\n"), Err(L2Error::BadPrologue));

    // oversized length: rejected before anything is buffered
    let mut f = L2Connection::new(Role::Follower, &k, None);
    f.receive(PROLOGUE_LEADER).unwrap();
    assert!(matches!(
        f.receive(&[0xff, 0xff, 0xff, 0xff]),
        Err(L2Error::FrameTooLarge { .. })
    ));

    // garbage handshake
    let mut f = L2Connection::new(Role::Follower, &k, None);
    f.receive(PROLOGUE_LEADER).unwrap();
    let mut junk = 48u32.to_be_bytes().to_vec();
    junk.extend_from_slice(&[0x41; 48]);
    assert!(matches!(f.receive(&junk), Err(L2Error::Noise(_))));
    let mut f = L2Connection::new(Role::Follower, &k, None);
    f.receive(PROLOGUE_LEADER).unwrap();
    assert!(matches!(
        f.receive(&[0, 0, 0, 3, 1, 2, 3]),
        Err(L2Error::Noise(_))
    ));

    // wrong PSK: the handshake fails
    let (mut l, _) = pair();
    let mut f = L2Connection::new(Role::Follower, &[9; 32], None);
    f.receive(&l.take_output()).unwrap_or(());
    l.receive(&f.take_output()).unwrap();
    f.receive(&l.take_output()).unwrap_err();

    // after the handshake: tampered frame, unknown tag, non-KCM first record
    let (mut l, mut f) = open_pair();
    l.send_record(&Record::Ack(1));
    let mut out = l.take_output();
    *out.last_mut().unwrap() ^= 1;
    assert!(matches!(f.receive(&out), Err(L2Error::Noise(_))));

    let (mut l, mut f) = open_pair();
    l.send_encoded(&[0x09, 1, 2]);
    assert!(matches!(
        f.receive(&l.take_output()),
        Err(L2Error::Record(_))
    ));

    let (mut l, mut f) = pair();
    let (lo, fo) = (l.take_output(), f.take_output());
    l.receive(&fo).unwrap();
    f.receive(&lo).unwrap();
    f.receive(&l.take_output()).unwrap();
    l.receive(&f.take_output()).unwrap();
    l.send_record(&Record::Ping([1, 2, 3, 4])); // a record where the KCM belongs
    assert_eq!(f.receive(&l.take_output()), Err(L2Error::NotKcm));
}

#[test]
fn a_long_frame_before_the_handshake_is_refused_before_it_is_buffered() {
    // an unauthenticated client sends the (public) prologue, then announces a 1 MiB frame
    // where the first handshake message belongs
    let mut hostile = Role::Leader.prologue().to_vec();
    hostile.extend_from_slice(&(1u32 << 20).to_be_bytes());
    let mut g = L2Connection::new(Role::Follower, &dilation_key(), None);
    assert_eq!(
        g.receive(&hostile),
        Err(L2Error::FrameTooLarge {
            len: 1 << 20,
            max: HANDSHAKE_MAX_FRAME
        })
    );
}

#[test]
fn frame_limit_is_configurable() {
    let (mut l, mut f) = open_pair();
    f.set_max_frame(1000);
    l.send_record(&Record::Data {
        scid: 1,
        seqnum: 0,
        data: vec![0; 2000],
    });
    assert_eq!(
        f.receive(&l.take_output()),
        Err(L2Error::FrameTooLarge {
            len: 2025,
            max: 1000
        })
    );
}

#[test]
fn halves_keep_the_ciphers_and_buffered_bytes() {
    let (mut l, mut f) = open_pair();
    l.send_record(&Record::Ack(1));
    let out = l.take_output();
    // half a frame arrives before the split
    f.receive(&out[..5]).unwrap();
    let (mut lsend, _lrecv) = l.into_halves().unwrap();
    let (_fsend, mut frecv) = f.into_halves().unwrap();
    let mut records = Vec::new();
    frecv.receive(&out[5..], &mut records).unwrap();
    let (mut wire, mut scratch) = (Vec::new(), Vec::new());
    lsend.seal_record(
        &Record::Data {
            scid: 1,
            seqnum: 0,
            data: vec![1; 100_000],
        },
        &mut wire,
        &mut scratch,
    );
    frecv.receive(&wire, &mut records).unwrap();
    assert_eq!(
        records,
        vec![
            Record::Ack(1),
            Record::Data {
                scid: 1,
                seqnum: 0,
                data: vec![1; 100_000]
            }
        ]
    );
    let mut bad = Vec::new();
    lsend.seal_record(&Record::Ack(2), &mut bad, &mut scratch);
    *bad.last_mut().unwrap() ^= 0x80;
    assert!(frecv.receive(&bad, &mut records).is_err());
    // a connection that is not open does not split
    let (l, _) = pair();
    assert!(l.into_halves().is_none());
}

#[test]
fn a_follower_can_hold_its_kcm_back() {
    let (mut l, mut f) = pair();
    f.hold_kcm();
    let (lo, fo) = (l.take_output(), f.take_output());
    l.receive(&fo).unwrap();
    f.receive(&lo).unwrap();
    f.receive(&l.take_output()).unwrap();
    assert!(f.kcm_held());
    let msg2 = f.take_output();
    assert_eq!(msg2.len(), 4 + 48, "msg2 only, no KCM yet");
    l.receive(&msg2).unwrap();
    assert!(
        events(&mut l).is_empty(),
        "no candidate without the follower's KCM"
    );
    f.release_kcm();
    assert!(!f.kcm_held());
    l.receive(&f.take_output()).unwrap();
    assert_eq!(events(&mut l), vec![L2Event::Ready]);
}

#[test]
fn a_connection_near_the_end_of_its_nonces_is_worn_out_and_never_panics() {
    let (l, f) = open_pair();
    let (mut lsend, _lrecv) = l.into_halves().unwrap();
    let (_fsend, mut frecv) = f.into_halves().unwrap();
    assert!(!lsend.worn_out());
    lsend.skip_to_nonce(super::noise::NONCE_LIMIT);
    assert!(lsend.worn_out(), "the driver replaces the connection now");
    // a peer that goes on to the very last nonce gets an error, not a panic
    lsend.skip_to_nonce(u64::MAX - 1);
    frecv.skip_to_nonce(u64::MAX - 1);
    let (mut wire, mut scratch, mut records) = (Vec::new(), Vec::new(), Vec::new());
    lsend.seal_record(&Record::Ack(1), &mut wire, &mut scratch);
    frecv.receive(&wire, &mut records).unwrap();
    assert_eq!(records, vec![Record::Ack(1)]);
    // the receiver is at the last nonce now: one more message is an error (the connection is
    // dropped and replaced), not the cipher's panic
    assert!(frecv.receive(&wire, &mut records).is_err());
}
