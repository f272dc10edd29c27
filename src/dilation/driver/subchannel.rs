//! [`Subchannel`]: one Dilation subchannel as a tokio `AsyncRead + AsyncWrite` stream, and its
//! two halves ([`Subchannel::into_split`]), which also move data without copying it: a received
//! record's payload whole ([`SubchannelReader::read_chunk`]), a buffer of ours as one record
//! ([`SubchannelWriter::write_owned`], or [`SubchannelWriter::reserve`] then
//! [`SubchannelWriter::send_reserved`] to fill the buffer only once it can be sent).
//!
//! Writes take permits from the Dilation's write budget (the bound on unacknowledged bytes), so
//! a writer waits when the peer is slow to acknowledge. Reads come from a per-subchannel buffer
//! that the Dilation task fills; while any buffer is over its limit the task stops reading the
//! connection, so a slow reader slows the peer's writer through TCP, as in Python.
//!
//! With flow control (a peer of ours: both announced a window in `please`), each subchannel
//! also has a send window: a writer takes permits from it too, and the peer's CREDITs (what its
//! reader consumed) give them back. A slow reader then stops only its own subchannel's writer;
//! the connection keeps being read and the other subchannels keep moving. Our reader announces
//! what it consumed every quarter window.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::PollSemaphore;

use crate::dilation::l2::noise::MAX_CHUNK_PLAINTEXT;
use crate::dilation::record::{Scid, DATA_HEADER};

/// Largest DATA payload we send: one record fits one Noise message.
pub const MAX_DATA: usize = MAX_CHUNK_PLAINTEXT - DATA_HEADER;

/// From a subchannel to the Dilation task.
#[derive(Debug)]
pub(crate) enum SubCommand {
    /// As many write-budget permits as `data` has bytes were taken for it.
    Data { scid: Scid, data: Vec<u8> },
    /// No more data from us (shutdown or drop).
    Close { scid: Scid },
    /// The stream was dropped: discard what arrives for it.
    Dropped { scid: Scid },
    /// (flow control) Our reader consumed this many bytes in all.
    Consumed { scid: Scid, total: u64 },
}

/// A subchannel's flow control (both peers announced a window).
#[derive(Debug)]
pub(crate) struct Flow {
    /// Permits to send: the peer's window, plus what its CREDITs gave back.
    window: Arc<Semaphore>,
    /// What our reader consumed, announced every `credit_every` bytes.
    credit_every: u64,
    /// Payload bytes written, and the peer's highest CREDIT (so a CREDIT can never give more
    /// than was sent).
    counts: Mutex<(u64, u64)>,
}

impl Flow {
    /// A send window of `window` bytes; our reader credits every `credit_every` bytes.
    pub(crate) fn new(window: usize, credit_every: usize) -> Flow {
        Flow {
            window: Arc::new(Semaphore::new(window)),
            credit_every: credit_every.max(1) as u64,
            counts: Mutex::new((0, 0)),
        }
    }
}

#[derive(Debug, Default)]
struct Inbound {
    chunks: VecDeque<Vec<u8>>,
    offset: usize,
    bytes: usize,
    /// Bytes read by our reader in all, and the total last announced (flow control).
    consumed: u64,
    credited: u64,
    eof: bool,
    reset: bool,
    reader: Option<Waker>,
}

/// The part of a subchannel the Dilation task writes into.
#[derive(Debug)]
pub(crate) struct Shared {
    inbound: Mutex<Inbound>,
    /// Writes are refused: the subchannel was closed for writing by the task (full close).
    write_refused: AtomicBool,
    limit: usize,
    /// Wakes the Dilation task when a reader drained its buffer below the limit.
    resume: Arc<Notify>,
    /// Flow control, with a peer of ours.
    flow: Option<Flow>,
}

impl Shared {
    pub(crate) fn new(limit: usize, resume: Arc<Notify>, flow: Option<Flow>) -> Arc<Shared> {
        Arc::new(Shared {
            inbound: Mutex::new(Inbound::default()),
            write_refused: AtomicBool::new(false),
            limit,
            resume,
            flow,
        })
    }

    /// (flow control) The peer's reader consumed `consumed` bytes in all: the window grows by
    /// what is new, never beyond what we sent.
    pub(crate) fn credit(&self, consumed: u64) {
        let Some(flow) = &self.flow else { return };
        let mut counts = flow.counts.lock().unwrap_or_else(|e| e.into_inner());
        let (sent, credited) = *counts;
        let consumed = consumed.min(sent);
        if consumed > credited {
            counts.1 = consumed;
            flow.window.add_permits((consumed - credited) as usize);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inbound> {
        self.inbound.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends received data; returns whether the buffer is now over its limit.
    pub(crate) fn push(&self, data: Vec<u8>) -> bool {
        let mut i = self.lock();
        i.bytes += data.len();
        i.chunks.push_back(data);
        if let Some(w) = i.reader.take() {
            w.wake();
        }
        i.bytes > self.limit
    }

    pub(crate) fn is_over_limit(&self) -> bool {
        self.lock().bytes > self.limit
    }

    /// The peer will send no more: readers see end-of-stream after the buffered data.
    pub(crate) fn finish(&self) {
        let mut i = self.lock();
        i.eof = true;
        if let Some(w) = i.reader.take() {
            w.wake();
        }
    }

    /// Refuses further writes (the subchannel is fully closed).
    pub(crate) fn refuse_writes(&self) {
        self.write_refused.store(true, Ordering::Relaxed);
        if let Some(flow) = &self.flow {
            flow.window.close(); // a writer waiting for credit wakes to the refusal
        }
    }

    /// The Dilation ended under the stream: reads fail once the buffer is drained.
    pub(crate) fn reset(&self) {
        self.refuse_writes();
        let mut i = self.lock();
        i.reset = true;
        if let Some(w) = i.reader.take() {
            w.wake();
        }
    }
}

/// See [`Subchannel::fully_closed`].
#[derive(Clone)]
pub struct FullyClosed(Arc<Shared>);

impl FullyClosed {
    /// Whether the subchannel is closed for writing now.
    pub fn get(&self) -> bool {
        self.0.write_refused.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for FullyClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FullyClosed({})", self.get())
    }
}

/// One subchannel stream. [`Subchannel::into_split`] gives its two halves, which also move
/// data without copying it ([`SubchannelReader::read_chunk`], [`SubchannelWriter::write_owned`]).
pub struct Subchannel {
    subprotocol: String,
    reader: SubchannelReader,
    writer: SubchannelWriter,
}

/// The reading half of a [`Subchannel`].
pub struct SubchannelReader {
    scid: Scid,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<SubCommand>,
    _dropped: Arc<DropReport>,
}

/// The writing half of a [`Subchannel`]; dropping it closes the subchannel for writing.
pub struct SubchannelWriter {
    scid: Scid,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<SubCommand>,
    budget: PollSemaphore,
    /// (flow control) The send window.
    window: Option<PollSemaphore>,
    write_closed: bool,
    _dropped: Arc<DropReport>,
}

/// Tells the task that the application dropped the subchannel, once both halves are gone.
struct DropReport {
    scid: Scid,
    commands: mpsc::UnboundedSender<SubCommand>,
}

impl Drop for DropReport {
    fn drop(&mut self) {
        let _ = self.commands.send(SubCommand::Dropped { scid: self.scid });
    }
}

impl Subchannel {
    pub(crate) fn new(
        scid: Scid,
        subprotocol: &str,
        shared: Arc<Shared>,
        commands: mpsc::UnboundedSender<SubCommand>,
        budget: Arc<Semaphore>,
    ) -> Subchannel {
        let window = shared
            .flow
            .as_ref()
            .map(|f| PollSemaphore::new(f.window.clone()));
        let dropped = Arc::new(DropReport {
            scid,
            commands: commands.clone(),
        });
        Subchannel {
            subprotocol: subprotocol.into(),
            reader: SubchannelReader {
                scid,
                shared: shared.clone(),
                commands: commands.clone(),
                _dropped: dropped.clone(),
            },
            writer: SubchannelWriter {
                scid,
                shared,
                commands,
                budget: PollSemaphore::new(budget),
                window,
                write_closed: false,
                _dropped: dropped,
            },
        }
    }

    /// A flag that turns true once the subchannel is closed for writing by the peer's full close
    /// (always the case with a Python peer, which does not half-close). It is set before reads see
    /// the end of the stream.
    pub fn fully_closed(&self) -> FullyClosed {
        FullyClosed(self.reader.shared.clone())
    }

    /// The subchannel id (odd: opened by the Leader, even: by the Follower).
    pub fn id(&self) -> Scid {
        self.reader.scid
    }

    /// The subprotocol name it was opened for.
    pub fn subprotocol(&self) -> &str {
        &self.subprotocol
    }

    /// Its reading and writing halves, each usable from its own task.
    ///
    /// ```no_run
    /// # async fn demo(sub: fowl::dilation::Subchannel) -> std::io::Result<()> {
    /// use tokio::io::AsyncWriteExt;
    ///
    /// let (mut reader, mut writer) = sub.into_split();
    /// // our buffer becomes the record: no copy
    /// writer.write_owned(b"hello".to_vec()).await?;
    /// writer.shutdown().await?;
    /// // each received record whole, as it arrived
    /// while let Some(chunk) = reader.read_chunk().await? {
    ///     println!("{} bytes", chunk.len());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_split(self) -> (SubchannelReader, SubchannelWriter) {
        (self.reader, self.writer)
    }
}

impl SubchannelReader {
    /// The next piece of received data whole, as it arrived (one DATA record, at most
    /// [`MAX_DATA`] bytes), without copying it; `None` at the end of the stream.
    pub async fn read_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        std::future::poll_fn(|cx| self.poll_read_chunk(cx)).await
    }

    /// See [`SubchannelReader::read_chunk`].
    pub fn poll_read_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Vec<u8>>>> {
        let mut i = self.shared.lock();
        let chunk = match i.chunks.pop_front() {
            Some(mut chunk) => {
                let offset = std::mem::take(&mut i.offset);
                if offset > 0 {
                    chunk.drain(..offset);
                }
                chunk
            }
            None if i.eof => return Poll::Ready(Ok(None)),
            None if i.reset => {
                return Poll::Ready(Err(session_ended(io::ErrorKind::ConnectionReset)))
            }
            None => {
                i.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
        };
        self.consumed(&mut i, chunk.len());
        Poll::Ready(Ok(Some(chunk)))
    }

    /// Accounts for `n` bytes our reader took out of the buffer: resumes reading the connection
    /// when the buffer went back under its limit, and credits the peer (flow control).
    fn consumed(&self, i: &mut Inbound, n: usize) {
        let was_over = i.bytes > self.shared.limit;
        i.bytes -= n;
        if was_over && i.bytes <= self.shared.limit {
            self.shared.resume.notify_one();
        }
        if let Some(flow) = &self.shared.flow {
            i.consumed += n as u64;
            if i.consumed - i.credited >= flow.credit_every {
                i.credited = i.consumed;
                let total = i.consumed;
                let _ = self.commands.send(SubCommand::Consumed {
                    scid: self.scid,
                    total,
                });
            }
        }
    }
}

fn session_ended(kind: io::ErrorKind) -> io::Error {
    io::Error::new(kind, "the Dilation session ended")
}

impl AsyncRead for SubchannelReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut i = this.shared.lock();
        let mut copied = 0;
        while buf.remaining() > 0 {
            let offset = i.offset;
            let Some(front) = i.chunks.front() else { break };
            let n = (front.len() - offset).min(buf.remaining());
            buf.put_slice(&front[offset..offset + n]);
            copied += n;
            if offset + n == front.len() {
                i.chunks.pop_front();
                i.offset = 0;
            } else {
                i.offset += n;
            }
        }
        this.consumed(&mut i, copied);
        if copied > 0 || i.eof {
            return Poll::Ready(Ok(()));
        }
        if i.reset {
            return Poll::Ready(Err(session_ended(io::ErrorKind::ConnectionReset)));
        }
        i.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl SubchannelWriter {
    /// Waits until `n` bytes (at most [`MAX_DATA`]) may be sent: the subchannel's window (a slow
    /// reader at the peer stops this writer only), then the connection's budget; a window permit
    /// taken is given back while the budget waits.
    fn poll_reserve(&mut self, cx: &mut Context<'_>, n: usize) -> Poll<io::Result<()>> {
        if self.write_closed || self.shared.write_refused.load(Ordering::Relaxed) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "subchannel is closed for writing",
            )));
        }
        if n == 0 {
            return Poll::Ready(Ok(()));
        }
        let ended = || Poll::Ready(Err(session_ended(io::ErrorKind::BrokenPipe)));
        let window = match self
            .window
            .as_mut()
            .map(|w| w.poll_acquire_many(cx, n as u32))
        {
            None => None,
            Some(Poll::Pending) => return Poll::Pending,
            Some(Poll::Ready(None)) => return ended(),
            Some(Poll::Ready(Some(permit))) => Some(permit),
        };
        match self.budget.poll_acquire_many(cx, n as u32) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return ended(),
            Poll::Ready(Some(permit)) => permit.forget(),
        }
        if let (Some(permit), Some(flow)) = (window, &self.shared.flow) {
            permit.forget();
            flow.counts.lock().unwrap_or_else(|e| e.into_inner()).0 += n as u64;
        }
        Poll::Ready(Ok(()))
    }

    /// Hands reserved data to the task.
    fn send(&self, data: Vec<u8>) -> io::Result<()> {
        let scid = self.scid;
        self.commands
            .send(SubCommand::Data { scid, data })
            .map_err(|_| session_ended(io::ErrorKind::BrokenPipe))
    }

    /// Waits until `n` bytes (at most [`MAX_DATA`]) may be sent and takes them: then fill a
    /// buffer of at most `n` bytes and hand it to [`SubchannelWriter::send_reserved`]. So data
    /// is read (from a local socket, say) only once it can leave, and many streams waiting to
    /// send hold no buffers.
    pub async fn reserve(&mut self, n: usize) -> io::Result<()> {
        let n = n.min(MAX_DATA);
        std::future::poll_fn(|cx| self.poll_reserve(cx, n)).await
    }

    /// Sends `data` (one record, without copying it) after [`SubchannelWriter::reserve`] took
    /// `reserved` bytes, and gives back what it did not use.
    pub fn send_reserved(&mut self, mut data: Vec<u8>, reserved: usize) -> io::Result<()> {
        let reserved = reserved.min(MAX_DATA);
        data.truncate(reserved);
        let unused = reserved - data.len();
        if unused > 0 {
            self.budget.clone_inner().add_permits(unused);
            if let Some(flow) = &self.shared.flow {
                flow.window.add_permits(unused);
                flow.counts.lock().unwrap_or_else(|e| e.into_inner()).0 -= unused as u64;
            }
        }
        match data.is_empty() {
            true => Ok(()),
            false => self.send(data),
        }
    }

    /// Writes `data` without copying it (pieces of at most [`MAX_DATA`] bytes, one record each).
    pub async fn write_owned(&mut self, mut data: Vec<u8>) -> io::Result<()> {
        while !data.is_empty() {
            let rest = match data.len() > MAX_DATA {
                true => data.split_off(MAX_DATA),
                false => Vec::new(),
            };
            self.reserve(data.len()).await?;
            self.send(data)?;
            data = rest;
        }
        Ok(())
    }

    /// Closes the subchannel for writing (a half-close; a full close toward a Python peer).
    fn close(&mut self) {
        if !self.write_closed {
            self.write_closed = true;
            let _ = self.commands.send(SubCommand::Close { scid: self.scid });
        }
    }
}

impl AsyncWrite for SubchannelWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = buf.len().min(MAX_DATA);
        match this.poll_reserve(cx, n) {
            Poll::Ready(Ok(())) => {}
            other => return other.map(|r| r.map(|()| 0)),
        }
        if n > 0 {
            this.send(buf[..n].to_vec())?;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().close();
        Poll::Ready(Ok(()))
    }
}

impl Drop for SubchannelWriter {
    fn drop(&mut self) {
        self.close();
    }
}

impl AsyncRead for Subchannel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for Subchannel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().writer).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().writer).poll_shutdown(cx)
    }
}
