//! L2: one TCP connection between the peers (reference §3.6). Optional relay line and `ok\n`,
//! role prologues, `be4(len)` frames, the Noise handshake, key-confirmation (KCM) and then L3
//! records. [`L2Connection`] is sans-IO: bytes in, events and bytes out.

mod cipher;
mod connection;
pub mod noise;

pub use connection::{L2Connection, L2Event, RecvHalf, SendHalf, DEFAULT_MAX_FRAME};

/// Which end of the Dilation this is; the Leader is the Noise initiator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
}

impl Role {
    pub fn prologue(self) -> &'static [u8] {
        match self {
            Role::Leader => PROLOGUE_LEADER,
            Role::Follower => PROLOGUE_FOLLOWER,
        }
    }

    pub fn peer(self) -> Role {
        match self {
            Role::Leader => Role::Follower,
            Role::Follower => Role::Leader,
        }
    }
}

pub const PROLOGUE_LEADER: &[u8] = b"Magic-Wormhole Dilation Handshake v1 Leader\n\n";
pub const PROLOGUE_FOLLOWER: &[u8] = b"Magic-Wormhole Dilation Handshake v1 Follower\n\n";

/// Why an L2 connection was dropped. Never fatal to the process or to other connections.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum L2Error {
    #[error("transit relay refused the connection: {0:?}")]
    RelayRefused(String),
    #[error("peer sent a bad prologue")]
    BadPrologue,
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("noise: {0}")]
    Noise(String),
    #[error("first record after the handshake is not a KCM")]
    NotKcm,
    #[error("bad record: {0}")]
    Record(#[from] super::record::RecordError),
    #[error("connection closed")]
    Closed,
}

/// The line a relay connection starts with.
pub fn relay_line(token: &crate::key::Key, side: &str) -> Vec<u8> {
    format!("please relay {} for side {side}\n", hex::encode(token)).into_bytes()
}

#[cfg(test)]
mod tests;
