//! `Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s` as Dilation uses it: PSK = the Dilation key, empty
//! Noise prologue, Leader = initiator; transport records longer than 65519 bytes are cut into
//! several Noise messages carried in one frame.

use noise_protocol::patterns::noise_nn_psk0;
use noise_protocol::{CipherState, HandshakeState, U8Array};
use noise_rust_crypto::{Blake2s, X25519};

use super::cipher::RingChaChaPoly;

use super::L2Error;
use crate::key::Key;

/// Largest plaintext of one Noise transport message.
pub const MAX_CHUNK_PLAINTEXT: usize = 65519;
/// Largest Noise message (plaintext plus the 16-byte tag).
pub const MAX_CHUNK: usize = 65535;
/// Length of each handshake message (ephemeral key and tag of the empty payload).
pub const HANDSHAKE_LEN: usize = 48;
/// Noise messages a connection sends at most (its nonce counter): then it is replaced by a new
/// connection with new keys, long before the 2^64 - 1 at which the cipher would stop. (At ten
/// million messages a second this takes 58,000 years; the bound only makes the edge clean.)
pub const NONCE_LIMIT: u64 = u64::MAX - (1 << 32);

type Hs = HandshakeState<X25519, RingChaChaPoly, Blake2s>;

/// A handshake in progress.
pub struct Handshake {
    hs: Hs,
}

impl Handshake {
    /// `ephemeral` fixes the ephemeral private key (known-answer tests only).
    pub fn new(initiator: bool, psk: &Key, ephemeral: Option<[u8; 32]>) -> Handshake {
        let e = ephemeral.map(|k| U8Array::from_slice(&k));
        let mut hs = Hs::new(noise_nn_psk0(), initiator, [], None, e, None, None);
        hs.push_psk(psk);
        Handshake { hs }
    }

    /// Our next handshake message (empty payload).
    pub fn write_message(&mut self) -> Result<Vec<u8>, L2Error> {
        self.hs
            .write_message_vec(&[])
            .map_err(|e| L2Error::Noise(format!("{:?}", e.kind())))
    }

    /// Reads the peer's next handshake message.
    pub fn read_message(&mut self, msg: &[u8]) -> Result<(), L2Error> {
        if msg.len() != HANDSHAKE_LEN {
            return Err(L2Error::Noise(format!(
                "handshake message of {} bytes",
                msg.len()
            )));
        }
        self.hs
            .read_message_vec(msg)
            .map(|_| ())
            .map_err(|e| L2Error::Noise(format!("handshake rejected: {:?}", e.kind())))
    }

    /// The handshake hash so far.
    pub fn hash(&self) -> Vec<u8> {
        self.hs.get_hash().to_vec()
    }

    /// The transport ciphers once both messages went through.
    pub fn into_transport(self) -> Transport {
        let (i_to_r, r_to_i) = self.hs.get_ciphers();
        let (send, recv) = if self.hs.get_is_initiator() {
            (i_to_r, r_to_i)
        } else {
            (r_to_i, i_to_r)
        };
        Transport {
            send: Sealer(send),
            recv: Opener(recv),
        }
    }
}

/// The two transport ciphers of one connection.
pub struct Transport {
    send: Sealer,
    recv: Opener,
}

/// The sending cipher: seals records into frames.
pub struct Sealer(CipherState<RingChaChaPoly>);

/// The receiving cipher: opens frames into records.
pub struct Opener(CipherState<RingChaChaPoly>);

/// Length of the frame payload that carries a record of `plaintext_len` bytes.
pub fn sealed_len(plaintext_len: usize) -> usize {
    let chunks = plaintext_len.div_ceil(MAX_CHUNK_PLAINTEXT).max(1);
    plaintext_len + 16 * chunks
}

impl Transport {
    /// Appends `be4(len) || ciphertext` of `plaintext` to `out`.
    pub fn seal_frame(&mut self, plaintext: &[u8], out: &mut Vec<u8>) {
        self.send.seal_frame(plaintext, out)
    }

    /// Decrypts one frame payload (the bytes after its length).
    pub fn open_frame(&mut self, payload: Vec<u8>) -> Result<Vec<u8>, L2Error> {
        self.recv.open_frame(payload)
    }

    /// The two directions, to be used from different tasks.
    pub fn split(self) -> (Sealer, Opener) {
        (self.send, self.recv)
    }
}

/// Tests: the cipher `c` with its key, continuing at nonce `n`.
#[cfg(test)]
fn at_nonce(c: &CipherState<RingChaChaPoly>, n: u64) -> CipherState<RingChaChaPoly> {
    let (key, _) = c.clone().extract();
    CipherState::new(key.as_slice(), n)
}

impl Sealer {
    /// Appends the frame (`be4(len)` and the encrypted chunks) carrying `plaintext` to `out`.
    pub fn seal_frame(&mut self, plaintext: &[u8], out: &mut Vec<u8>) {
        let len = sealed_len(plaintext.len());
        out.reserve(4 + len);
        out.extend_from_slice(&(len as u32).to_be_bytes());
        let mut chunks = plaintext.chunks(MAX_CHUNK_PLAINTEXT);
        let empty: &[u8] = &[];
        let first = chunks.next().unwrap_or(empty);
        for chunk in std::iter::once(first).chain(chunks) {
            let start = out.len();
            out.extend_from_slice(chunk);
            out.resize(start + chunk.len() + 16, 0);
            self.0.encrypt_in_place(&mut out[start..], chunk.len());
        }
    }
}

impl Sealer {
    /// Encrypts `buf[..plaintext_len]` in place, the tag going into the 16 bytes after it.
    pub fn seal_in_place(&mut self, buf: &mut [u8], plaintext_len: usize) {
        self.0.encrypt_in_place(buf, plaintext_len);
    }

    /// [`NONCE_LIMIT`] messages were sent: the connection must be replaced.
    pub fn worn_out(&self) -> bool {
        self.0.get_next_n() >= NONCE_LIMIT
    }

    /// Tests: continue at nonce `n`.
    #[cfg(test)]
    pub fn skip_to_nonce(&mut self, n: u64) {
        self.0 = at_nonce(&self.0, n);
    }
}

impl Opener {
    /// Tests: continue at nonce `n`.
    #[cfg(test)]
    pub fn skip_to_nonce(&mut self, n: u64) {
        self.0 = at_nonce(&self.0, n);
    }

    /// Decrypts a frame payload (one or more Noise messages) in place and returns the plaintext.
    pub fn open_frame(&mut self, mut payload: Vec<u8>) -> Result<Vec<u8>, L2Error> {
        let n = self.open_in_place(&mut payload)?;
        payload.truncate(n);
        Ok(payload)
    }

    /// Decrypts a frame payload in place; the plaintext ends up at the front of `payload` and its
    /// length is returned.
    pub fn open_in_place(&mut self, payload: &mut [u8]) -> Result<usize, L2Error> {
        let mut plain_len = 0;
        let mut read = 0;
        while read < payload.len() {
            if self.0.get_next_n() == u64::MAX {
                // the cipher would panic: the peer never replaced the connection
                return Err(L2Error::Noise("the peer's Noise nonces are used up".into()));
            }
            let chunk_len = (payload.len() - read).min(MAX_CHUNK);
            if chunk_len < 16 {
                return Err(L2Error::Noise("truncated transport message".into()));
            }
            let n = self
                .0
                .decrypt_in_place(&mut payload[read..read + chunk_len], chunk_len)
                .map_err(|_| L2Error::Noise("transport message did not decrypt".into()))?;
            payload.copy_within(read..read + n, plain_len);
            plain_len += n;
            read += chunk_len;
        }
        if read == 0 {
            return Err(L2Error::Noise("empty frame".into()));
        }
        Ok(plain_len)
    }
}
