//! What users run: the servers command, the fowld JSON-lines daemon and the human CLI.

pub mod cli;
pub mod fowld;
pub mod options;
pub mod server;
