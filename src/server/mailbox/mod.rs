//! The mailbox server (reference §1): a sans-IO core ([`MailboxState`]) and a WebSocket driver
//! ([`serve`]). State lives in memory.

mod state;
#[cfg(test)]
mod tests;
mod ws;

pub use state::{ConnId, MailboxConfig, MailboxState};
pub use ws::{serve, MailboxServerHandle};
