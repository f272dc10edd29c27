//! The mailbox (rendezvous) server protocol (reference §1): messages, the sans-IO client with
//! its reconnection rules, and the WebSocket transport.

mod machine;
pub mod messages;
#[cfg(test)]
mod tests;
mod transport;

pub use machine::{Action, MailboxClient, MailboxEvent};
pub use transport::{connect, Frame, MailboxSocket, TransportError};
