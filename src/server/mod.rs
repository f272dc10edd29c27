//! Servers fowl can host itself, compatible with the Python ones as seen by clients: the mailbox
//! (rendezvous) server (magic-wormhole-mailbox-server 0.8) and the transit relay
//! (magic-wormhole-transit-relay).

pub mod mailbox;
pub mod relay;
