//! Options shared by `fowld` and the `fowl` forwarding commands: mailbox names and the relay.

use clap::Args;

use crate::dilation::RelayLocation;

/// The public mailbox server (magic-wormhole's default).
pub const PUBLIC_MAILBOX: &str = "ws://relay.magic-wormhole.io:4000/v1";
/// The public transit relay, Python fowl's fixed choice.
pub const PUBLIC_RELAY: &str = "tcp:transit.magic-wormhole.io:4001";

/// Resolves a `--mailbox` value: `default`, `local`, `winden`, or a URL used as is.
pub fn mailbox_url(name: &str) -> String {
    match name {
        "default" => PUBLIC_MAILBOX.into(),
        "local" => "ws://localhost:4000/v1".into(),
        "winden" => "wss://mailbox.mw.leastauthority.com/v1".into(),
        url => url.into(),
    }
}

/// Where the session meets its peer.
#[derive(Args, Debug, Clone)]
pub struct NetworkArgs {
    /// Mailbox server: a ws:// or wss:// URL, or `default`, `local`, `winden`.
    #[arg(long, value_name = "URL or NAME", default_value = "default")]
    pub mailbox: String,
    /// Application id: both peers must use the same one. Applications built on fowl's protocol
    /// have their own (e.g. shwim); the default is fowl's.
    #[arg(long, value_name = "APPID", default_value = crate::forward::APPID)]
    pub appid: String,
    /// Transit relay for Dilation, `tcp:HOST:PORT`.
    #[arg(long, value_name = "tcp:HOST:PORT", default_value = PUBLIC_RELAY, conflicts_with = "no_relay")]
    pub relay: String,
    /// Use no transit relay: direct connections only.
    #[arg(long)]
    pub no_relay: bool,
    /// Offer no direct connection hints (no listening socket for the peer).
    #[arg(long)]
    pub no_listen: bool,
    /// Privacy mode: the mailbox server and the relay are reached through this SOCKS5 proxy
    /// (`socks5h://` also leaves name lookups to it; e.g. Tor's socks5h://127.0.0.1:9050), and
    /// there are no direct connections: no listener, no address offered to the peer, none of
    /// the peer's dialed. The relay is the only path.
    #[arg(long, value_name = "socks5h://HOST:PORT", conflicts_with = "no_relay")]
    pub proxy: Option<String>,
    /// Seconds without a sign of life before the Dilation connection is declared lost and
    /// replaced (both sides ping when quiet; Python's Leader alone pings, every 30 s).
    #[arg(long, value_name = "SECONDS", default_value_t = crate::dilation::DEFAULT_LIVENESS_INTERVAL.as_secs_f64())]
    pub liveness: f64,
}

/// A command-line option with a value we cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OptionError(pub String);

impl NetworkArgs {
    /// The relay to use, or an error naming a malformed value.
    pub fn relay(&self) -> Result<Option<RelayLocation>, OptionError> {
        if self.no_relay {
            return Ok(None);
        }
        self.relay
            .parse::<RelayLocation>()
            .map(Some)
            .map_err(|e| OptionError(format!("--relay: {e}")))
    }

    /// The SOCKS5 proxy of the privacy mode, or an error for a malformed URL.
    pub fn proxy(&self) -> Result<Option<crate::proxy::Socks5Proxy>, OptionError> {
        self.proxy
            .as_deref()
            .map(|url| {
                url.parse()
                    .map_err(|e| OptionError(format!("--proxy: {e}")))
            })
            .transpose()
    }

    /// The liveness interval, or an error for a value that is not a number of seconds from
    /// 1 to 3600.
    pub fn liveness(&self) -> Result<std::time::Duration, OptionError> {
        if !(1.0..=3600.0).contains(&self.liveness) {
            return Err(OptionError(format!(
                "--liveness: {} is not between 1 and 3600 seconds",
                self.liveness
            )));
        }
        Ok(std::time::Duration::from_secs_f64(self.liveness))
    }

    /// Checks the mailbox URL's scheme.
    pub fn mailbox_url(&self) -> Result<String, OptionError> {
        let url = mailbox_url(&self.mailbox);
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(OptionError(format!(
                "--mailbox: {url:?} is neither a ws:// or wss:// URL nor default, local or winden"
            )));
        }
        Ok(url)
    }
}
