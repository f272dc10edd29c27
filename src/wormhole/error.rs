//! Errors and moods of a wormhole session.

use crate::code::CodeError;
use crate::key::PakeError;

/// How a session ended, as reported to the mailbox server in `close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mood {
    /// The peer was seen and the key confirmed.
    Happy,
    /// Closed before any peer message confirmed the key.
    Lonely,
    /// The peer's messages did not decrypt: wrong code or an attacker.
    Scary,
    /// A server or protocol error.
    Errory,
    /// The server's welcome refused service.
    Unwelcome,
}

impl Mood {
    /// The mood's name on the wire: `happy`, `lonely`, `scary`, `errory` or `unwelcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mood::Happy => "happy",
            Mood::Lonely => "lonely",
            Mood::Scary => "scary",
            Mood::Errory => "errory",
            Mood::Unwelcome => "unwelcome",
        }
    }
}

impl std::fmt::Display for Mood {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a wormhole session failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WormholeError {
    #[error("cannot connect to the mailbox server at {url}: {reason}")]
    /// The first connection to the mailbox server failed (or timed out).
    ServerConnection {
        /// The mailbox server's URL.
        url: String,
        /// Why the connection failed.
        reason: String,
    },
    #[error("the mailbox server at {url} refuses service: {message}")]
    /// The server's welcome carried an `error`: it refuses service.
    Unwelcome {
        /// The mailbox server's URL.
        url: String,
        /// The server's error message.
        message: String,
    },
    /// The server sent an `error` message (its text).
    #[error("the mailbox server reported an error: {0}")]
    Server(String),
    /// A peer message did not decrypt: the codes differ, or someone guessed.
    #[error(
        "wrong code: the peer's message did not decrypt (a typo, or someone guessing the code)"
    )]
    WrongCode,
    /// The peer's SPAKE2 message could not finish the key exchange.
    #[error("key exchange failed: {0}")]
    Pake(#[from] PakeError),
    /// The code given to [`set_code`](super::Wormhole::set_code) is malformed.
    #[error("invalid code: {0}")]
    Code(#[from] CodeError),
    /// The peer broke the protocol, or a command came at the wrong time (the text says which).
    #[error("peer protocol error: {0}")]
    Peer(String),
    /// The session is already over: nothing more can be sent or received.
    #[error("the wormhole session is closed")]
    SessionClosed,
}

impl WormholeError {
    /// The mood we close with after this error.
    pub fn mood(&self) -> Mood {
        match self {
            WormholeError::WrongCode | WormholeError::Pake(_) => Mood::Scary,
            WormholeError::Unwelcome { .. } => Mood::Unwelcome,
            _ => Mood::Errory,
        }
    }
}
