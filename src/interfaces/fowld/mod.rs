//! `fowld`: the forwarding daemon driven by JSON lines on stdin/stdout, a drop-in for Python
//! fowld 26.8 (see `protocol/fowld.md`).

pub mod commands;
pub mod io;
pub mod output;
mod session;

pub use session::{run, run_with, FowldOptions, EXIT_CLOSED, EXIT_CLOSE_TIMEOUT};
