//! Key schedule of the magic-wormhole client protocol (reference §2.3-2.4): SPAKE2, HKDF purposes,
//! per-phase SecretBox encryption, the verifier, and the keys that Dilation derives.

mod pake;
#[cfg(test)]
mod tests;

pub use pake::{Pake, PakeError};

use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Length of the SecretBox nonce that prefixes every encrypted phase body.
pub const NONCE_LEN: usize = 24;
/// Bytes a SecretBox adds to its plaintext (nonce and Poly1305 tag).
pub const BOX_OVERHEAD: usize = NONCE_LEN + 16;

/// The 32-byte key both peers share after SPAKE2.
pub type Key = [u8; 32];

/// A phase body that does not decrypt under the expected key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("message did not decrypt (wrong code, or a corrupted message)")]
pub struct DecryptError;

/// RFC 5869 HKDF-SHA256 without salt, `len` bytes of output.
pub fn hkdf(ikm: &[u8], info: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    Hkdf::<Sha256>::new(None, ikm)
        .expand(info, &mut out)
        .expect("HKDF-SHA256 output length is at most 8160 bytes");
    out
}

/// `derive_key(key, purpose)` of the reference: HKDF with the purpose as info, 32 bytes.
pub fn derive_key(key: &[u8], purpose: &[u8]) -> Key {
    let mut out = [0u8; 32];
    out.copy_from_slice(&hkdf(key, purpose, 32));
    out
}

/// The key of one phase message, sent by `side`.
pub fn derive_phase_key(key: &Key, side: &str, phase: &str) -> Key {
    let mut info = Vec::with_capacity(15 + 64);
    info.extend_from_slice(b"wormhole:phase:");
    info.extend_from_slice(&Sha256::digest(side.as_bytes()));
    info.extend_from_slice(&Sha256::digest(phase.as_bytes()));
    derive_key(key, &info)
}

/// The verifier both users can compare (32 bytes, usually shown in hex).
pub fn verifier(key: &Key) -> Key {
    derive_key(key, b"wormhole:verifier")
}

/// The Dilation key: the Noise pre-shared key.
pub fn dilation_key(key: &Key) -> Key {
    derive_key(key, b"dilation-v1")
}

/// The token a Dilation peer presents to the transit relay, derived from the Dilation key.
pub fn relay_token(dilation_key: &Key) -> Key {
    derive_key(dilation_key, b"transit_relay_token")
}

/// SecretBox with a fresh random nonce: `nonce || tag || ciphertext`.
pub fn encrypt(key: &Key, plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut nonce);
    encrypt_with_nonce(key, &nonce, plaintext)
}

/// SecretBox with a caller-chosen nonce (known-answer tests; never reuse a nonce otherwise).
pub fn encrypt_with_nonce(key: &Key, nonce: &[u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
    let cipher = XSalsa20Poly1305::new(key.into());
    let sealed = cipher
        .encrypt(Nonce::from_slice(nonce), plaintext)
        .expect("XSalsa20Poly1305 encryption of an in-memory buffer cannot fail");
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Opens `nonce || tag || ciphertext`.
pub fn decrypt(key: &Key, body: &[u8]) -> Result<Vec<u8>, DecryptError> {
    if body.len() < BOX_OVERHEAD {
        return Err(DecryptError);
    }
    let (nonce, sealed) = body.split_at(NONCE_LEN);
    XSalsa20Poly1305::new(key.into())
        .decrypt(Nonce::from_slice(nonce), sealed)
        .map_err(|_| DecryptError)
}
