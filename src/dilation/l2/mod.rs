//! L2: one TCP connection between the peers (reference §3.6). Optional relay line and `ok\n`,
//! role prologues, `be4(len)` frames, the Noise handshake, key-confirmation (KCM) and then L3
//! records. [`L2Connection`] is sans-IO: bytes in, events and bytes out.

mod cipher;
mod connection;
pub mod noise;

pub use connection::{
    L2Connection, L2Event, RecvHalf, SendHalf, DEFAULT_MAX_FRAME, HANDSHAKE_MAX_FRAME,
};

/// Which end of the Dilation this is; the Leader is the Noise initiator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The side with the larger `side` string: selects the connection, sends PINGs.
    Leader,
    /// The other side: accepts the connection the Leader selected.
    Follower,
}

impl Role {
    /// The prologue this role sends first on every connection.
    pub fn prologue(self) -> &'static [u8] {
        match self {
            Role::Leader => PROLOGUE_LEADER,
            Role::Follower => PROLOGUE_FOLLOWER,
        }
    }

    /// The peer's role.
    pub fn peer(self) -> Role {
        match self {
            Role::Leader => Role::Follower,
            Role::Follower => Role::Leader,
        }
    }
}

/// The Leader's prologue.
pub const PROLOGUE_LEADER: &[u8] = b"Magic-Wormhole Dilation Handshake v1 Leader\n\n";
/// The Follower's prologue.
pub const PROLOGUE_FOLLOWER: &[u8] = b"Magic-Wormhole Dilation Handshake v1 Follower\n\n";

/// Why an L2 connection was dropped. Never fatal to the process or to other connections.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum L2Error {
    /// The relay answered something other than `ok\n` (its answer).
    #[error("transit relay refused the connection: {0:?}")]
    RelayRefused(String),
    /// The first bytes were not the peer role's prologue.
    #[error("peer sent a bad prologue")]
    BadPrologue,
    /// A frame announced more than we accept.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The announced length.
        len: usize,
        /// Our limit.
        max: usize,
    },
    /// The Noise handshake or a frame's decryption failed.
    #[error("noise: {0}")]
    Noise(String),
    /// The first record was not the key-confirmation message.
    #[error("first record after the handshake is not a KCM")]
    NotKcm,
    /// A record did not decode.
    #[error("bad record: {0}")]
    Record(#[from] super::record::RecordError),
    /// The connection is closed (or failed before).
    #[error("connection closed")]
    Closed,
}

/// The line a relay connection starts with.
pub fn relay_line(token: &crate::key::Key, side: &str) -> Vec<u8> {
    format!("please relay {} for side {side}\n", hex::encode(token)).into_bytes()
}

#[cfg(test)]
mod tests;
