//! Copies one forwarded stream both ways between a local socket and its subchannel, counting
//! bytes. Backpressure is end to end: each direction writes a chunk before reading the next.

use tokio::io::AsyncWriteExt;

use super::endpoint::LocalStream;
use super::events::{Event, EventQueue, StreamId};
use super::ForwardError;
use crate::dilation::Subchannel;

/// Bytes read at a time from the local stream once it moves data in bulk: one whole DATA
/// record (halving the records per byte of a 32 KiB chunk halves the per-record work).
const CHUNK: usize = crate::dilation::MAX_DATA;
/// Bytes read at a time while reads come back small (an interactive stream, a shell): the
/// buffer, taken only once the socket is readable, and the budget reserved for it stay small.
const FIRST_CHUNK: usize = 2 * 1024;

/// The size of the next read's buffer: the whole record once a read filled the buffer, the
/// small one again once a read came back small.
fn next_size(size: usize, read: usize) -> usize {
    match read {
        n if n == size => CHUNK,
        n if n <= FIRST_CHUNK => FIRST_CHUNK,
        _ => size,
    }
}

/// Forwards until both directions ended. An end of the local stream half-closes the subchannel
/// (a full close toward a Python peer, which then closes its side); an end of the subchannel
/// half-closes the local stream, or closes it entirely when the peer closed fully. Data moves
/// without copies of ours: each local read fills a buffer that becomes the record sent (it is
/// kept until the peer acknowledges it), and each received record is written out as it is.
pub async fn forward(
    local: LocalStream,
    sub: Subchannel,
    id: StreamId,
    events: &EventQueue,
) -> Result<(), ForwardError> {
    let fully_closed = sub.fully_closed();
    let (lr, mut lw) = local.into_split();
    let (mut sr, mut sw) = sub.into_split();
    let up = async {
        let mut size = FIRST_CHUNK;
        loop {
            // readable, then room to send, then a buffer: streams that wait hold none
            lr.readable().await?;
            sw.reserve(size).await.map_err(ForwardError::PeerClosed)?;
            let mut buf = Vec::with_capacity(size);
            let n = match lr.try_read_buf(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    sw.send_reserved(Vec::new(), size)
                        .map_err(ForwardError::PeerClosed)?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                let _ = sw.send_reserved(Vec::new(), size);
                let _ = sw.shutdown().await;
                return Ok::<(), ForwardError>(());
            }
            let reserved = size;
            size = next_size(size, n);
            if n < buf.capacity() / 2 {
                // a few bytes do not keep a whole record's buffer while they wait for their ACK
                buf.shrink_to_fit();
            }
            sw.send_reserved(buf, reserved)
                .map_err(ForwardError::PeerClosed)?;
            events.push(Event::BytesIn {
                id,
                bytes: n as u64,
            });
        }
    };
    let down = async {
        loop {
            let Some(chunk) = sr.read_chunk().await? else {
                let _ = lw.shutdown().await;
                return Ok::<bool, ForwardError>(fully_closed.get());
            };
            lw.write_all(&chunk).await?;
            events.push(Event::BytesOut {
                id,
                bytes: chunk.len() as u64,
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
