use super::state::*;

const TOKEN: &str = "a7f0b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f";

fn hs(token: &str, side: Option<&str>) -> Handshake {
    Handshake {
        token: token.into(),
        side: side.map(Into::into),
    }
}

#[test]
fn parses_sided_and_legacy_lines() {
    let sided = format!("please relay {TOKEN} for side 0123456789abcdef");
    assert_eq!(
        parse_handshake(sided.as_bytes()),
        Some(hs(TOKEN, Some("0123456789abcdef")))
    );
    let legacy = format!("please relay {TOKEN}");
    assert_eq!(parse_handshake(legacy.as_bytes()), Some(hs(TOKEN, None)));
}

#[test]
fn refuses_malformed_lines() {
    let short = &TOKEN[..63];
    for bad in [
        String::new(),
        "please relay".into(),
        format!("please relay {short}"),
        format!("please relay {TOKEN}0"),
        format!("please relay {TOKEN} for side 0123"),
        format!("please relay {TOKEN} for side 0123456789abcdef0"),
        format!("please relay {TOKEN} for side 0123456789abcde-"),
        format!("please relay {TOKEN} for side"),
        format!("please  relay {TOKEN}"),
        format!("PLEASE RELAY {TOKEN}"),
        format!("please relay {TOKEN}\r"),
    ] {
        assert_eq!(parse_handshake(bad.as_bytes()), None, "{bad:?}");
    }
    assert_eq!(parse_handshake(&[0xff, 0xfe, b'\n']), None);
}

#[test]
fn pairs_different_sides_and_never_the_same_side() {
    let mut s = RelayState::new(10);
    assert_eq!(
        s.arrive(1, hs(TOKEN, Some("aaaaaaaaaaaaaaaa"))),
        Arrival::Wait
    );
    assert_eq!(
        s.arrive(2, hs(TOKEN, Some("aaaaaaaaaaaaaaaa"))),
        Arrival::Wait
    );
    assert_eq!(s.waiting(), 2);
    assert_eq!(
        s.arrive(3, hs(TOKEN, Some("bbbbbbbbbbbbbbbb"))),
        Arrival::Paired {
            partner: 1,
            redundant: vec![2]
        }
    );
    assert_eq!(s.waiting(), 0);
}

#[test]
fn an_unsided_connection_pairs_with_anyone_of_its_token() {
    let mut s = RelayState::new(10);
    assert_eq!(s.arrive(1, hs(TOKEN, None)), Arrival::Wait);
    let other = "b".repeat(64);
    assert_eq!(s.arrive(2, hs(&other, None)), Arrival::Wait);
    assert_eq!(
        s.arrive(3, hs(TOKEN, Some("aaaaaaaaaaaaaaaa"))),
        Arrival::Paired {
            partner: 1,
            redundant: vec![]
        }
    );
    assert_eq!(
        s.arrive(4, hs(&other, None)),
        Arrival::Paired {
            partner: 2,
            redundant: vec![]
        }
    );
}

#[test]
fn leaving_and_the_waiting_limit() {
    let mut s = RelayState::new(2);
    assert_eq!(
        s.arrive(1, hs(TOKEN, Some("aaaaaaaaaaaaaaaa"))),
        Arrival::Wait
    );
    assert_eq!(s.arrive(2, hs(&"c".repeat(64), None)), Arrival::Wait);
    assert_eq!(s.arrive(3, hs(&"d".repeat(64), None)), Arrival::Full);
    // a partner for a waiting token still pairs when the table is full
    assert!(matches!(
        s.arrive(4, hs(&"c".repeat(64), None)),
        Arrival::Paired { partner: 2, .. }
    ));
    assert!(s.leave(1, TOKEN));
    assert!(!s.leave(1, TOKEN));
    assert!(!s.leave(2, &"c".repeat(64)));
    assert_eq!(s.waiting(), 0);
    assert_eq!(
        s.arrive(5, hs(TOKEN, Some("bbbbbbbbbbbbbbbb"))),
        Arrival::Wait
    );
}
