//! fowl: forward local streams over a dilated [magic-wormhole], and the only Rust implementation
//! of Dilation.
//!
//! Two programs meet through a mailbox server with a short one-time code, agree on a key
//! (SPAKE2), and dilate the wormhole: a durable, encrypted connection (direct or through a
//! transit relay) that carries any number of named subchannels and survives network changes.
//! fowl forwards local TCP and unix streams over those subchannels, like `ssh -L`/`-R` without
//! servers, accounts or keys. It interoperates with the Python reference (magic-wormhole 0.24,
//! fowl 26.8).
//!
//! # Layers, bottom up
//!
//! | module | what |
//! |---|---|
//! | [`code`] | wormhole codes: the PGP word list, generation, validation, completion |
//! | [`key`] | the key schedule: SPAKE2, phase keys, verifier, Dilation key, relay token |
//! | [`wormhole`] | the client-to-client protocol over a mailbox server: [`Wormhole`] |
//! | [`dilation`] | Dilation: [`Dilated`] sessions of [`Subchannel`] streams over the tokio driver, and the sans-IO [`dilation::Endpoint`] that makes every protocol decision |
//! | [`proxy`] | privacy mode: the mailbox and relay connections through a SOCKS5 proxy |
//! | [`remember`] | remembered peers: pair once with a code, reconnect by name, the secret rotating |
//! | [`forward`] | fowl's peer protocol and forwarding engine: [`forward::Engine`] |
//! | [`server`] | the servers we host: a mailbox server and a transit relay |
//! | [`interfaces`] | the programs: `fowld` (JSON lines), `fowl invite`/`accept`, `fowl server` |
//!
//! Protocol logic is sans-IO (state machines fed events with an explicit `now`); the tokio
//! drivers only move bytes, timers and channels. The wire formats are documented in the
//! repository's `protocol/` folder.
//!
//! # Example: one subchannel between two dilated wormholes
//!
//! Our own mailbox server and transit relay on loopback; two wormholes meet with a code, dilate
//! (relay only here) and send a greeting over a subchannel named `greeting`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use fowl::dilation::DilationConfig;
//! use fowl::server::{mailbox, relay};
//! use fowl::wormhole::{Mood, Wormhole, WormholeConfig};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tokio::net::TcpListener;
//!
//! let mailbox = mailbox::serve(TcpListener::bind("127.0.0.1:0").await?, Default::default())?;
//! let relay = relay::serve(TcpListener::bind("127.0.0.1:0").await?, Default::default())?;
//! let config = WormholeConfig::new("example.invalid/docs", &mailbox.url());
//! let dilation = DilationConfig {
//!     relay: Some(relay.hint().parse()?),
//!     no_listen: true, // no direct hints: the relay is the only path
//!     ..DilationConfig::default()
//! };
//!
//! let mut alice = Wormhole::connect(config.clone()).await?;
//! alice.allocate_code(2);
//! let code = alice.allocated_code().await?; // e.g. "7-guitarist-revenge"
//! let mut bob = Wormhole::connect(config).await?;
//! bob.set_code(&code).await?;
//!
//! let (alice, bob) = (alice.dilate(dilation.clone()), bob.dilate(dilation));
//! let mut greetings = bob.listen("greeting");
//! let mut to_bob = alice.open("greeting").await?;
//! to_bob.write_all(b"hello, bob").await?;
//! to_bob.shutdown().await?;
//!
//! let mut from_alice = greetings.accept().await.expect("a subchannel");
//! let mut got = Vec::new();
//! from_alice.read_to_end(&mut got).await?;
//! assert_eq!(got, b"hello, bob");
//! drop((to_bob, from_alice));
//! let (a, b) = tokio::join!(alice.close(), bob.close());
//! assert_eq!((a?, b?), (Mood::Happy, Mood::Happy));
//! # Ok(())
//! # }
//! ```
//!
//! [magic-wormhole]: https://magic-wormhole.readthedocs.io/
//! [`Wormhole`]: wormhole::Wormhole
//! [`Dilated`]: dilation::Dilated
//! [`Subchannel`]: dilation::Subchannel

#![warn(missing_docs)]

pub mod code;
pub mod dilation;
pub mod forward;
#[doc(hidden)]
pub mod fuzzing;
pub mod interfaces;
pub mod key;
mod mailbox;
pub mod proxy;
pub mod remember;
pub mod server;
pub mod wormhole;
