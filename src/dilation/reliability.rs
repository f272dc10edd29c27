//! L4 reliability (reference §3.8): one seqnum counter per direction for OPEN, DATA and CLOSE;
//! every such record stays queued until the peer's cumulative ACK covers it and is resent, in
//! order, on every new connection; inbound records at or below the watermark are duplicates.

use std::collections::VecDeque;
use std::sync::Arc;

use super::record::{Record, Scid, Seqnum};

/// Default bound on the record bytes sent and waiting for an ACK. It only bounds memory: TCP
/// already limits what is in flight. It must stay well above what the socket buffers of both
/// ends can hold, because while we stop reading a connection (a slow subchannel reader) the ACKs
/// behind the data are not seen, and an application that writes in order to read would stall.
pub const DEFAULT_UNACKED_LIMIT: usize = 64 << 20;

/// The sending side: seqnum allocation and the unacked queue.
#[derive(Debug, Default)]
pub struct Outbound {
    next_seqnum: u64,
    queue: VecDeque<Arc<Record>>,
    queued_bytes: usize,
}

/// The 32-bit seqnum space is exhausted (Python raises too); the Dilation cannot continue.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("Dilation sequence numbers exhausted")]
pub struct SeqnumExhausted;

impl Outbound {
    /// Tests: only `left` sequence numbers remain.
    #[cfg(test)]
    pub fn exhaust(&mut self, left: u64) {
        self.next_seqnum = (1u64 << 32) - left;
    }

    fn seqnum(&mut self) -> Result<Seqnum, SeqnumExhausted> {
        let s = Seqnum::try_from(self.next_seqnum).map_err(|_| SeqnumExhausted)?;
        self.next_seqnum += 1;
        Ok(s)
    }

    fn push(&mut self, record: Record) -> &Record {
        self.queued_bytes += record.encoded_len();
        self.queue.push_back(Arc::new(record));
        self.queue.back().expect("just pushed")
    }

    pub fn open(&mut self, scid: Scid, subprotocol: &str) -> Result<&Record, SeqnumExhausted> {
        let seqnum = self.seqnum()?;
        Ok(self.push(Record::Open {
            scid,
            seqnum,
            subprotocol: subprotocol.into(),
        }))
    }

    pub fn data(&mut self, scid: Scid, data: Vec<u8>) -> Result<&Record, SeqnumExhausted> {
        let seqnum = self.seqnum()?;
        Ok(self.push(Record::Data { scid, seqnum, data }))
    }

    pub fn close(&mut self, scid: Scid) -> Result<&Record, SeqnumExhausted> {
        let seqnum = self.seqnum()?;
        Ok(self.push(Record::Close { scid, seqnum }))
    }

    /// Retires every queued record with a seqnum up to `acked`; returns how many records and how
    /// many DATA payload bytes were retired.
    pub fn ack(&mut self, acked: Seqnum) -> (usize, usize) {
        let (mut records, mut data_bytes) = (0, 0);
        while let Some(front) = self.queue.front() {
            if front.seqnum().is_some_and(|s| s <= acked) {
                self.queued_bytes -= front.encoded_len();
                if let Record::Data { data, .. } = front.as_ref() {
                    data_bytes += data.len();
                }
                records += 1;
                self.queue.pop_front();
            } else {
                break;
            }
        }
        (records, data_bytes)
    }

    /// The queued record at `index` (0 = oldest unacked).
    pub fn get(&self, index: usize) -> Option<&Arc<Record>> {
        self.queue.get(index)
    }

    /// The records to resend on a new connection, in seqnum order.
    #[cfg(test)]
    pub fn unacked(&self) -> impl Iterator<Item = &Arc<Record>> {
        self.queue.iter()
    }

    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// The receiving side: the watermark.
#[derive(Debug, Default)]
pub struct Inbound {
    highest_seen: Option<Seqnum>,
}

impl Inbound {
    /// Whether a reliable record with `seqnum` is new (process it) or old (drop it). Either way
    /// it must be acknowledged.
    pub fn accept(&mut self, seqnum: Seqnum) -> bool {
        if self.highest_seen.is_some_and(|h| seqnum <= h) {
            return false;
        }
        self.highest_seen = Some(seqnum);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqnums_are_shared_by_all_subchannels_and_retired_cumulatively() {
        let mut out = Outbound::default();
        assert_eq!(out.open(1, "a").unwrap().seqnum(), Some(0));
        assert_eq!(out.data(1, b"x".to_vec()).unwrap().seqnum(), Some(1));
        assert_eq!(out.open(3, "b").unwrap().seqnum(), Some(2));
        assert_eq!(out.close(1).unwrap().seqnum(), Some(3));
        assert_eq!(out.len(), 4);
        assert_eq!(out.ack(1), (2, 1));
        let left: Vec<_> = out.unacked().map(|r| r.seqnum().unwrap()).collect();
        assert_eq!(left, [2, 3]);
        assert_eq!(out.ack(0), (0, 0)); // old ack: nothing
        assert_eq!(out.len(), 2);
        out.ack(3);
        assert!(out.is_empty());
        assert_eq!(out.queued_bytes(), 0);
    }

    #[test]
    fn watermark_drops_old_and_duplicate_records() {
        let mut inb = Inbound::default();
        assert!(inb.accept(0));
        assert!(!inb.accept(0));
        assert!(inb.accept(1));
        assert!(inb.accept(5));
        assert!(!inb.accept(3));
        assert!(!inb.accept(5));
        assert!(inb.accept(6));
    }

    #[test]
    fn seqnums_end_at_u32_max() {
        let mut out = Outbound {
            next_seqnum: u32::MAX as u64,
            ..Outbound::default()
        };
        assert_eq!(out.close(1).unwrap().seqnum(), Some(u32::MAX));
        assert_eq!(out.close(1).unwrap_err(), SeqnumExhausted);
    }
}
