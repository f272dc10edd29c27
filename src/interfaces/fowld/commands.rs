//! fowld's input: one JSON object per stdin line (reference §4.2, plus our extensions). Every
//! refusal is a message for a JSON `error` line.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::forward::{LocalSpec, RemoteSpec};

/// Longest stdin line accepted, newline excluded.
pub const MAX_LINE: usize = 64 * 1024;

/// A parsed input command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `allocate-code`: allocate a fresh code.
    AllocateCode {
        /// Words in the code ([`DEFAULT_CODE_LENGTH`] when the line names none or 0).
        length: usize,
    },
    /// `set-code`: use the code the peer allocated.
    SetCode {
        /// The whole code, e.g. `4-purple-sausages`.
        code: String,
    },
    /// `remember` (ours): remember the peer under this local name, if it asks too
    /// (`protocol/remember.md`).
    Remember {
        /// The local name of the peer.
        name: String,
    },
    /// `connect` (ours): meet the remembered peer of this name, without a code, instead of
    /// `allocate-code`/`set-code`.
    Connect {
        /// The local name of the peer.
        name: String,
    },
    /// `local`: the peer may ask us to listen for this service.
    Local(LocalSpec),
    /// `remote`: ask the peer to listen for our service.
    Remote(RemoteSpec),
    /// `session-close`: close the session gracefully.
    SessionClose {
        /// Bound on the whole close, in seconds ([`DEFAULT_CLOSE_TIMEOUT`] when not given).
        timeout: f64,
    },
    /// `ping`: measure the round trip to the mailbox server (answered by `pong`).
    Ping {
        /// Any JSON from the controller, echoed in the `pong`.
        ping_id: Value,
    },
}

/// Code length when `allocate-code` names none.
pub const DEFAULT_CODE_LENGTH: usize = 2;
/// `session-close` timeout when none is given (seconds).
pub const DEFAULT_CLOSE_TIMEOUT: f64 = 10.0;

fn port(obj: &Map<String, Value>, key: &str) -> Result<Option<u16>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|p| (1..=65535).contains(p))
            .map(|p| Some(p as u16))
            .ok_or_else(|| format!("Invalid port: {v}")),
    }
}

fn text(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(format!("\"{key}\" must be a string, not {v}")),
    }
}

fn path(obj: &Map<String, Value>, key: &str) -> Result<Option<PathBuf>, String> {
    Ok(text(obj, key)?.map(PathBuf::from))
}

/// A service name: a non-empty string (numbers are taken as their text, like Python's `str()`).
fn name(obj: &Map<String, Value>) -> Result<String, String> {
    let name = match obj.get("name") {
        None | Some(Value::Null) => return Err("\"name\" is missing".into()),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(v) => return Err(format!("\"name\" must be a string, not {v}")),
    };
    if name.is_empty() || name.len() > 1024 {
        return Err("\"name\" must be 1 to 1024 bytes".into());
    }
    Ok(name)
}

/// A remembered peer's name (checked by [`crate::remember::valid_name`]).
fn peer_name(obj: &Map<String, Value>) -> Result<String, String> {
    let name = text(obj, "name")?.ok_or("\"name\" is missing")?;
    crate::remember::valid_name(&name).map_err(|e| e.to_string())?;
    Ok(name)
}

/// A controller line that is not a command we accept: the text of fowld's `error` line (the
/// reference's wording where it has one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(pub String);

/// Parses one line (without its newline).
pub fn parse(line: &str) -> Result<Command, CommandError> {
    parse_value(line).map_err(CommandError)
}

fn parse_value(line: &str) -> Result<Command, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("a command must be a JSON object".into());
    };
    let kind = match obj.get("kind") {
        Some(Value::String(k)) => k.as_str(),
        Some(_) => return Err("\"kind\" must be a string".into()),
        None => return Err("No 'kind' in command".into()),
    };
    Ok(match kind {
        "allocate-code" => {
            let length = match obj.get("length") {
                None | Some(Value::Null) => DEFAULT_CODE_LENGTH,
                Some(v) => match v.as_u64() {
                    Some(0) => DEFAULT_CODE_LENGTH,
                    Some(n @ 1..=16) => n as usize,
                    _ => return Err(format!("Invalid code length: {v} (1 to 16 words)")),
                },
            };
            Command::AllocateCode { length }
        }
        "set-code" => Command::SetCode {
            code: text(&obj, "code")?.ok_or("\"code\" is missing")?,
        },
        "remember" => Command::Remember {
            name: peer_name(&obj)?,
        },
        "connect" => Command::Connect {
            name: peer_name(&obj)?,
        },
        "local" => {
            let spec = LocalSpec {
                name: name(&obj)?,
                listen_port: port(&obj, "local_listen_port")?,
                bind: text(&obj, "bind_interface")?,
                remote_connect_port: port(&obj, "remote_connect_port")?,
                listen_unix: path(&obj, "local_listen_path")?,
            };
            if spec.listen_unix.is_some() && (spec.listen_port.is_some() || spec.bind.is_some()) {
                return Err(
                    "\"local_listen_path\" excludes \"local_listen_port\" and \"bind_interface\""
                        .into(),
                );
            }
            Command::Local(spec)
        }
        "remote" => {
            let spec = RemoteSpec {
                name: name(&obj)?,
                remote_listen_port: port(&obj, "remote_listen_port")?,
                local_connect_port: port(&obj, "local_connect_port")?,
                connect_address: text(&obj, "connect_address")?,
                connect_unix: path(&obj, "local_connect_path")?,
                allow_peer_port: match obj.get("allow_peer_port") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(v) => {
                        return Err(format!("\"allow_peer_port\" must be a boolean, not {v}"))
                    }
                },
            };
            if spec.connect_unix.is_some()
                && (spec.local_connect_port.is_some() || spec.connect_address.is_some())
            {
                return Err(
                    "\"local_connect_path\" excludes \"local_connect_port\" and \"connect_address\""
                        .into(),
                );
            }
            Command::Remote(spec)
        }
        "session-close" => {
            let timeout = match obj.get("timeout") {
                None | Some(Value::Null) => DEFAULT_CLOSE_TIMEOUT,
                Some(v) => v
                    .as_f64()
                    .filter(|t| *t > 0.0 && *t <= 3600.0)
                    .ok_or_else(|| format!("Invalid timeout: {v}"))?,
            };
            Command::SessionClose { timeout }
        }
        "ping" => Command::Ping {
            ping_id: obj
                .get("ping_id")
                .cloned()
                .ok_or("\"ping_id\" is missing")?,
        },
        other => return Err(format!("Unknown command kind: {other}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_commands() {
        assert_eq!(
            parse(r#"{"kind": "allocate-code", "length": 3}"#),
            Ok(Command::AllocateCode { length: 3 })
        );
        assert_eq!(
            parse(r#"{"kind": "allocate-code"}"#),
            Ok(Command::AllocateCode { length: 2 })
        );
        assert_eq!(
            parse(
                r#"{"kind": "local", "name": "web", "local_listen_port": 8080, "remote_connect_port": 80, "bind_interface": "192.0.2.5"}"#
            ),
            Ok(Command::Local(LocalSpec {
                name: "web".into(),
                listen_port: Some(8080),
                bind: Some("192.0.2.5".into()),
                remote_connect_port: Some(80),
                listen_unix: None
            }))
        );
        assert_eq!(
            parse(
                r#"{"kind": "remote", "name": "bar", "remote_listen_port": 8888, "local_connect_port": 3333, "connect_address": "localhost", "extra": 1}"#
            ),
            Ok(Command::Remote(RemoteSpec {
                name: "bar".into(),
                remote_listen_port: Some(8888),
                local_connect_port: Some(3333),
                connect_address: Some("localhost".into()),
                connect_unix: None,
                allow_peer_port: false,
            }))
        );
        assert_eq!(
            parse(r#"{"kind": "remote", "name": "x", "allow_peer_port": true}"#),
            Ok(Command::Remote(RemoteSpec {
                name: "x".into(),
                allow_peer_port: true,
                ..RemoteSpec::default()
            }))
        );
        assert!(parse(r#"{"kind": "remote", "name": "x", "allow_peer_port": 1}"#).is_err());
        assert_eq!(
            parse(r#"{"kind": "session-close", "timeout": 5}"#),
            Ok(Command::SessionClose { timeout: 5.0 })
        );
        assert_eq!(
            parse(r#"{"kind": "remember", "name": "alice"}"#),
            Ok(Command::Remember {
                name: "alice".into()
            })
        );
        assert_eq!(
            parse(r#"{"kind": "connect", "name": "alice"}"#),
            Ok(Command::Connect {
                name: "alice".into()
            })
        );
        assert!(parse(r#"{"kind": "connect", "name": "../etc/passwd"}"#).is_err());
        assert_eq!(
            parse(r#"{"kind": "ping", "ping_id": 1}"#),
            Ok(Command::Ping { ping_id: 1.into() })
        );
        assert_eq!(
            parse(r#"{"kind": "local", "name": 123}"#)
                .map(|c| matches!(c, Command::Local(s) if s.name == "123")),
            Ok(true)
        );
    }

    #[test]
    fn refusals_name_the_problem() {
        for (line, error) in [
            ("this is not json", "invalid JSON"),
            ("", "invalid JSON"),
            ("[1, 2]", "a command must be a JSON object"),
            (r#"{"no": "kind"}"#, "No 'kind' in command"),
            (
                r#"{"kind": "frobnicate"}"#,
                "Unknown command kind: frobnicate",
            ),
            (r#"{"kind": "local"}"#, "\"name\" is missing"),
            (
                r#"{"kind": "local", "name": "x", "local_listen_port": 0}"#,
                "Invalid port: 0",
            ),
            (
                r#"{"kind": "local", "name": "x", "local_listen_port": "80"}"#,
                "Invalid port: \"80\"",
            ),
            (
                r#"{"kind": "remote", "name": "x", "local_connect_port": 65536}"#,
                "Invalid port: 65536",
            ),
            (r#"{"kind": "set-code"}"#, "\"code\" is missing"),
            (r#"{"kind": "ping"}"#, "\"ping_id\" is missing"),
            (
                r#"{"kind": "grant-permission"}"#,
                "Unknown command kind: grant-permission",
            ),
            (
                r#"{"kind": "allocate-code", "length": -1}"#,
                "Invalid code length",
            ),
            (
                r#"{"kind": "session-close", "timeout": "soon"}"#,
                "Invalid timeout",
            ),
            (
                r#"{"kind": "local", "name": "x", "local_listen_path": "/s", "local_listen_port": 5}"#,
                "excludes",
            ),
        ] {
            let got = parse(line).unwrap_err();
            assert!(got.0.contains(error), "{line}: {got}");
        }
    }
}
