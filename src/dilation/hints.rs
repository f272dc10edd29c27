//! Connection hints (reference §3.5) and the `tcp:HOST:PORT` relay location syntax.

use serde_json::{json, Value};

/// Where a peer may be reached.
#[derive(Debug, Clone, PartialEq)]
pub enum Hint {
    /// `direct-tcp-v1`: a TCP address (of the peer, or inside a relay hint, of the relay).
    DirectTcp {
        /// Host name or IP address.
        hostname: String,
        /// TCP port.
        port: u16,
        /// The sender's preference (higher first); we dial all at once.
        priority: f64,
    },
    /// Parsed for completeness; only usable through Tor, which we do not speak.
    TorTcp {
        /// The onion host name.
        hostname: String,
        /// TCP port.
        port: u16,
        /// The sender's preference.
        priority: f64,
    },
    /// A transit relay, reached through any of its endpoint hints.
    Relay(Vec<Hint>),
}

impl Hint {
    /// A `direct-tcp-v1` hint with priority 0.
    pub fn direct(hostname: &str, port: u16) -> Hint {
        Hint::DirectTcp {
            hostname: hostname.into(),
            port,
            priority: 0.0,
        }
    }

    /// The JSON form, with Python's key order.
    pub fn to_json(&self) -> Value {
        match self {
            Hint::DirectTcp {
                hostname,
                port,
                priority,
            } => {
                json!({"type": "direct-tcp-v1", "priority": priority, "hostname": hostname, "port": port})
            }
            Hint::TorTcp {
                hostname,
                port,
                priority,
            } => {
                json!({"type": "tor-tcp-v1", "priority": priority, "hostname": hostname, "port": port})
            }
            Hint::Relay(hints) => {
                json!({"type": "relay-v1", "hints": hints.iter().map(Hint::to_json).collect::<Vec<_>>()})
            }
        }
    }

    /// Parses one hint; `None` for unknown types and malformed hints (which are dropped).
    pub fn from_json(v: &Value) -> Option<Hint> {
        let endpoint = |v: &Value| -> Option<(String, u16, f64)> {
            let hostname = v.get("hostname")?.as_str()?.to_owned();
            let port = u16::try_from(v.get("port")?.as_u64()?).ok()?;
            let priority = match v.get("priority") {
                None => 0.0,
                Some(p) => p.as_f64()?,
            };
            Some((hostname, port, priority))
        };
        match v.get("type")?.as_str()? {
            "direct-tcp-v1" => endpoint(v).map(|(hostname, port, priority)| Hint::DirectTcp {
                hostname,
                port,
                priority,
            }),
            "tor-tcp-v1" => endpoint(v).map(|(hostname, port, priority)| Hint::TorTcp {
                hostname,
                port,
                priority,
            }),
            "relay-v1" => {
                let inner = v.get("hints")?.as_array()?;
                let hints: Vec<Hint> = inner
                    .iter()
                    .filter_map(Hint::from_json)
                    .filter(|h| !matches!(h, Hint::Relay(_)))
                    .collect();
                Some(Hint::Relay(hints))
            }
            _ => None,
        }
    }
}

/// A transit relay location as given by the user: `tcp:HOST:PORT`, `tcp:[IPV6]:PORT`, with an
/// optional `:priority=FLOAT`.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayLocation {
    /// Host name or IP address (without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The priority advertised in our relay hint.
    pub priority: f64,
}

/// A relay location that does not parse (the text given).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("bad relay location {0:?}: expected tcp:HOST:PORT")]
pub struct RelayLocationError(pub String);

impl std::str::FromStr for RelayLocation {
    type Err = RelayLocationError;

    fn from_str(s: &str) -> Result<RelayLocation, RelayLocationError> {
        let err = || RelayLocationError(s.into());
        let rest = s.strip_prefix("tcp:").ok_or_else(err)?;
        let (host, rest) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, rest) = v6.split_once(']').ok_or_else(err)?;
            (host, rest.strip_prefix(':').ok_or_else(err)?)
        } else {
            rest.split_once(':').ok_or_else(err)?
        };
        let mut parts = rest.split(':');
        let port = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let mut priority = 0.0;
        for extra in parts {
            let value = extra.strip_prefix("priority=").ok_or_else(err)?;
            priority = value.parse().map_err(|_| err())?;
        }
        if host.is_empty() || port == 0 {
            return Err(err());
        }
        Ok(RelayLocation {
            host: host.into(),
            port,
            priority,
        })
    }
}

impl RelayLocation {
    /// The `relay-v1` hint we advertise for this relay.
    pub fn hint(&self) -> Hint {
        Hint::Relay(vec![Hint::DirectTcp {
            hostname: self.host.clone(),
            port: self.port,
            priority: self.priority,
        }])
    }
}

impl std::fmt::Display for RelayLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.host.contains(':') {
            true => write!(f, "tcp:[{}]:{}", self.host, self.port),
            false => write!(f, "tcp:{}:{}", self.host, self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_hint_json_round_trips() {
        let direct: Value = serde_json::from_str(
            r#"{"type": "direct-tcp-v1", "priority": 0.0, "hostname": "192.0.2.2", "port": 38081}"#,
        )
        .unwrap();
        let h = Hint::from_json(&direct).unwrap();
        assert_eq!(h, Hint::direct("192.0.2.2", 38081));
        assert_eq!(h.to_json(), direct);
        let relay: Value = serde_json::from_str(
            r#"{"type": "relay-v1", "hints": [{"type": "direct-tcp-v1", "priority": 0.0, "hostname": "127.0.0.1", "port": 37475}, {"type": "websocket-v1", "url": "ws://x"}]}"#,
        )
        .unwrap();
        assert_eq!(
            Hint::from_json(&relay).unwrap(),
            Hint::Relay(vec![Hint::direct("127.0.0.1", 37475)])
        );
        let tor: Value =
            serde_json::from_str(r#"{"type": "tor-tcp-v1", "hostname": "x.onion", "port": 80}"#)
                .unwrap();
        assert!(matches!(Hint::from_json(&tor), Some(Hint::TorTcp { .. })));
    }

    #[test]
    fn malformed_hints_are_dropped() {
        for bad in [
            r#"{"type": "direct-tcp-v1", "hostname": "h", "port": "80"}"#,
            r#"{"type": "direct-tcp-v1", "hostname": 5, "port": 80}"#,
            r#"{"type": "direct-tcp-v1", "hostname": "h", "port": 70000}"#,
            r#"{"type": "direct-tcp-v1", "hostname": "h", "port": 80, "priority": "high"}"#,
            r#"{"type": "relay-v1"}"#,
            r#"{"type": "unknown-v9"}"#,
            r#"[]"#,
        ] {
            assert_eq!(
                Hint::from_json(&serde_json::from_str(bad).unwrap()),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn relay_locations() {
        let r: RelayLocation = "tcp:transit.magic-wormhole.io:4001".parse().unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.priority),
            ("transit.magic-wormhole.io", 4001, 0.0)
        );
        let r: RelayLocation = "tcp:[::1]:4001:priority=2.5".parse().unwrap();
        assert_eq!((r.host.as_str(), r.port, r.priority), ("::1", 4001, 2.5));
        assert_eq!(r.to_string(), "tcp:[::1]:4001");
        assert_eq!(r.hint().to_json()["hints"][0]["hostname"], "::1");
        for bad in [
            "",
            "tcp:",
            "tcp:host",
            "tcp:host:x",
            "udp:h:1",
            "tcp:[::1:4001",
            "tcp:h:1:prio=3",
            "tcp::1",
        ] {
            assert!(bad.parse::<RelayLocation>().is_err(), "{bad}");
        }
    }
}
