//! The transit relay (reference §4.1): a sans-IO pairing table ([`RelayState`]) and a TCP driver
//! ([`serve`]) that splices paired connections.

mod state;
mod tcp;
#[cfg(test)]
mod tests;

pub use state::{parse_handshake, Arrival, Handshake, RelayConnId, RelayState, MAX_HANDSHAKE_LINE};
pub use tcp::{serve, RelayConfig, RelayServerHandle};
