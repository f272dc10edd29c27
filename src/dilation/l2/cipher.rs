//! ChaCha20-Poly1305 for Noise from ring's assembly implementation, about three times the speed
//! of the portable RustCrypto one that noise-rust-crypto ships (see `examples/bench_noise.rs`).
//! Noise's nonce is 32 zero bits followed by the 64-bit counter, little-endian.

use noise_protocol::{Cipher, U8Array};
use noise_rust_crypto::sensitive::Sensitive;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};

/// `ChaChaPoly` in Noise names.
pub enum RingChaChaPoly {}

const TAG: usize = 16;

fn key(k: &Sensitive<[u8; 32]>) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, k.as_slice()).expect("32-byte key"))
}

fn nonce(n: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_le_bytes());
    Nonce::assume_unique_for_key(bytes)
}

impl Cipher for RingChaChaPoly {
    fn name() -> &'static str {
        "ChaChaPoly"
    }

    type Key = Sensitive<[u8; 32]>;

    fn encrypt(k: &Self::Key, n: u64, ad: &[u8], plaintext: &[u8], out: &mut [u8]) {
        assert_eq!(out.len(), plaintext.len() + TAG);
        out[..plaintext.len()].copy_from_slice(plaintext);
        Self::encrypt_in_place(k, n, ad, out, plaintext.len());
    }

    fn encrypt_in_place(
        k: &Self::Key,
        n: u64,
        ad: &[u8],
        in_out: &mut [u8],
        plaintext_len: usize,
    ) -> usize {
        let (data, rest) = in_out.split_at_mut(plaintext_len);
        let tag = key(k)
            .seal_in_place_separate_tag(nonce(n), Aad::from(ad), data)
            .expect("ChaCha20-Poly1305 sealing of an in-memory buffer");
        rest[..TAG].copy_from_slice(tag.as_ref());
        plaintext_len + TAG
    }

    fn decrypt(
        k: &Self::Key,
        n: u64,
        ad: &[u8],
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<(), ()> {
        let mut buf = ciphertext.to_vec();
        let len = Self::decrypt_in_place(k, n, ad, &mut buf, ciphertext.len())?;
        if out.len() != len {
            return Err(());
        }
        out.copy_from_slice(&buf[..len]);
        Ok(())
    }

    fn decrypt_in_place(
        k: &Self::Key,
        n: u64,
        ad: &[u8],
        in_out: &mut [u8],
        ciphertext_len: usize,
    ) -> Result<usize, ()> {
        if ciphertext_len < TAG || ciphertext_len > in_out.len() {
            return Err(());
        }
        let plain = key(k)
            .open_in_place(nonce(n), Aad::from(ad), &mut in_out[..ciphertext_len])
            .map_err(|_| ())?;
        Ok(plain.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use noise_rust_crypto::ChaCha20Poly1305;

    #[test]
    fn same_bytes_as_the_portable_cipher() {
        let k = Sensitive::from_slice(&[3u8; 32]);
        for len in [0usize, 1, 15, 16, 17, 1000, 65519] {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let (mut a, mut b) = (vec![0u8; len + TAG], vec![0u8; len + TAG]);
            RingChaChaPoly::encrypt(&k, 42, b"ad", &plain, &mut a);
            ChaCha20Poly1305::encrypt(&k, 42, b"ad", &plain, &mut b);
            assert_eq!(a, b, "length {len}");
            let mut out = vec![0u8; len];
            RingChaChaPoly::decrypt(&k, 42, b"ad", &a, &mut out).unwrap();
            assert_eq!(out, plain);
            a[0] ^= 1;
            assert!(RingChaChaPoly::decrypt(&k, 42, b"ad", &a, &mut out).is_err());
            assert!(RingChaChaPoly::decrypt_in_place(&k, 42, b"ad", &mut a, len + TAG).is_err());
            assert!(RingChaChaPoly::decrypt_in_place(&k, 42, b"ad", &mut a, 3).is_err());
        }
    }
}
