//! The client-to-client protocol over the mailbox (reference §2): code, SPAKE2, the `version`
//! phase, encrypted application and Dilation phases, and the session close with its mood.
//!
//! [`WormholeCore`] is the sans-IO state machine; [`Wormhole`] drives it over a WebSocket.

mod core;
pub(crate) use core::parse_version;
mod driver;
mod error;
#[cfg(test)]
mod tests;

pub use self::core::{WormholeCore, WormholeEvent};
pub use driver::Wormhole;
pub use error::{Mood, WormholeError};

use std::time::Duration;

use serde_json::Value;

/// The Dilation versions we can speak, in preference order.
pub const DILATION_VERSIONS: &[&str] = &["ged"];

/// How a session is set up.
#[derive(Debug, Clone)]
pub struct WormholeConfig {
    /// Scopes nameplates and mailboxes: both peers must use the same one.
    pub appid: String,
    /// `ws://` or `wss://` URL of the mailbox server, path included (usually `/v1`).
    pub mailbox_url: String,
    /// Sent to the peer inside `version` as `app_versions`.
    pub app_versions: Value,
    /// Announce Dilation support (`can-dilate` and `dilation-abilities`).
    pub dilation: bool,
    /// Limit for the first connection to the mailbox server.
    pub connect_timeout: Duration,
    /// Longest wait for the server to confirm `release` and `close` when closing.
    pub close_timeout: Duration,
    /// DER certificates trusted for `wss://` besides the webpki roots (a self-hosted server with a
    /// private CA).
    pub extra_root_certificates: Vec<Vec<u8>>,
    /// Reach the mailbox server through this SOCKS5 proxy (see [`crate::proxy`]).
    pub proxy: Option<crate::proxy::Socks5Proxy>,
}

impl WormholeConfig {
    /// A config for `appid` on the mailbox server at `mailbox_url`, with Dilation announced, no
    /// `app_versions`, and timeouts of 15 s (connect) and 10 s (close).
    pub fn new(appid: &str, mailbox_url: &str) -> WormholeConfig {
        WormholeConfig {
            appid: appid.into(),
            mailbox_url: mailbox_url.into(),
            app_versions: Value::Object(Default::default()),
            dilation: true,
            connect_timeout: Duration::from_secs(15),
            close_timeout: Duration::from_secs(10),
            extra_root_certificates: Vec::new(),
            proxy: None,
        }
    }
}

/// The plaintext of our `version` phase, formatted as Python formats it.
pub fn version_message(app_versions: &Value, dilation: bool) -> Vec<u8> {
    let app = serde_json::to_string(app_versions).unwrap_or_else(|_| "{}".into());
    let text = if dilation {
        let versions: Vec<String> = DILATION_VERSIONS
            .iter()
            .map(|v| format!("\"{v}\""))
            .collect();
        format!(
            "{{\"can-dilate\": [{}], \"dilation-abilities\": [{{\"type\": \"direct-tcp-v1\"}}, \
             {{\"type\": \"relay-v1\"}}], \"app_versions\": {app}}}",
            versions.join(", ")
        )
    } else {
        format!("{{\"app_versions\": {app}}}")
    };
    text.into_bytes()
}
