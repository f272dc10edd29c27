//! Copies one forwarded stream both ways between a local socket and its subchannel, counting
//! bytes. Backpressure is end to end: each direction writes a chunk before reading the next.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::endpoint::LocalStream;
use super::events::{Event, EventQueue, StreamId};
use super::ForwardError;
use crate::dilation::Subchannel;

/// Bytes read at a time from either side once a stream moves data in bulk: one whole DATA
/// record (halving the records per byte of a 32 KiB chunk halves the per-record work).
const CHUNK: usize = crate::dilation::MAX_DATA;
/// Bytes read at a time until a read fills them: an idle or interactive stream (a shell) keeps
/// this small buffer, so that thousands of open streams cost little memory.
const FIRST_CHUNK: usize = 2 * 1024;

/// A read buffer that starts at [`FIRST_CHUNK`] and grows to [`CHUNK`] after a read filled it.
/// Its spare capacity is read into, never zeroed first.
struct Buffer(Vec<u8>);

impl Buffer {
    fn new() -> Buffer {
        Buffer(Vec::with_capacity(FIRST_CHUNK))
    }

    /// Empties the buffer for the next read, larger if the last one filled it.
    fn next(&mut self) -> &mut Vec<u8> {
        if self.0.len() == self.0.capacity() && self.0.capacity() < CHUNK {
            self.0 = Vec::with_capacity(CHUNK);
        }
        self.0.clear();
        &mut self.0
    }
}

/// Forwards until both directions ended. An end of the local stream half-closes the subchannel
/// (a full close toward a Python peer, which then closes its side); an end of the subchannel
/// half-closes the local stream, or closes it entirely when the peer closed fully.
pub async fn forward(
    local: LocalStream,
    sub: Subchannel,
    id: StreamId,
    events: &EventQueue,
) -> Result<(), ForwardError> {
    let fully_closed = sub.fully_closed();
    let (mut lr, mut lw) = tokio::io::split(local);
    let (mut sr, mut sw) = tokio::io::split(sub);
    let up = async {
        let mut buf = Buffer::new();
        loop {
            let n = lr.read_buf(buf.next()).await?;
            if n == 0 {
                let _ = sw.shutdown().await;
                return Ok::<(), ForwardError>(());
            }
            sw.write_all(&buf.0[..n])
                .await
                .map_err(ForwardError::PeerClosed)?;
            events.push(Event::BytesIn {
                id,
                bytes: n as u64,
            });
        }
    };
    let down = async {
        let mut buf = Buffer::new();
        loop {
            let n = sr.read_buf(buf.next()).await?;
            if n == 0 {
                let _ = lw.shutdown().await;
                return Ok::<bool, ForwardError>(fully_closed.get());
            }
            lw.write_all(&buf.0[..n]).await?;
            events.push(Event::BytesOut {
                id,
                bytes: n as u64,
            });
        }
    };
    tokio::pin!(up, down);
    let mut up_done = false;
    loop {
        tokio::select! {
            r = &mut up, if !up_done => {
                r?;
                up_done = true;
            }
            r = &mut down => {
                // the peer closed fully: nothing more can go to it, so stop reading locally
                if r? || up_done {
                    return Ok(());
                }
                return (&mut up).await;
            }
        }
    }
}
