//! Servers fowl can host itself: the mailbox (rendezvous) server, compatible with
//! magic-wormhole-mailbox-server 0.8 as seen by clients.

pub mod mailbox;
