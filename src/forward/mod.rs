//! fowl's peer protocol on top of Dilation and the forwarding engine: named services, the
//! `fowl-commands` subprotocol that asks the peer to listen, and one `fowl` subchannel per
//! forwarded stream.

pub mod copy;
pub mod endpoint;
pub mod engine;
pub mod events;
pub mod frame;
pub mod messages;
pub mod policy;

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
