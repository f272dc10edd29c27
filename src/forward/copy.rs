//! Copies one forwarded stream both ways between a local socket and its subchannel, counting
//! bytes. Backpressure is end to end: each direction writes a chunk before reading the next.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::endpoint::LocalStream;
use super::events::{Event, EventQueue, StreamId};
use super::ForwardError;
use crate::dilation::Subchannel;

/// Bytes read at a time from either side.
const CHUNK: usize = 32 * 1024;

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
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = lr.read(&mut buf).await?;
            if n == 0 {
                let _ = sw.shutdown().await;
                return Ok::<(), ForwardError>(());
            }
            sw.write_all(&buf[..n])
                .await
                .map_err(ForwardError::PeerClosed)?;
            events.push(Event::BytesIn {
                id,
                bytes: n as u64,
            });
        }
    };
    let down = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = sr.read(&mut buf).await?;
            if n == 0 {
                let _ = lw.shutdown().await;
                return Ok::<bool, ForwardError>(fully_closed.get());
            }
            lw.write_all(&buf[..n]).await?;
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
