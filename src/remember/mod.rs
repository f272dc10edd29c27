//! Remembered peers: pair once with a code, reconnect later by name without one
//! (`protocol/remember.md` has the design, the derivations and the threat model).
//!
//! Two peers of this project that both asked to remember each other derive a long-term secret
//! from the session key ([`SECRET_PURPOSE`]) and store it, each in its own [`PeerFile`]. To meet
//! again both derive from that secret a mailbox (opened directly, no nameplate) and a
//! full-entropy SPAKE2 password ([`Secret::rendezvous`]), so the key exchange, key confirmation
//! and the verifier work as with a code. Every successful meeting rotates the secret: both store
//! the next one (derived from the new session key) as `next`, tell each other, and only a side
//! that heard the peer's `stored` promotes it to `current`; until then it keeps both and meets
//! at both ([`PeerFile::meeting_points`]).
//!
//! [`Remembering`] is the sans-IO agreement (offers, `stored` messages, rotation) a session
//! drives; [`PeerStore`] keeps the files (XDG config directory, one file per peer, mode 0600).
//!
//! ```
//! use fowl::remember::{PeerFile, Secret};
//!
//! let secret = Secret::from_bytes([7; 32]);
//! let meet = secret.rendezvous();
//! assert_eq!(meet.mailbox.len(), 32); // hex, the same on both sides
//! assert_eq!(meet.password.len(), 64); // 256 bits: not a code anyone can guess
//! let file = PeerFile::new("alice", "ws://localhost:4000/v1", "example/app", None, secret, 0);
//! assert!(file.next.is_some() && file.current.is_none()); // until the peer confirms
//! ```

mod agreement;
mod store;
#[cfg(test)]
mod tests;

pub use agreement::{Meeting, RememberAction, RememberMessage, RememberReport, Remembering};
pub use store::{default_dir, Listed, PeerStore};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::key::{derive_key, Key};

/// The version of the peer file format.
pub const FILE_VERSION: u32 = 1;
/// HKDF purpose of the remembered secret, derived from a session key.
pub const SECRET_PURPOSE: &[u8] = b"fowl-rs/remember-v1/secret";
/// HKDF purpose of the rendezvous mailbox, derived from a remembered secret.
pub const MAILBOX_PURPOSE: &[u8] = b"fowl-rs/remember-v1/mailbox";
/// HKDF purpose of the SPAKE2 password, derived from a remembered secret.
pub const PASSWORD_PURPOSE: &[u8] = b"fowl-rs/remember-v1/password";
/// Our key in `app_versions`: `{"remember": 1}`, plus `"pending": true` when meeting at two
/// generations.
pub const VERSIONS_KEY: &str = "fowl-rs";

/// Why remembering, reconnecting or managing peers failed.
#[derive(Debug, thiserror::Error)]
pub enum RememberError {
    /// No file for this name.
    #[error("no remembered peer named {0:?} (see `fowl peers`)")]
    Unknown(String),
    /// The name cannot be a file name of ours.
    #[error(
        "{0:?} is not a peer name: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'"
    )]
    BadName(String),
    /// Remembering under a name already taken.
    #[error("a peer named {0:?} is already remembered (`fowl forget {0}` first)")]
    Exists(String),
    /// The file does not parse, has another version, or its check value does not match.
    #[error("the file of peer {name:?} ({path}) is damaged or was edited: {reason}; `fowl forget {name}` and pair again with a code")]
    Damaged {
        /// The peer's name.
        name: String,
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Others may read the file (or its folder): refused, like ssh refuses such keys.
    #[error("{path} may be read by others (mode {mode:o}); it holds a secret: chmod go-rwx it")]
    TooOpen {
        /// The file or folder.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Neither `XDG_CONFIG_HOME` nor `HOME` is set.
    #[error("no configuration folder: neither XDG_CONFIG_HOME nor HOME is set")]
    NoConfigDir,
}

/// Whether `name` may name a remembered peer (it becomes a file name).
pub fn valid_name(name: &str) -> Result<(), RememberError> {
    let ok = (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    match ok {
        true => Ok(()),
        false => Err(RememberError::BadName(name.into())),
    }
}

/// A remembered secret (32 bytes). Its `Debug` does not show it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Secret(Key);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Where and how two peers holding one [`Secret`] meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendezvous {
    /// The mailbox both open directly (32 hex digits).
    pub mailbox: String,
    /// The SPAKE2 password (64 hex digits: 256 bits).
    pub password: String,
}

impl Secret {
    /// The secret with these bytes.
    pub fn from_bytes(bytes: Key) -> Secret {
        Secret(bytes)
    }

    /// The secret a session key gives (the same as
    /// [`Wormhole::derive_key`](crate::wormhole::Wormhole::derive_key) of [`SECRET_PURPOSE`]).
    pub fn from_session_key(session_key: &Key) -> Secret {
        Secret(derive_key(session_key, SECRET_PURPOSE))
    }

    /// The mailbox and password both holders derive.
    pub fn rendezvous(&self) -> Rendezvous {
        Rendezvous {
            mailbox: hex::encode(&derive_key(&self.0, MAILBOX_PURPOSE)[..16]),
            password: hex::encode(derive_key(&self.0, PASSWORD_PURPOSE)),
        }
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        let text = String::deserialize(d)?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(&text, &mut key)
            .map_err(|_| serde::de::Error::custom("a secret is 64 hex digits"))?;
        Ok(Secret(key))
    }
}

/// One generation of the secret: the first pairing is 1, every reconnection adds one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// Its number.
    pub number: u64,
    /// Its secret.
    pub secret: Secret,
}

/// What is stored about one remembered peer (`protocol/remember.md`, "The file").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerFile {
    /// [`FILE_VERSION`].
    pub version: u32,
    /// The local name of the peer.
    pub name: String,
    /// When the pairing was made (seconds since the Unix epoch).
    pub created: u64,
    /// When the last reconnection met the peer (seconds since the Unix epoch).
    pub last_used: Option<u64>,
    /// The mailbox server both use.
    pub mailbox_url: String,
    /// The application id both use.
    pub appid: String,
    /// The transit relay used (`tcp:HOST:PORT`), if any.
    pub relay: Option<String>,
    /// The generation the peer is known to hold.
    pub current: Option<Generation>,
    /// The next generation, stored but not yet confirmed by the peer.
    pub next: Option<Generation>,
    /// SHA-256 of the file with this field empty (hex, 16 digits): a file edited by hand or
    /// damaged on disk is refused rather than used to wait for ever at a wrong mailbox.
    #[serde(default)]
    pub check: String,
}

impl PeerFile {
    /// A new pairing: `secret` stored as generation 1, not yet confirmed by the peer.
    pub fn new(
        name: &str,
        mailbox_url: &str,
        appid: &str,
        relay: Option<String>,
        secret: Secret,
        now: u64,
    ) -> PeerFile {
        PeerFile {
            version: FILE_VERSION,
            name: name.into(),
            created: now,
            last_used: None,
            mailbox_url: mailbox_url.into(),
            appid: appid.into(),
            relay,
            current: None,
            next: Some(Generation { number: 1, secret }),
            check: String::new(),
        }
    }

    /// The check value of the file as it is now.
    pub fn checksum(&self) -> String {
        let mut copy = self.clone();
        copy.check.clear();
        let bytes = serde_json::to_vec(&copy).unwrap_or_default();
        hex::encode(&Sha256::digest(bytes)[..8])
    }

    /// Whether the peer may hold either of two generations (a rotation not yet confirmed).
    pub fn pending(&self) -> bool {
        self.current.is_some() && self.next.is_some()
    }

    /// The generations to meet the peer at, newest first: `next` (if stored) and `current`.
    pub fn meeting_points(&self) -> Vec<Generation> {
        [self.next, self.current].into_iter().flatten().collect()
    }

    /// A session met the peer at generation `used` (which the peer therefore holds) and its key
    /// gave `next`: `used` becomes current, `next` is stored unconfirmed.
    pub fn met(&mut self, used: Generation, next: Secret, now: u64) {
        self.current = Some(used);
        self.next = Some(Generation {
            number: used.number + 1,
            secret: next,
        });
        self.last_used = Some(now);
    }

    /// The peer stored generation `number`: it becomes current. False (nothing changes) for any
    /// other number.
    pub fn confirmed(&mut self, number: u64) -> bool {
        match self.next {
            Some(next) if next.number == number => {
                self.current = Some(next);
                self.next = None;
                true
            }
            _ => false,
        }
    }
}

/// Adds our remembering ability to `app_versions`; `pending`: we meet at two generations.
pub fn advertise(app_versions: &mut Value, pending: bool) {
    if let Value::Object(map) = app_versions {
        let mut ours = serde_json::json!({"remember": 1});
        if pending {
            ours["pending"] = true.into();
        }
        map.insert(VERSIONS_KEY.into(), ours);
    }
}

/// Whether the peer's `app_versions` say it can remember peers.
pub fn peer_can_remember(app_versions: &Value) -> bool {
    app_versions[VERSIONS_KEY]["remember"].as_u64() == Some(1)
}

/// Whether the peer's `app_versions` say it meets at two generations.
pub fn peer_pending(app_versions: &Value) -> bool {
    app_versions[VERSIONS_KEY]["pending"].as_bool() == Some(true)
}

/// Whether to keep a rendezvous that met the peer, waiting at [`PeerFile::meeting_points`]
/// (index 0 the newest): the newest always; an older one unless the peer there says it waits at
/// the newer one too ([`peer_pending`]), in which case both leave it and meet at the newer.
pub fn keep_meeting(index: usize, peer_versions: &Value) -> bool {
    index == 0 || !peer_pending(peer_versions)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
