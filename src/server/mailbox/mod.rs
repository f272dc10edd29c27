//! The mailbox server (reference §1): a sans-IO core ([`MailboxState`]) and a WebSocket driver
//! ([`serve`]). State lives in memory, and with a database ([`MailboxConfig::db`]) also in SQLite
//! ([`Store`]), so that a restarted server goes on where it stopped.

mod state;
mod store;
#[cfg(test)]
mod tests;
mod ws;

pub use state::{
    Change, ConnId, MailboxConfig, MailboxRow, MailboxState, NameplateRow, Snapshot, TlsFiles,
    Usage,
};
pub use store::{Store, StoreError, UsageRow};
pub use ws::{serve, MailboxServerHandle};
