//! The peer messages of the `fowl-commands` and `fowl` subprotocols (fowl 26.8, reference §5.3-5.5).

use rmpv::Value;

use super::frame::{self, Fields, FrameError};

/// `fowl-commands`: the fledge (`remote`) side asks the roost side to listen for `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestListener {
    pub name: String,
    /// The fledge's `remote_listen_port`.
    pub listen_port: Option<u16>,
}

/// `fowl-commands`: the answer to a [`RequestListener`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerResponse {
    Listening {
        name: String,
        /// The roost's `remote_connect_port`, when it set one.
        desired_port: Option<u16>,
    },
    Refused {
        name: String,
        reason: String,
    },
}

/// A message on a `fowl-commands` subchannel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    RequestListener(RequestListener),
    ListenerResponse(ListenerResponse),
    /// Any other `kind` (answered with nothing, reported locally).
    Unknown(String),
}

fn port_value(p: Option<u16>) -> Value {
    p.map_or(Value::Nil, Value::from)
}

/// A port field: absent or nil is `None`; anything but 1..=65535 is an error.
fn port_field(f: &Fields, key: &str) -> Result<Option<u16>, MessageError> {
    match f.get(key) {
        None | Some(Value::Nil) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|p| (1..=65535).contains(p))
            .map(|p| Some(p as u16))
            .ok_or_else(|| MessageError::Field(key.into())),
    }
}

/// Why a peer message was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("peer message lacks a valid '{0}'")]
    Field(String),
}

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        let fields: Vec<(&str, Value)> = match self {
            Command::RequestListener(r) => vec![
                ("kind", "request-listener".into()),
                ("unique-name", r.name.as_str().into()),
                ("listen-port", port_value(r.listen_port)),
            ],
            Command::ListenerResponse(ListenerResponse::Listening { name, desired_port }) => {
                let mut v = vec![
                    ("kind", "listener-response".into()),
                    ("unique-name", name.as_str().into()),
                    ("listening", true.into()),
                ];
                if let Some(p) = desired_port {
                    v.push(("desired-port", (*p).into()));
                }
                v
            }
            Command::ListenerResponse(ListenerResponse::Refused { name, reason }) => vec![
                ("kind", "listener-response".into()),
                ("unique-name", name.as_str().into()),
                ("listening", false.into()),
                ("reason", reason.as_str().into()),
            ],
            Command::Unknown(kind) => vec![("kind", kind.as_str().into())],
        };
        frame::encode(&fields).unwrap_or_else(|_| truncated_refusal())
    }

    pub fn decode(f: &Fields) -> Result<Command, MessageError> {
        let kind = f.str("kind").ok_or(MessageError::Field("kind".into()))?;
        let name = || {
            f.str("unique-name")
                .map(str::to_owned)
                .ok_or(MessageError::Field("unique-name".into()))
        };
        Ok(match kind {
            "request-listener" => Command::RequestListener(RequestListener {
                name: name()?,
                listen_port: port_field(f, "listen-port")?,
            }),
            "listener-response" => Command::ListenerResponse(match f.bool("listening") {
                Some(true) => ListenerResponse::Listening {
                    name: name()?,
                    desired_port: port_field(f, "desired-port")?,
                },
                _ => ListenerResponse::Refused {
                    name: name()?,
                    reason: f.str("reason").unwrap_or("Unknown").to_owned(),
                },
            }),
            other => Command::Unknown(other.to_owned()),
        })
    }
}

/// A message too long to frame (a name near 64 KiB) is answered with this instead.
fn truncated_refusal() -> Vec<u8> {
    frame::encode(&[
        ("kind", "listener-response".into()),
        ("unique-name", "".into()),
        ("listening", false.into()),
        ("reason", "name too long".into()),
    ])
    .unwrap_or_default()
}

/// `fowl`: the opener's first message on a stream subchannel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub name: String,
}

impl Handshake {
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        frame::encode(&[("unique-name", self.name.as_str().into())])
    }

    /// The name may be missing (Python reports `service_name: null` then).
    pub fn decode(f: &Fields) -> Option<String> {
        f.str("unique-name").map(str::to_owned)
    }
}

/// `fowl`: the acceptor's answer to a [`Handshake`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Connected,
    Refused(String),
}

impl Reply {
    pub fn encode(&self) -> Vec<u8> {
        let fields: Vec<(&str, Value)> = match self {
            Reply::Connected => vec![("connected", true.into())],
            Reply::Refused(reason) => {
                let reason: String = reason.chars().take(60_000).collect();
                vec![("connected", false.into()), ("reason", reason.into())]
            }
        };
        frame::encode(&fields).unwrap_or_default()
    }

    pub fn decode(f: &Fields) -> Reply {
        match f.bool("connected") {
            Some(true) => Reply::Connected,
            _ => Reply::Refused(f.str("reason").unwrap_or("Unknown").to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // reference §5.3, computed with Python's msgpack.packb
    const REQUEST: &str = "003483a46b696e64b0726571756573742d6c697374656e6572ab756e697175652d6e616d65a3666f6fab6c697374656e2d706f7274c0";
    const RESPONSE: &str = "004384a46b696e64b16c697374656e65722d726573706f6e7365ab756e697175652d6e616d65a3666f6fa96c697374656e696e67c3ac646573697265642d706f7274cd0457";
    const HANDSHAKE: &str = "001181ab756e697175652d6e616d65a3666f6f";
    const CONNECTED: &str = "000c81a9636f6e6e6563746564c3";
    const REFUSED: &str =
        "002882a9636f6e6e6563746564c2a6726561736f6eb4416761696e7374206c6f63616c20706f6c696379";

    #[test]
    fn reference_records_encode_byte_for_byte() {
        let req = Command::RequestListener(RequestListener {
            name: "foo".into(),
            listen_port: None,
        });
        assert_eq!(hex(&req.encode()), REQUEST);
        let resp = Command::ListenerResponse(ListenerResponse::Listening {
            name: "foo".into(),
            desired_port: Some(1111),
        });
        assert_eq!(hex(&resp.encode()), RESPONSE);
        let hs = Handshake { name: "foo".into() };
        assert_eq!(hex(&hs.encode().unwrap()), HANDSHAKE);
        assert_eq!(hex(&Reply::Connected.encode()), CONNECTED);
        assert_eq!(
            hex(&Reply::Refused("Against local policy".into()).encode()),
            REFUSED
        );
    }

    #[test]
    fn reference_records_decode() {
        let d = |h: &str| frame::decode(&unhex(h)).unwrap();
        assert_eq!(
            Command::decode(&d(REQUEST)).unwrap(),
            Command::RequestListener(RequestListener {
                name: "foo".into(),
                listen_port: None
            })
        );
        assert_eq!(
            Command::decode(&d(RESPONSE)).unwrap(),
            Command::ListenerResponse(ListenerResponse::Listening {
                name: "foo".into(),
                desired_port: Some(1111)
            })
        );
        assert_eq!(Handshake::decode(&d(HANDSHAKE)), Some("foo".into()));
        assert_eq!(Reply::decode(&d(CONNECTED)), Reply::Connected);
        assert_eq!(
            Reply::decode(&d(REFUSED)),
            Reply::Refused("Against local policy".into())
        );
    }

    #[test]
    fn malformed_frames_are_errors() {
        for bad in [
            "",
            "00",
            "0005",
            "0001c0",         // nil, not a map
            "000181",         // map of one entry, truncated
            "000281a1",       // key truncated
            "000381c3c3",     // non-string key
            "0002800000",     // length too short for the bytes
            "0001c1",         // reserved byte
            "0005dfffffffff", // map claiming 4 G entries
        ] {
            assert!(frame::decode(&unhex(bad)).is_err(), "{bad}");
        }
        let f = |pairs: &[(&str, Value)]| frame::decode(&frame::encode(pairs).unwrap()).unwrap();
        let bad_port = f(&[
            ("kind", "request-listener".into()),
            ("unique-name", "x".into()),
            ("listen-port", 70000.into()),
        ]);
        assert_eq!(
            Command::decode(&bad_port),
            Err(MessageError::Field("listen-port".into()))
        );
        assert_eq!(
            Command::decode(&f(&[("kind", 3.into())])),
            Err(MessageError::Field("kind".into()))
        );
        assert_eq!(
            Command::decode(&f(&[("kind", "fly".into())])).unwrap(),
            Command::Unknown("fly".into())
        );
        assert_eq!(
            Reply::decode(&f(&[("connected", false.into())])),
            Reply::Refused("Unknown".into())
        );
    }
}
