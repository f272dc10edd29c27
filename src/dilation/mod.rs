//! Dilation, version `ged` (reference §3): durable, encrypted subchannels between the two peers.
//!
//! Layers: L1 mailbox messages and the manager, L2 one Noise connection, L3 records, L4
//! reliability, L5 subchannels. Each is a sans-IO state machine; tokio drivers do the I/O.

pub mod driver;
pub mod hints;
pub mod l1;
pub mod l2;
pub mod manager;
pub mod record;
pub mod reliability;
pub mod session;

pub use driver::{
    Dilated, DilatedHandle, DilationConfig, DilationEvent, PathKind, Subchannel, SubchannelListener,
};
pub use hints::RelayLocation;
pub use l2::Role;
pub use manager::DilationError;
