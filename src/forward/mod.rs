//! fowl's peer protocol on top of Dilation and the forwarding engine: named services, the
//! `fowl-commands` subprotocol that asks the peer to listen, and one `fowl` subchannel per
//! forwarded stream.

mod copy;
mod endpoint;
mod engine;
mod events;
pub(crate) mod frame;
pub(crate) mod messages;
mod policy;

pub use endpoint::EndpointError;
pub use engine::Engine;
pub use events::{Event, EventQueue, Status, StreamId};
pub use policy::{LocalSpec, PolicyError, RemoteSpec};

/// Why a listener request or a forwarded stream failed. The texts are what fowld reports (and,
/// for the policy's, what the peer is told), in Python fowl's words where it has them.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The services policy refused.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A local listener or connection could not be had.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// A listener request for `name` did not get through.
    #[error("Service \"{name}\" failed: {reason}")]
    Request {
        /// The service name of the request.
        name: String,
        /// What went wrong, as text.
        reason: String,
    },
    /// Dilation failed (e.g. a subchannel could not be opened).
    #[error(transparent)]
    Dilation(#[from] crate::dilation::DilationError),
    /// A malformed or truncated frame from the peer.
    #[error(transparent)]
    Frame(#[from] frame::FrameError),
    /// Reading or writing the local stream, or reading the peer's.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Writing to the peer's stream.
    #[error("peer stream closed: {0}")]
    PeerClosed(std::io::Error),
    /// The peer did not answer a stream's handshake in time (60 s).
    #[error("no reply from the peer")]
    NoReply,
    /// The peer refused the stream, for this reason.
    #[error("{0}")]
    Refused(String),
}

/// The application id of fowl sessions.
pub const APPID: &str = "meejah.ca/wormhole/forward";
/// Subprotocol of listener requests.
pub const COMMANDS: &str = "fowl-commands";
/// Subprotocol of forwarded streams.
pub const STREAMS: &str = "fowl";

/// Our `app_versions`, as Python fowl's.
pub fn app_versions() -> serde_json::Value {
    serde_json::json!({"fowl": {"features": ["core-v1"]}})
}

/// Dilation settings for forwarding: tighter memory bounds than the library defaults, so that a
/// daemon forwarding into a slow consumer stays small (the unacknowledged queue and the write
/// budget are what a sender holds while its peer is paused).
pub fn dilation_config(
    relay: Option<crate::dilation::RelayLocation>,
    no_listen: bool,
) -> crate::dilation::DilationConfig {
    crate::dilation::DilationConfig {
        relay,
        no_listen,
        write_budget: 512 << 10,
        unacked_limit: 2 << 20,
        ..Default::default()
    }
}
