//! What users run: the servers command, the fowld JSON-lines daemon and the human CLI.

pub mod server;
