//! SPAKE2 (symmetric, Ed25519) as magic-wormhole uses it: password = the whole code, identity =
//! the appid, the outbound message carried as `{"pake_v1": "<hex>"}`.

use spake2::{Ed25519Group, Identity, Password, Spake2};
use unicode_normalization::UnicodeNormalization;

use super::Key;

/// Why a peer's `pake` message could not finish the exchange.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PakeError {
    /// The message body is not JSON with a hex `pake_v1` field.
    #[error("peer pake message is not a JSON object with a hex \"pake_v1\" field")]
    BadBody,
    /// SPAKE2 rejected the peer's message (the reason, as text).
    #[error("peer pake message was rejected by SPAKE2: {0}")]
    Spake(String),
}

/// One side of a running SPAKE2 exchange.
pub struct Pake {
    state: Spake2<Ed25519Group>,
    body: Vec<u8>,
}

impl Pake {
    /// Starts the exchange for `code` within `appid`, with fresh randomness.
    pub fn start(code: &str, appid: &str) -> Pake {
        let (password, identity) = inputs(code, appid);
        let (state, msg) = Spake2::<Ed25519Group>::start_symmetric(&password, &identity);
        Pake::from_parts(state, &msg)
    }

    /// Starts the exchange with a caller-provided random source (known-answer tests).
    pub fn start_with_rng(
        code: &str,
        appid: &str,
        rng: impl rand::CryptoRng + rand::RngCore,
    ) -> Pake {
        let (password, identity) = inputs(code, appid);
        let (state, msg) =
            Spake2::<Ed25519Group>::start_symmetric_with_rng(&password, &identity, rng);
        Pake::from_parts(state, &msg)
    }

    fn from_parts(state: Spake2<Ed25519Group>, msg: &[u8]) -> Pake {
        let body = format!("{{\"pake_v1\": \"{}\"}}", hex::encode(msg)).into_bytes();
        Pake { state, body }
    }

    /// The `pake` phase body to send (plaintext JSON).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Finishes with the peer's `pake` phase body and returns the shared key.
    pub fn finish(self, peer_body: &[u8]) -> Result<Key, PakeError> {
        let msg = parse_body(peer_body)?;
        let key = self
            .state
            .finish(&msg)
            .map_err(|e| PakeError::Spake(e.to_string()))?;
        key.as_slice()
            .try_into()
            .map_err(|_| PakeError::Spake("shared key is not 32 bytes".into()))
    }
}

fn inputs(code: &str, appid: &str) -> (Password, Identity) {
    let code: String = code.nfc().collect();
    let appid: String = appid.nfc().collect();
    (
        Password::new(code.as_bytes()),
        Identity::new(appid.as_bytes()),
    )
}

fn parse_body(body: &[u8]) -> Result<Vec<u8>, PakeError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| PakeError::BadBody)?;
    let field = value
        .get("pake_v1")
        .and_then(|v| v.as_str())
        .ok_or(PakeError::BadBody)?;
    hex::decode(field).map_err(|_| PakeError::BadBody)
}
