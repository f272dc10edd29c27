//! The selected connection's I/O: a reader task that decrypts and decodes records, and a writer
//! task that encodes and encrypts them, so each direction's crypto runs on its own core.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::dilation::l2::{L2Connection, RecvHalf, SendHalf};
use crate::dilation::record::Record;

/// Batches in flight from the task to the writer, and from the reader to the task.
const WRITE_BATCHES: usize = 4;
pub(crate) const READ_BATCHES: usize = 4;
const READ_BUFFER: usize = 256 * 1024;

pub(crate) enum LinkEvent {
    Records { link: u64, records: Vec<Record> },
    Lost { link: u64, reason: String },
}

/// Where a link reports: records through a bounded channel (which the Dilation task stops
/// reading while a subchannel's buffer is full), loss through an unbounded one that it always
/// reads, so that a dead connection is noticed even then.
#[derive(Clone)]
pub(crate) struct LinkReports {
    pub records: mpsc::Sender<LinkEvent>,
    pub lost: mpsc::UnboundedSender<LinkEvent>,
}

/// A selected connection.
pub(crate) struct Link {
    pub id: u64,
    pub writer: mpsc::Sender<Vec<Arc<Record>>>,
    tasks: JoinSet<()>,
}

impl Link {
    /// Starts the I/O tasks; the connection must be open (handshake and KCMs done).
    pub fn start(
        id: u64,
        stream: TcpStream,
        l2: L2Connection,
        reports: LinkReports,
    ) -> Option<Link> {
        let (send, recv) = l2.into_halves()?;
        let (read, write) = stream.into_split();
        let (writer, batches) = mpsc::channel(WRITE_BATCHES);
        let mut tasks = JoinSet::new();
        tasks.spawn(read_loop(id, read, recv, reports.clone()));
        tasks.spawn(write_loop(id, write, send, batches, reports));
        Some(Link { id, writer, tasks })
    }

    /// Stops both tasks and drops the connection.
    pub fn abort(&mut self) {
        self.tasks.abort_all();
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.abort();
    }
}

async fn read_loop(
    id: u64,
    mut read: tokio::net::tcp::OwnedReadHalf,
    mut recv: RecvHalf,
    reports: LinkReports,
) {
    let reason = loop {
        let buf = recv.buffer();
        buf.reserve(READ_BUFFER);
        match read.read_buf(buf).await {
            Ok(0) => break "connection closed by the peer".to_string(),
            Ok(_) => {}
            Err(e) => break e.to_string(),
        };
        let mut records = Vec::new();
        if let Err(e) = recv.process(&mut records) {
            break e.to_string();
        }
        if !records.is_empty()
            && reports
                .records
                .send(LinkEvent::Records { link: id, records })
                .await
                .is_err()
        {
            return;
        }
    };
    let _ = reports.lost.send(LinkEvent::Lost { link: id, reason });
}

async fn write_loop(
    id: u64,
    mut write: tokio::net::tcp::OwnedWriteHalf,
    mut send: SendHalf,
    mut batches: mpsc::Receiver<Vec<Arc<Record>>>,
    reports: LinkReports,
) {
    let (mut out, mut scratch) = (Vec::new(), Vec::new());
    while let Some(batch) = batches.recv().await {
        out.clear();
        for r in &batch {
            send.seal_record(r, &mut out, &mut scratch);
        }
        if let Err(e) = write.write_all(&out).await {
            let _ = reports.lost.send(LinkEvent::Lost {
                link: id,
                reason: e.to_string(),
            });
            return;
        }
    }
}
