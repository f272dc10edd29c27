//! Dilation, version `ged` (reference §3): durable, encrypted subchannels between the two peers.
//!
//! Layers: L1 mailbox messages and the manager, L2 one Noise connection, L3 records, L4
//! reliability, L5 subchannels. Each is a sans-IO state machine; tokio drivers do the I/O.

mod config;
mod driver;
pub mod endpoint;
pub mod hints;
pub(crate) mod l1;
pub mod l2;
mod manager;
pub mod record;
mod reliability;
pub(crate) mod session;

pub use config::{
    DilationConfig, DilationEvent, LossReason, PathKind, PeerAbuse, DEFAULT_LIVENESS_INTERVAL,
};
pub use driver::{
    Dilated, DilatedHandle, FullyClosed, Subchannel, SubchannelListener, SubchannelReader,
    SubchannelWriter, MAX_DATA,
};
pub use endpoint::Endpoint;
pub use hints::RelayLocation;
pub use l2::Role;
pub use manager::{DilationError, State as ManagerState};
