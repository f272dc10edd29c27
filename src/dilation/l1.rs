//! L1: the Dilation messages carried in `dilate-N` mailbox phases (reference §3.2) and version
//! negotiation (§3.1).

use serde_json::{json, Value};

use super::hints::Hint;

/// One Dilation mailbox message.
#[derive(Debug, Clone, PartialEq)]
pub enum L1Message {
    /// `half_close` is our extension (`"half-close": true`): the sender keeps a subchannel open
    /// for writing after receiving the peer's CLOSE. Python ignores the key and never sends it.
    ///
    /// `window` is our extension too (`"window": BYTES`): the sender's receive window per
    /// subchannel, for per-subchannel flow control with CREDIT records (`protocol/dilation.md`).
    Please {
        side: String,
        use_version: Option<String>,
        half_close: bool,
        window: Option<u32>,
    },
    ConnectionHints(Vec<Hint>),
    Reconnect,
    Reconnecting,
    /// A type we do not know: logged and ignored.
    Unknown(String),
}

/// Smallest window a peer may announce (a smaller one is taken as no window: the pause model).
pub const MIN_WINDOW: u32 = 64 << 10;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("malformed Dilation message: {0}")]
pub struct L1Error(pub String);

impl L1Message {
    pub fn parse(bytes: &[u8]) -> Result<L1Message, L1Error> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| L1Error(e.to_string()))?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| L1Error("no type".into()))?;
        Ok(match kind {
            "please" => L1Message::Please {
                side: v
                    .get("side")
                    .and_then(Value::as_str)
                    .ok_or_else(|| L1Error("please without side".into()))?
                    .into(),
                use_version: v
                    .get("use-version")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                half_close: v
                    .get("half-close")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                window: v
                    .get("window")
                    .and_then(Value::as_u64)
                    .and_then(|w| u32::try_from(w).ok())
                    .filter(|w| *w >= MIN_WINDOW),
            },
            "connection-hints" => {
                let hints = v
                    .get("hints")
                    .and_then(Value::as_array)
                    .ok_or_else(|| L1Error("hints without list".into()))?;
                L1Message::ConnectionHints(hints.iter().filter_map(Hint::from_json).collect())
            }
            "reconnect" => L1Message::Reconnect,
            "reconnecting" => L1Message::Reconnecting,
            other => L1Message::Unknown(other.into()),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let v = match self {
            L1Message::Please {
                side,
                use_version,
                half_close,
                window,
            } => {
                let mut v = json!({"type": "please", "side": side});
                if let Some(version) = use_version {
                    v["use-version"] = json!(version);
                }
                if *half_close {
                    v["half-close"] = json!(true);
                }
                if let Some(window) = window {
                    v["window"] = json!(window);
                }
                v
            }
            L1Message::ConnectionHints(hints) => {
                json!({"type": "connection-hints", "hints": hints.iter().map(Hint::to_json).collect::<Vec<_>>()})
            }
            L1Message::Reconnect => json!({"type": "reconnect"}),
            L1Message::Reconnecting => json!({"type": "reconnecting"}),
            L1Message::Unknown(kind) => json!({"type": kind}),
        };
        v.to_string().into_bytes()
    }
}

/// The version both sides use: the first of `mine` that `theirs` also lists.
pub fn find_shared_version<'a>(mine: &[&'a str], theirs: &[String]) -> Option<&'a str> {
    mine.iter().copied().find(|m| theirs.iter().any(|t| t == m))
}

/// A fresh Dilation side: 16 lowercase hex characters.
pub fn random_side() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pythons_messages() {
        let cases: [(&str, L1Message); 5] = [
            (
                r#"{"type": "please", "side": "45b1d33b406c01dd", "use-version": "ged"}"#,
                L1Message::Please {
                    side: "45b1d33b406c01dd".into(),
                    use_version: Some("ged".into()),
                    half_close: false,
                    window: None,
                },
            ),
            (
                r#"{"type": "connection-hints", "hints": [{"type": "direct-tcp-v1", "priority": 0.0, "hostname": "192.0.2.2", "port": 38081}]}"#,
                L1Message::ConnectionHints(vec![Hint::direct("192.0.2.2", 38081)]),
            ),
            (r#"{"type": "reconnect"}"#, L1Message::Reconnect),
            (r#"{"type": "reconnecting"}"#, L1Message::Reconnecting),
            (r#"{"type": "future"}"#, L1Message::Unknown("future".into())),
        ];
        for (text, want) in cases {
            let got = L1Message::parse(text.as_bytes()).unwrap();
            assert_eq!(got, want);
            assert_eq!(L1Message::parse(&got.encode()).unwrap(), want);
        }
        for bad in [
            "",
            "{}",
            "[1]",
            r#"{"type": "please"}"#,
            r#"{"type": "connection-hints"}"#,
            r#"{"type": 1}"#,
        ] {
            assert!(L1Message::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn please_carries_our_half_close_extension() {
        let ours = L1Message::Please {
            side: "ab".repeat(8),
            use_version: Some("ged".into()),
            half_close: true,
            window: Some(1 << 20),
        };
        let v: Value = serde_json::from_slice(&ours.encode()).unwrap();
        assert_eq!(v["half-close"], true);
        assert_eq!(v["window"], 1 << 20);
        // a window below the minimum, or not a number, is no window
        for bad in [r#""window": 1024"#, r#""window": "big""#, r#""window": -1"#] {
            let text = format!(r#"{{"type": "please", "side": "ab", {bad}}}"#);
            let parsed = L1Message::parse(text.as_bytes()).unwrap();
            assert!(
                matches!(parsed, L1Message::Please { window: None, .. }),
                "{bad}"
            );
        }
        assert_eq!(v["use-version"], "ged");
        assert_eq!(L1Message::parse(&ours.encode()).unwrap(), ours);
    }

    #[test]
    fn version_negotiation_prefers_our_order() {
        let theirs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            find_shared_version(&["ged"], &theirs(&["ged"])),
            Some("ged")
        );
        assert_eq!(find_shared_version(&["ged"], &theirs(&["1"])), None);
        assert_eq!(
            find_shared_version(&["b", "a"], &theirs(&["a", "b"])),
            Some("b")
        );
        assert_eq!(find_shared_version(&["ged"], &[]), None);
        let side = random_side();
        assert_eq!(side.len(), 16);
        assert!(side
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
}
