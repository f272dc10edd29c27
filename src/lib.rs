//! fowl: forward local streams over a dilated magic-wormhole.
//!
//! Layers, bottom up: [`code`] and [`key`] (codes and the key schedule), [`mailbox`] (the
//! rendezvous server protocol), [`wormhole`] (the client-to-client protocol over the mailbox).

pub mod code;
pub mod dilation;
pub mod forward;
pub mod interfaces;
pub mod key;
pub mod mailbox;
pub mod server;
pub mod wormhole;
