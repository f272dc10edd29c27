//! Entry points for coverage-guided fuzzing (`fuzz/`, cargo-fuzz) and for the bounded smoke run
//! in the test suite (`tests/fuzz_smoke.rs`): one function per decoder that reads untrusted
//! bytes. Each takes arbitrary bytes, must never panic, and checks the invariants of its decoder
//! (round trips, bounded state). Not a stable API.

use std::time::{Duration, Instant};

use crate::dilation::l2::{L2Connection, Role};
use crate::dilation::record::Record;

/// A fuzz target: arbitrary bytes in, a panic on a broken invariant.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, for the smoke run.
pub const TARGETS: &[(&str, Target)] = &[
    ("mailbox_client", mailbox_client),
    ("mailbox_server", mailbox_server),
    ("wormhole_version", wormhole_version),
    ("l1_message", l1_message),
    ("l2_stream", l2_stream),
    ("record", record),
    ("session", session),
    ("peer_message", peer_message),
    ("fowld_line", fowld_line),
    ("relay_handshake", relay_handshake),
    ("specifier", specifier),
];

/// Frames from a mailbox server, fed to an opened client (the message parser and the client's
/// state machine).
pub fn mailbox_client(data: &[u8]) {
    let mut c = crate::mailbox::MailboxClient::new("appid", "side", 1);
    let now = Instant::now();
    c.start();
    c.connection_made(now);
    for frame in String::from_utf8_lossy(data).split('\n') {
        let _ = crate::mailbox::messages::parse(frame);
        c.heard(now);
        c.received(frame);
        while c.poll_action().is_some() {}
        while c.poll_event().is_some() {}
    }
}

/// Frames from clients, fed to the mailbox server's state (two connections).
pub fn mailbox_server(data: &[u8]) {
    let mut s = crate::server::mailbox::MailboxState::new(Default::default());
    s.connected(1, 0.0);
    s.connected(2, 0.0);
    for (i, frame) in String::from_utf8_lossy(data).split('\n').enumerate() {
        s.received(1 + (i as u64 % 2), frame, i as f64);
        while s.poll_transmit().is_some() {}
    }
    s.disconnected(1);
    let _ = s.prune(1e9);
}

/// The peer's decrypted `version` phase.
pub fn wormhole_version(data: &[u8]) {
    let _ = crate::wormhole::parse_version(data);
}

/// A `dilate-N` body: L1 messages and their hints; what parses re-encodes and parses the same.
pub fn l1_message(data: &[u8]) {
    if let Ok(msg) = crate::dilation::l1::L1Message::parse(data) {
        let again = crate::dilation::l1::L1Message::parse(&msg.encode());
        assert_eq!(again.as_ref(), Ok(&msg), "L1 round trip");
    }
}

/// Bytes from a Dilation connection before authentication, in chunks whose sizes the input
/// chooses: the prologue, frame reader and Noise handshake never panic and never buffer beyond
/// the handshake frame bound.
pub fn l2_stream(data: &[u8]) {
    for role in [Role::Leader, Role::Follower] {
        let mut c = L2Connection::new(role, &[7; 32], None);
        let mut rest = data;
        while let Some((&n, tail)) = rest.split_first() {
            let n = (n as usize % 64 + 1).min(tail.len());
            let (chunk, tail) = tail.split_at(n);
            rest = tail;
            if c.receive(chunk).is_err() {
                break;
            }
            while c.poll_event().is_some() {}
            let _ = c.take_output();
        }
    }
}

/// One L3 record: what decodes re-encodes to the same bytes.
pub fn record(data: &[u8]) {
    if let Ok(r) = Record::decode(data) {
        assert_eq!(r.encode(), data, "record round trip");
        assert_eq!(r.encoded_len(), data.len());
    }
}

/// A sequence of records from an authenticated peer, fed to the L4/L5 session: no panic, and
/// the state it keeps stays bounded by what the input can justify.
pub fn session(data: &[u8]) {
    let now = Instant::now();
    let mut s = crate::dilation::session::Session::new(
        Role::Leader,
        1 << 20,
        Duration::from_secs(10),
        true,
    );
    s.connection_made(now);
    let mut rest = data;
    let mut records = 0usize;
    while rest.len() >= 2 {
        let n = (u16::from_be_bytes([rest[0], rest[1]]) as usize % 256).min(rest.len() - 2);
        let (chunk, tail) = rest[2..].split_at(n);
        rest = tail;
        if let Ok(r) = Record::decode(chunk) {
            records += 1;
            s.heard(now);
            s.received(r);
        }
        while s.poll_event().is_some() {}
        if rest.first().is_some_and(|b| b % 7 == 0) {
            s.transmit(usize::MAX, |_| {});
        }
    }
    assert!(s.open_subchannels() <= records, "subchannels without OPENs");
    assert!(s.control_len() <= 1 + 16 + 1, "control records pile up");
}

/// A fowl peer message (msgpack body of a `fowl-commands` or stream frame).
pub fn peer_message(data: &[u8]) {
    if let Ok(fields) = crate::forward::frame::decode_body(data) {
        let _ = crate::forward::messages::Command::decode(&fields);
    }
}

/// One line of fowld's stdin.
pub fn fowld_line(data: &[u8]) {
    let _ = crate::interfaces::fowld::commands::parse(&String::from_utf8_lossy(data));
}

/// The first line a transit relay reads.
pub fn relay_handshake(data: &[u8]) {
    let _ = crate::server::relay::parse_handshake(data);
}

/// The CLI's `--local` / `--remote` specifiers and a code.
pub fn specifier(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::interfaces::cli::spec::parse_local(&text);
    let _ = crate::interfaces::cli::spec::parse_remote(&text);
    let _ = crate::code::Code::parse(&text);
}

/// Seed inputs of `target` (valid messages of each kind, from the reference's formats), for the
/// smoke run and as the starting corpus of cargo-fuzz (`tests/fuzz_smoke.rs` writes them out).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    use crate::dilation::hints::Hint;
    use crate::dilation::l1::L1Message;
    use crate::forward::messages::{Command, ListenerResponse, RequestListener};
    let lines = |ls: &[&str]| ls.iter().map(|l| l.as_bytes().to_vec()).collect();
    match target {
        "mailbox_client" => lines(&[
            r#"{"type": "welcome", "welcome": {"motd": "hi"}, "server_tx": 1.5}"#,
            r#"{"type": "ack", "id": "a1b2"}"#,
            r#"{"type": "claimed", "mailbox": "abcdefghijklm"}"#,
            r#"{"type": "nameplates", "nameplates": [{"id": "4"}]}"#,
            "{\"type\": \"message\", \"side\": \"x\", \"phase\": \"pake\", \"body\": \"00ff\", \"id\": \"1\"}\n{\"type\": \"released\"}",
            r#"{"type": "pong", "pong": 7}"#,
        ]),
        "mailbox_server" => lines(&[
            "{\"type\": \"bind\", \"appid\": \"a\", \"side\": \"s1\"}\n{\"type\": \"bind\", \"appid\": \"a\", \"side\": \"s2\"}\n{\"type\": \"allocate\"}\n{\"type\": \"claim\", \"nameplate\": \"1\"}\n{\"type\": \"open\", \"mailbox\": \"m\"}\n{\"type\": \"open\", \"mailbox\": \"m\"}\n{\"type\": \"add\", \"phase\": \"pake\", \"body\": \"00\"}\n{\"type\": \"release\"}\n{\"type\": \"close\", \"mood\": \"happy\"}",
            r#"{"type": "ping", "ping": 5}"#,
            "{\"type\": \"bind\", \"appid\": \"a\", \"side\": \"s1\"}\n{\"type\": \"list\"}",
        ]),
        "wormhole_version" => lines(&[
            r#"{"app_versions": {"fowl": {"features": ["core-v1"]}}, "can-dilate": ["ged"], "dilation-abilities": [{"type": "direct-tcp-v1"}, {"type": "relay-v1"}]}"#,
            "{}",
        ]),
        "l1_message" => {
            let hints = vec![
                Hint::direct("198.18.0.1", 4321),
                Hint::Relay(vec![Hint::direct("relay.example", 4001)]),
            ];
            vec![
                br#"{"type": "please", "side": "0123456789abcdef", "use-version": "ged"}"#.to_vec(),
                L1Message::ConnectionHints(hints).encode(),
                L1Message::Reconnect.encode(),
                L1Message::Reconnecting.encode(),
            ]
        }
        "l2_stream" => vec![
            Role::Leader.prologue().to_vec(),
            [Role::Follower.prologue(), &[0, 0, 0, 48][..], &[1; 48][..]].concat(),
            b"ok\n".to_vec(),
        ],
        "record" => [
            Record::Kcm,
            Record::Ping([1, 2, 3, 4]),
            Record::Pong([1, 2, 3, 4]),
            Record::Open { scid: 1, seqnum: 0, subprotocol: "fowl".into() },
            Record::Data { scid: 1, seqnum: 1, data: b"hello".to_vec() },
            Record::Close { scid: 1, seqnum: 2 },
            Record::Ack(2),
        ]
        .iter()
        .map(Record::encode)
        .collect(),
        "session" => {
            let framed = |records: &[Record]| -> Vec<u8> {
                records
                    .iter()
                    .flat_map(|r| {
                        let e = r.encode();
                        [(e.len() as u16).to_be_bytes().to_vec(), e].concat()
                    })
                    .collect()
            };
            vec![
                framed(&[
                    Record::Open { scid: 2, seqnum: 0, subprotocol: "fowl".into() },
                    Record::Data { scid: 2, seqnum: 1, data: b"x".to_vec() },
                    Record::Ping([0; 4]),
                    Record::Close { scid: 2, seqnum: 2 },
                    Record::Ack(0),
                ]),
                framed(&[Record::Open { scid: 1, seqnum: 0, subprotocol: "mine".into() }]),
            ]
        }
        "peer_message" => {
            let strip = |framed: Vec<u8>| framed.get(2..).map(<[u8]>::to_vec).unwrap_or_default();
            vec![
                strip(
                    Command::RequestListener(RequestListener {
                        name: "ssh".into(),
                        listen_port: Some(2222),
                    })
                    .encode(),
                ),
                strip(
                    Command::ListenerResponse(ListenerResponse::Listening {
                        name: "ssh".into(),
                        desired_port: Some(22),
                    })
                    .encode(),
                ),
            ]
        }
        "fowld_line" => lines(&[
            r#"{"kind": "allocate-code", "code-length": 2}"#,
            r#"{"kind": "set-code", "code": "1-foo-bar"}"#,
            r#"{"kind": "local", "name": "ssh", "listen": "tcp:2222:interface=localhost", "connect": "tcp:localhost:22"}"#,
            r#"{"kind": "remote", "name": "web", "listen": "tcp:8080", "connect": "tcp:localhost:80"}"#,
            r#"{"kind": "ping", "ping_id": 1}"#,
        ]),
        "relay_handshake" => lines(&[
            "please relay 0000000000000000000000000000000000000000000000000000000000000001 for side 0123456789abcdef",
            "please relay 0000000000000000000000000000000000000000000000000000000000000001",
        ]),
        "specifier" => lines(&["ssh:2222:bind=127.0.0.1:remote-connect=22", "web:/tmp/sock", "3-foo-bar"]),
        _ => Vec::new(),
    }
}
