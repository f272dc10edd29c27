//! Servers fowl can host itself, compatible with the Python ones as seen by clients: the mailbox
//! (rendezvous) server (magic-wormhole-mailbox-server 0.8) and the transit relay
//! (magic-wormhole-transit-relay).
//!
//! Both run on a tokio runtime from a listener you bind (port 0 picks a free one) and stop when
//! their handle is dropped:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use fowl::server::{mailbox, relay};
//! use tokio::net::TcpListener;
//!
//! let mb = mailbox::serve(TcpListener::bind("127.0.0.1:0").await?, Default::default())?;
//! let tr = relay::serve(TcpListener::bind("127.0.0.1:0").await?, Default::default())?;
//! assert!(mb.url().starts_with("ws://127.0.0.1:") && mb.url().ends_with("/v1"));
//! assert!(tr.hint().starts_with("tcp:127.0.0.1:"));
//! # Ok(())
//! # }
//! ```

mod limits;
pub mod mailbox;
pub mod metrics;
pub mod relay;

pub use limits::{AddressLimit, AddressSlot, Refusals, REFUSAL_LOG_INTERVAL};
pub use metrics::{serve_metrics, ServerMetrics};
