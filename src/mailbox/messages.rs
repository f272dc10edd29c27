//! Mailbox server messages (reference §1.3-1.4): parsing what the server sends, never panicking,
//! and building what the client sends.

use serde_json::{json, Map, Value};

/// Largest WebSocket message we accept from a mailbox server.
pub const MAX_SERVER_MESSAGE: usize = 1 << 20;

/// A message from the mailbox server.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    Welcome(Welcome),
    Ack,
    Nameplates(Vec<String>),
    Allocated(String),
    Claimed(String),
    Released,
    Message {
        side: String,
        phase: String,
        body: Vec<u8>,
    },
    Closed,
    Pong(i64),
    Error {
        error: String,
        orig: Option<Value>,
    },
    /// A message type this client does not know; ignored.
    Unknown(String),
}

/// The `welcome` object; unknown keys are ignored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Welcome {
    pub motd: Option<String>,
    pub error: Option<String>,
    pub current_cli_version: Option<String>,
    /// The whole object, as the server sent it.
    pub raw: Value,
}

/// Why a server message could not be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("server message is not a JSON object: {0}")]
    NotJson(String),
    #[error("server message has no string \"type\"")]
    NoType,
    #[error("server {kind:?} message lacks a valid {field:?} field")]
    Field { kind: String, field: &'static str },
}

fn text(obj: &Map<String, Value>, kind: &str, field: &'static str) -> Result<String, ParseError> {
    obj.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ParseError::Field {
            kind: kind.into(),
            field,
        })
}

fn optional_text(obj: &Map<String, Value>, field: &str) -> Option<String> {
    obj.get(field).and_then(Value::as_str).map(str::to_owned)
}

/// Parses one text frame from the server.
pub fn parse(frame: &str) -> Result<ServerMessage, ParseError> {
    let value: Value =
        serde_json::from_str(frame).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(ParseError::NotJson("not an object".into()));
    };
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or(ParseError::NoType)?;
    let field_err = |field| ParseError::Field {
        kind: kind.into(),
        field,
    };
    Ok(match kind {
        "welcome" => {
            let w = obj
                .get("welcome")
                .and_then(Value::as_object)
                .ok_or_else(|| field_err("welcome"))?;
            ServerMessage::Welcome(Welcome {
                motd: optional_text(w, "motd"),
                error: optional_text(w, "error"),
                current_cli_version: optional_text(w, "current_cli_version"),
                raw: Value::Object(w.clone()),
            })
        }
        "ack" => ServerMessage::Ack,
        "nameplates" => {
            let list = obj
                .get("nameplates")
                .and_then(Value::as_array)
                .ok_or_else(|| field_err("nameplates"))?;
            let ids = list
                .iter()
                .map(|n| n.get("id").and_then(Value::as_str).map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| field_err("nameplates"))?;
            ServerMessage::Nameplates(ids)
        }
        "allocated" => ServerMessage::Allocated(text(&obj, kind, "nameplate")?),
        "claimed" => ServerMessage::Claimed(text(&obj, kind, "mailbox")?),
        "released" => ServerMessage::Released,
        "message" => ServerMessage::Message {
            side: text(&obj, kind, "side")?,
            phase: text(&obj, kind, "phase")?,
            body: hex::decode(text(&obj, kind, "body")?).map_err(|_| field_err("body"))?,
        },
        "closed" => ServerMessage::Closed,
        "pong" => ServerMessage::Pong(
            obj.get("pong")
                .and_then(Value::as_i64)
                .ok_or_else(|| field_err("pong"))?,
        ),
        "error" => ServerMessage::Error {
            error: text(&obj, kind, "error")?,
            orig: obj.get("orig").cloned(),
        },
        other => ServerMessage::Unknown(other.into()),
    })
}

/// A message from the client to the server. `id` is added when it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    Bind { appid: String, side: String },
    List,
    Allocate,
    Claim { nameplate: String },
    Release { nameplate: String },
    Open { mailbox: String },
    Add { phase: String, body: Vec<u8> },
    Close { mailbox: String, mood: String },
    Ping { ping: i64 },
}

impl ClientMessage {
    /// The JSON text frame, with the message `id`.
    pub fn to_frame(&self, id: &str) -> String {
        let mut v = match self {
            ClientMessage::Bind { appid, side } => json!({
                "appid": appid, "side": side,
                "client_version": ["rust-fowl", env!("CARGO_PKG_VERSION")],
            }),
            ClientMessage::List | ClientMessage::Allocate => json!({}),
            ClientMessage::Claim { nameplate } | ClientMessage::Release { nameplate } => {
                json!({ "nameplate": nameplate })
            }
            ClientMessage::Open { mailbox } => json!({ "mailbox": mailbox }),
            ClientMessage::Add { phase, body } => {
                json!({ "phase": phase, "body": hex::encode(body) })
            }
            ClientMessage::Close { mailbox, mood } => json!({ "mailbox": mailbox, "mood": mood }),
            ClientMessage::Ping { ping } => json!({ "ping": ping }),
        };
        let obj = v.as_object_mut().expect("client messages are objects");
        obj.insert("id".into(), id.into());
        obj.insert("type".into(), self.kind().into());
        v.to_string()
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ClientMessage::Bind { .. } => "bind",
            ClientMessage::List => "list",
            ClientMessage::Allocate => "allocate",
            ClientMessage::Claim { .. } => "claim",
            ClientMessage::Release { .. } => "release",
            ClientMessage::Open { .. } => "open",
            ClientMessage::Add { .. } => "add",
            ClientMessage::Close { .. } => "close",
            ClientMessage::Ping { .. } => "ping",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_reference_messages() {
        let w = parse(r#"{"welcome": {"current_cli_version": "0.24.0", "motd": "hi", "your-address": {"port": 1, "ipv4": "127.0.0.1"}}, "type": "welcome", "server_tx": 1.5}"#).unwrap();
        assert_eq!(
            w,
            ServerMessage::Welcome(Welcome {
                motd: Some("hi".into()),
                error: None,
                current_cli_version: Some("0.24.0".into()),
                raw: serde_json::json!({"current_cli_version": "0.24.0", "motd": "hi", "your-address": {"port": 1, "ipv4": "127.0.0.1"}}),
            })
        );
        assert_eq!(
            parse(r#"{"id": null, "type": "ack", "server_tx": 1}"#).unwrap(),
            ServerMessage::Ack
        );
        assert_eq!(
            parse(r#"{"nameplates": [{"id": "1"}, {"id": "23"}], "type": "nameplates"}"#).unwrap(),
            ServerMessage::Nameplates(vec!["1".into(), "23".into()])
        );
        assert_eq!(
            parse(r#"{"side": "ab", "phase": "pake", "body": "7b7d", "server_rx": 1, "id": "x", "type": "message"}"#).unwrap(),
            ServerMessage::Message { side: "ab".into(), phase: "pake".into(), body: b"{}".to_vec() }
        );
        assert_eq!(
            parse(r#"{"type": "pong", "pong": 7}"#).unwrap(),
            ServerMessage::Pong(7)
        );
        assert_eq!(
            parse(r#"{"type": "future-thing"}"#).unwrap(),
            ServerMessage::Unknown("future-thing".into())
        );
        assert!(
            matches!(parse(r#"{"type": "error", "error": "crowded", "orig": {}}"#).unwrap(),
            ServerMessage::Error { error, .. } if error == "crowded")
        );
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        let cases = [
            "",
            "nope",
            "[]",
            "42",
            "null",
            r#"{"type": 5}"#,
            r#"{"no": "type"}"#,
            r#"{"type": "welcome"}"#,
            r#"{"type": "welcome", "welcome": []}"#,
            r#"{"type": "message", "side": "a", "phase": "p"}"#,
            r#"{"type": "message", "side": "a", "phase": "p", "body": "zz"}"#,
            r#"{"type": "message", "side": 1, "phase": "p", "body": ""}"#,
            r#"{"type": "nameplates", "nameplates": [{"id": 1}]}"#,
            r#"{"type": "allocated"}"#,
            r#"{"type": "claimed", "mailbox": null}"#,
            r#"{"type": "pong", "pong": "x"}"#,
            r#"{"type": "error"}"#,
        ];
        for c in cases {
            assert!(parse(c).is_err(), "{c:?} should not parse");
        }
        let deep = "[".repeat(100_000);
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn client_frames_carry_id_and_type() {
        let f = ClientMessage::Add {
            phase: "pake".into(),
            body: b"{}".to_vec(),
        }
        .to_frame("0a3e");
        let v: Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["type"], "add");
        assert_eq!(v["id"], "0a3e");
        assert_eq!(v["body"], "7b7d");
        let b: Value = serde_json::from_str(
            &ClientMessage::Bind {
                appid: "a".into(),
                side: "s".into(),
            }
            .to_frame("1"),
        )
        .unwrap();
        assert_eq!(b["client_version"][0], "rust-fowl");
    }
}
