//! The sans-IO state machine of one L2 connection.

use std::collections::VecDeque;

use super::noise::{sealed_len, Handshake, Opener, Sealer, Transport, MAX_CHUNK_PLAINTEXT};
use super::{L2Error, Role};
use crate::dilation::record::Record;
use crate::key::Key;

/// Default limit on one frame: records up to 16 MiB (ours are at most 64 KiB).
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;
/// Largest frame payload accepted before the connection is open (Noise handshake messages are
/// 48 bytes, a sealed KCM 17): anything longer is refused before it is buffered, so an
/// unauthenticated client cannot make us hold more than this.
pub const HANDSHAKE_MAX_FRAME: usize = 256;

/// What the connection reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L2Event {
    /// The peer's KCM arrived. For a Leader this connection is now a candidate (select it with
    /// [`L2Connection::select`]); for a Follower the Leader has selected it.
    Ready,
    /// A record after the KCM.
    Record(Record),
}

enum State {
    AwaitRelayOk,
    AwaitPrologue,
    AwaitHandshake(Box<Handshake>),
    AwaitKcm(Transport),
    Open(Transport),
    Failed,
}

/// One L2 connection.
pub struct L2Connection {
    role: Role,
    state: State,
    reader: FrameReader,
    /// The frame limit once open.
    max_frame: usize,
    outbuf: Vec<u8>,
    events: VecDeque<L2Event>,
    psk: Key,
    ephemeral: Option<[u8; 32]>,
    /// Follower: keep our KCM back until [`L2Connection::release_kcm`].
    hold_kcm: bool,
    kcm_held: bool,
}

impl L2Connection {
    /// A new connection. With `relay_line` the connection first asks the transit relay to pair
    /// it and waits for `ok\n`; otherwise the prologue goes out at once.
    pub fn new(role: Role, psk: &Key, relay_line: Option<Vec<u8>>) -> L2Connection {
        L2Connection::with_ephemeral(role, psk, relay_line, None)
    }

    /// As [`L2Connection::new`] with a fixed Noise ephemeral key (known-answer tests only).
    pub fn with_ephemeral(
        role: Role,
        psk: &Key,
        relay_line: Option<Vec<u8>>,
        ephemeral: Option<[u8; 32]>,
    ) -> L2Connection {
        let mut c = L2Connection {
            role,
            state: State::AwaitPrologue,
            reader: FrameReader::new(HANDSHAKE_MAX_FRAME),
            max_frame: DEFAULT_MAX_FRAME,
            outbuf: Vec::new(),
            events: VecDeque::new(),
            psk: *psk,
            ephemeral,
            hold_kcm: false,
            kcm_held: false,
        };
        match relay_line {
            Some(line) => {
                c.outbuf.extend_from_slice(&line);
                c.state = State::AwaitRelayOk;
            }
            None => c.outbuf.extend_from_slice(role.prologue()),
        }
        c
    }

    /// Sets the largest frame payload accepted from the peer once the connection is open
    /// (checked before buffering; before that, [`HANDSHAKE_MAX_FRAME`]).
    pub fn set_max_frame(&mut self, max: usize) {
        self.max_frame = max;
        if self.is_open() {
            self.reader.max_frame = max;
        }
    }

    /// Our role on this connection.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the handshake and the KCMs are done: records flow.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// Bytes to write to the socket, taken all at once.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.outbuf)
    }

    /// Whether bytes wait to be written.
    pub fn has_output(&self) -> bool {
        !self.outbuf.is_empty()
    }

    /// Appends the pending output to `out` (for batching writes).
    pub fn drain_output_into(&mut self, out: &mut Vec<u8>) {
        if out.is_empty() {
            std::mem::swap(out, &mut self.outbuf);
        } else {
            out.append(&mut self.outbuf);
        }
    }

    /// The next event: readiness, then records.
    pub fn poll_event(&mut self) -> Option<L2Event> {
        self.events.pop_front()
    }

    /// Leader only: makes this candidate the connection, by sending our KCM on it.
    /// Follower: hold our KCM back after the handshake (the Leader selects the first
    /// connection whose Follower KCM arrives, so this lets a direct connection win).
    pub fn hold_kcm(&mut self) {
        self.hold_kcm = true;
    }

    /// Whether the handshake is done and our KCM waits for [`L2Connection::release_kcm`].
    pub fn kcm_held(&self) -> bool {
        self.kcm_held
    }

    /// Sends the KCM that [`L2Connection::hold_kcm`] kept back.
    pub fn release_kcm(&mut self) {
        if let (true, State::AwaitKcm(t)) = (self.kcm_held, &mut self.state) {
            t.seal_frame(&Record::Kcm.encode(), &mut self.outbuf);
            self.kcm_held = false;
        }
    }

    /// Leader: selects this connection by sending our KCM on it.
    pub fn select(&mut self) {
        debug_assert_eq!(self.role, Role::Leader);
        self.send_record(&Record::Kcm);
    }

    /// Encrypts `record` into the output. Ignored unless the handshake is complete.
    pub fn send_record(&mut self, record: &Record) {
        if let State::Open(t) = &mut self.state {
            let mut plain = Vec::with_capacity(record.encoded_len());
            record.encode_into(&mut plain);
            t.seal_frame(&plain, &mut self.outbuf);
        }
    }

    /// Sends an already-encoded record.
    pub fn send_encoded(&mut self, plain: &[u8]) {
        if let State::Open(t) = &mut self.state {
            t.seal_frame(plain, &mut self.outbuf);
        }
    }

    /// Feeds bytes read from the socket. An error means the connection must be dropped.
    pub fn receive(&mut self, data: &[u8]) -> Result<(), L2Error> {
        if matches!(self.state, State::Failed) {
            return Err(L2Error::Closed);
        }
        self.reader.push(data);
        let result = self.process();
        if result.is_err() {
            self.state = State::Failed;
        }
        self.reader.compact();
        result
    }

    /// Splits an open connection into its sending and receiving halves, so that encryption and
    /// decryption can run in different tasks. Drain the events first.
    pub fn into_halves(self) -> Option<(SendHalf, RecvHalf)> {
        match self.state {
            State::Open(t) => {
                let (sealer, opener) = t.split();
                Some((
                    SendHalf { sealer },
                    RecvHalf {
                        opener,
                        reader: self.reader,
                    },
                ))
            }
            _ => None,
        }
    }

    fn process(&mut self) -> Result<(), L2Error> {
        loop {
            match &mut self.state {
                State::AwaitRelayOk => {
                    let p = self.reader.pending();
                    let n = p.len().min(3);
                    if p[..n] != b"ok\n"[..n] {
                        let text = String::from_utf8_lossy(&p[..p.len().min(64)]).into_owned();
                        return Err(L2Error::RelayRefused(text));
                    }
                    if n < 3 {
                        return Ok(());
                    }
                    self.reader.consume(3);
                    self.outbuf.extend_from_slice(self.role.prologue());
                    self.state = State::AwaitPrologue;
                }
                State::AwaitPrologue => {
                    let expected = self.role.peer().prologue();
                    let p = self.reader.pending();
                    let n = p.len().min(expected.len());
                    if p[..n] != expected[..n] {
                        return Err(L2Error::BadPrologue);
                    }
                    if n < expected.len() {
                        return Ok(());
                    }
                    self.reader.consume(expected.len());
                    let mut hs =
                        Handshake::new(self.role == Role::Leader, &self.psk, self.ephemeral);
                    if self.role == Role::Leader {
                        let msg1 = hs.write_message()?;
                        push_frame(&mut self.outbuf, &msg1);
                    }
                    self.state = State::AwaitHandshake(Box::new(hs));
                }
                State::AwaitHandshake(_) => {
                    let Some(frame) = self.reader.next_frame()? else {
                        return Ok(());
                    };
                    let State::AwaitHandshake(mut hs) =
                        std::mem::replace(&mut self.state, State::Failed)
                    else {
                        unreachable!("matched above")
                    };
                    hs.read_message(&frame)?;
                    if self.role == Role::Follower {
                        let msg2 = hs.write_message()?;
                        push_frame(&mut self.outbuf, &msg2);
                        let mut t = hs.into_transport();
                        if self.hold_kcm {
                            self.kcm_held = true;
                        } else {
                            t.seal_frame(&Record::Kcm.encode(), &mut self.outbuf);
                        }
                        self.state = State::AwaitKcm(t);
                    } else {
                        self.state = State::AwaitKcm(hs.into_transport());
                    }
                }
                State::AwaitKcm(_) => {
                    let Some(frame) = self.reader.next_frame()? else {
                        return Ok(());
                    };
                    let State::AwaitKcm(mut t) = std::mem::replace(&mut self.state, State::Failed)
                    else {
                        unreachable!("matched above")
                    };
                    let plain = t.open_frame(frame)?;
                    if Record::decode(&plain)? != Record::Kcm {
                        return Err(L2Error::NotKcm);
                    }
                    self.state = State::Open(t);
                    self.reader.max_frame = self.max_frame;
                    self.events.push_back(L2Event::Ready);
                }
                State::Open(_) => {
                    let Some(frame) = self.reader.next_frame()? else {
                        return Ok(());
                    };
                    let State::Open(t) = &mut self.state else {
                        unreachable!("matched above")
                    };
                    let plain = t.open_frame(frame)?;
                    let record = Record::decode(&plain)?;
                    self.events.push_back(L2Event::Record(record));
                }
                State::Failed => return Err(L2Error::Closed),
            }
        }
    }
}

/// Cuts `be4(len) || payload` frames out of a byte stream, refusing frames over a size limit
/// before buffering them.
pub struct FrameReader {
    buf: Vec<u8>,
    consumed: usize,
    max_frame: usize,
}

impl FrameReader {
    pub fn new(max_frame: usize) -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            consumed: 0,
            max_frame,
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.consumed..]
    }

    fn consume(&mut self, n: usize) {
        self.consumed += n;
    }

    fn compact(&mut self) {
        if self.consumed > 0 && (self.consumed == self.buf.len() || self.consumed > 1 << 16) {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
    }

    /// The next complete frame payload, if one has fully arrived.
    fn next_frame(&mut self) -> Result<Option<Vec<u8>>, L2Error> {
        Ok(self.next_frame_range()?.map(|r| self.buf[r].to_vec()))
    }

    /// Where the next complete frame payload is in the buffer, if it has fully arrived.
    fn next_frame_range(&mut self) -> Result<Option<std::ops::Range<usize>>, L2Error> {
        let p = self.pending();
        if p.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
        if len > sealed_len(self.max_frame) {
            return Err(L2Error::FrameTooLarge {
                len,
                max: self.max_frame,
            });
        }
        if p.len() < 4 + len {
            return Ok(None);
        }
        let start = self.consumed + 4;
        self.consumed += 4 + len;
        Ok(Some(start..start + len))
    }
}

/// The sending half of an open connection.
pub struct SendHalf {
    sealer: Sealer,
}

impl SendHalf {
    /// This connection sent [`super::noise::NONCE_LIMIT`] Noise messages: replace it.
    pub fn worn_out(&self) -> bool {
        self.sealer.worn_out()
    }

    /// Tests: continue at Noise nonce `n`.
    #[cfg(test)]
    pub fn skip_to_nonce(&mut self, n: u64) {
        self.sealer.skip_to_nonce(n);
    }

    /// Appends the frame carrying `record` to `out`. A record that fits one Noise message is
    /// encoded and encrypted in place; a larger one goes through `scratch`.
    pub fn seal_record(&mut self, record: &Record, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
        let len = record.encoded_len();
        if len <= MAX_CHUNK_PLAINTEXT {
            let start = out.len();
            out.reserve(4 + len + 16);
            out.extend_from_slice(&((len + 16) as u32).to_be_bytes());
            record.encode_into(out);
            out.resize(start + 4 + len + 16, 0);
            self.sealer.seal_in_place(&mut out[start + 4..], len);
        } else {
            scratch.clear();
            record.encode_into(scratch);
            self.sealer.seal_frame(scratch, out);
        }
    }
}

/// The receiving half of an open connection.
pub struct RecvHalf {
    opener: Opener,
    reader: FrameReader,
}

impl RecvHalf {
    /// Tests: continue at Noise nonce `n`.
    #[cfg(test)]
    pub fn skip_to_nonce(&mut self, n: u64) {
        self.opener.skip_to_nonce(n);
    }

    /// Feeds bytes from the socket; complete records are appended to `out`. An error means the
    /// connection must be dropped.
    pub fn receive(&mut self, data: &[u8], out: &mut Vec<Record>) -> Result<(), L2Error> {
        self.reader.push(data);
        self.process(out)
    }

    /// The buffer to read socket bytes into directly (append only), before [`RecvHalf::process`].
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.reader.buf
    }

    /// Decrypts and decodes every complete frame in the buffer, in place.
    pub fn process(&mut self, out: &mut Vec<Record>) -> Result<(), L2Error> {
        let result = (|| {
            while let Some(range) = self.reader.next_frame_range()? {
                let frame = &mut self.reader.buf[range];
                let n = self.opener.open_in_place(frame)?;
                out.push(Record::decode(&frame[..n])?);
            }
            Ok(())
        })();
        self.reader.compact();
        result
    }
}

fn push_frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}
