//! L3 records (reference §3.7): the plaintext inside each Noise transport frame.
//!
//! | record | tag | after the tag |
//! |---|---|---|
//! | KCM | 0x00 | – |
//! | PING | 0x01 | ping id (4 bytes) |
//! | PONG | 0x02 | ping id (4 bytes) |
//! | OPEN | 0x03 | be4(scid) be4(seqnum) subprotocol (UTF-8, to the end) |
//! | DATA | 0x04 | be4(scid) be4(seqnum) data (to the end) |
//! | CLOSE | 0x05 | be4(scid) be4(seqnum) |
//! | ACK | 0x06 | be4(seqnum) |
//! | CREDIT (ours) | 0x07 | be4(scid) be8(bytes of the subchannel the receiver's reader consumed, in all) |
//!
//! CREDIT is our extension (per-subchannel flow control, `protocol/dilation.md`), sent only to a
//! peer whose `please` announced a window.

/// A subchannel id.
pub type Scid = u32;
/// A reliable-record sequence number (one counter per direction).
pub type Seqnum = u32;

/// One L3 record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Key-confirmation message: the first record on a connection.
    Kcm,
    /// Liveness probe (its 4-byte id); answered with a PONG of the same id.
    Ping([u8; 4]),
    /// The answer to a PING (its id).
    Pong([u8; 4]),
    /// Opens subchannel `scid` for `subprotocol` (reliable).
    Open {
        /// The subchannel id (odd from the Leader, even from the Follower).
        scid: Scid,
        /// Sequence number in the sender's reliable stream.
        seqnum: Seqnum,
        /// The subprotocol name.
        subprotocol: String,
    },
    /// Bytes of subchannel `scid` (reliable).
    Data {
        /// The subchannel id.
        scid: Scid,
        /// Sequence number in the sender's reliable stream.
        seqnum: Seqnum,
        /// The payload.
        data: Vec<u8>,
    },
    /// The sender writes no more on `scid` (reliable).
    Close {
        /// The subchannel id.
        scid: Scid,
        /// Sequence number in the sender's reliable stream.
        seqnum: Seqnum,
    },
    /// Acknowledges every reliable record up to this sequence number.
    Ack(Seqnum),
    /// (ours) The receiver's reader consumed `consumed` bytes of `scid` in all: the sender may
    /// have its window more than that outstanding (not reliable: the latest total is sent
    /// again on every new connection).
    Credit {
        /// The subchannel.
        scid: Scid,
        /// Bytes its reader consumed since it opened.
        consumed: u64,
    },
}

/// A record that cannot be decoded: the connection carrying it is dropped.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// No bytes at all.
    #[error("empty record")]
    Empty,
    /// The first byte is no record type we know.
    #[error("unknown record tag {0:#04x}")]
    UnknownTag(u8),
    /// The record is too short or too long for its type.
    #[error("record with tag {tag:#04x} has {len} bytes, expected {expected}")]
    Length {
        /// The record type.
        tag: u8,
        /// Its length.
        len: usize,
        /// What its type needs.
        expected: &'static str,
    },
    /// The subprotocol name of an OPEN is not UTF-8.
    #[error("OPEN subprotocol name is not UTF-8")]
    Subprotocol,
}

/// Record type: key confirmation.
pub const KCM: u8 = 0x00;
/// Record type: PING.
pub const PING: u8 = 0x01;
/// Record type: PONG.
pub const PONG: u8 = 0x02;
/// Record type: OPEN.
pub const OPEN: u8 = 0x03;
/// Record type: DATA.
pub const DATA: u8 = 0x04;
/// Record type: CLOSE.
pub const CLOSE: u8 = 0x05;
/// Record type: ACK.
pub const ACK: u8 = 0x06;
/// Record type: CREDIT (ours).
pub const CREDIT: u8 = 0x07;

/// Bytes a DATA record adds to its payload.
pub const DATA_HEADER: usize = 9;

fn be4(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Record {
    /// Whether the record takes a seqnum, is queued until acknowledged and is acknowledged.
    pub fn is_reliable(&self) -> bool {
        matches!(
            self,
            Record::Open { .. } | Record::Data { .. } | Record::Close { .. }
        )
    }

    /// The sequence number of a reliable record.
    pub fn seqnum(&self) -> Option<Seqnum> {
        match self {
            Record::Open { seqnum, .. }
            | Record::Data { seqnum, .. }
            | Record::Close { seqnum, .. } => Some(*seqnum),
            _ => None,
        }
    }

    /// The length of [`Record::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        match self {
            Record::Kcm => 1,
            Record::Ping(_) | Record::Pong(_) | Record::Ack(_) => 5,
            Record::Open { subprotocol, .. } => 9 + subprotocol.len(),
            Record::Data { data, .. } => 9 + data.len(),
            Record::Close { .. } => 9,
            Record::Credit { .. } => 13,
        }
    }

    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let head = |out: &mut Vec<u8>, tag: u8, scid: Scid, seqnum: Seqnum| {
            out.push(tag);
            out.extend_from_slice(&scid.to_be_bytes());
            out.extend_from_slice(&seqnum.to_be_bytes());
        };
        match self {
            Record::Kcm => out.push(KCM),
            Record::Ping(id) => {
                out.push(PING);
                out.extend_from_slice(id);
            }
            Record::Pong(id) => {
                out.push(PONG);
                out.extend_from_slice(id);
            }
            Record::Open {
                scid,
                seqnum,
                subprotocol,
            } => {
                head(out, OPEN, *scid, *seqnum);
                out.extend_from_slice(subprotocol.as_bytes());
            }
            Record::Data { scid, seqnum, data } => {
                head(out, DATA, *scid, *seqnum);
                out.extend_from_slice(data);
            }
            Record::Close { scid, seqnum } => head(out, CLOSE, *scid, *seqnum),
            Record::Ack(seqnum) => {
                out.push(ACK);
                out.extend_from_slice(&seqnum.to_be_bytes());
            }
            Record::Credit { scid, consumed } => {
                out.push(CREDIT);
                out.extend_from_slice(&scid.to_be_bytes());
                out.extend_from_slice(&consumed.to_be_bytes());
            }
        }
    }

    /// The record's bytes (type byte, then its fields big-endian).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Decodes one record; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
        let (&tag, body) = bytes.split_first().ok_or(RecordError::Empty)?;
        let need = |expected: &'static str, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(RecordError::Length {
                    tag,
                    len: bytes.len(),
                    expected,
                })
            }
        };
        match tag {
            KCM => {
                need("1", body.is_empty())?;
                Ok(Record::Kcm)
            }
            PING | PONG => {
                need("5", body.len() == 4)?;
                let id = [body[0], body[1], body[2], body[3]];
                Ok(if tag == PING {
                    Record::Ping(id)
                } else {
                    Record::Pong(id)
                })
            }
            ACK => {
                need("5", body.len() == 4)?;
                Ok(Record::Ack(be4(body)))
            }
            CREDIT => {
                need("13", body.len() == 12)?;
                let mut consumed = [0u8; 8];
                consumed.copy_from_slice(&body[4..]);
                Ok(Record::Credit {
                    scid: be4(body),
                    consumed: u64::from_be_bytes(consumed),
                })
            }
            OPEN | DATA | CLOSE => {
                need(
                    if tag == CLOSE { "9" } else { "at least 9" },
                    body.len() >= 8 && (tag != CLOSE || body.len() == 8),
                )?;
                let (scid, seqnum, rest) = (be4(&body[..4]), be4(&body[4..8]), &body[8..]);
                Ok(match tag {
                    OPEN => {
                        let subprotocol =
                            std::str::from_utf8(rest).map_err(|_| RecordError::Subprotocol)?;
                        Record::Open {
                            scid,
                            seqnum,
                            subprotocol: subprotocol.to_owned(),
                        }
                    }
                    DATA => Record::Data {
                        scid,
                        seqnum,
                        data: rest.to_vec(),
                    },
                    _ => Record::Close { scid, seqnum },
                })
            }
            other => Err(RecordError::UnknownTag(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn reference_encodings() {
        // test_parse.py
        let mut open = h("03 00000201 00000100");
        open.extend_from_slice(b"proto");
        assert_eq!(
            Record::decode(&open).unwrap(),
            Record::Open {
                scid: 513,
                seqnum: 256,
                subprotocol: "proto".into()
            }
        );
        assert_eq!(Record::decode(&h("06 00000103")).unwrap(), Record::Ack(259));
        assert_eq!(
            Record::Open {
                scid: 65536,
                seqnum: 16,
                subprotocol: "proto".into()
            }
            .encode(),
            h("03 00010000 00000010 70726f746f")
        );
        // wormhole-dilation.md §7.2 plaintexts
        assert_eq!(
            Record::Open {
                scid: 1,
                seqnum: 0,
                subprotocol: "hello".into()
            }
            .encode(),
            h("03000000010000000068656c6c6f")
        );
        assert_eq!(
            Record::Data {
                scid: 1,
                seqnum: 1,
                data: b"hi".to_vec()
            }
            .encode(),
            h("0400000001000000016869")
        );
        assert_eq!(
            Record::Ping([0xde, 0xad, 0xbe, 0xef]).encode(),
            h("01deadbeef")
        );
        assert_eq!(
            Record::Close { scid: 1, seqnum: 2 }.encode(),
            h("050000000100000002")
        );
        assert_eq!(Record::Kcm.encode(), vec![0]);
    }

    #[test]
    fn round_trips() {
        let records = [
            Record::Kcm,
            Record::Ping([1, 2, 3, 4]),
            Record::Pong([5, 6, 7, 8]),
            Record::Open {
                scid: u32::MAX,
                seqnum: 7,
                subprotocol: "fowl-commands".into(),
            },
            Record::Open {
                scid: 2,
                seqnum: 0,
                subprotocol: String::new(),
            },
            Record::Data {
                scid: 3,
                seqnum: u32::MAX,
                data: vec![0xff; 70_000],
            },
            Record::Data {
                scid: 3,
                seqnum: 1,
                data: vec![],
            },
            Record::Close {
                scid: 9,
                seqnum: 10,
            },
            Record::Ack(0),
            Record::Credit {
                scid: 7,
                consumed: u64::MAX - 1,
            },
        ];
        assert_eq!(
            Record::Credit {
                scid: 1,
                consumed: 65536
            }
            .encode(),
            h("07 00000001 0000000000010000")
        );
        assert!(Record::decode(&h("07 00000001 00000000")).is_err());
        for r in records {
            let bytes = r.encode();
            assert_eq!(bytes.len(), r.encoded_len());
            assert_eq!(Record::decode(&bytes).unwrap(), r);
        }
    }

    #[test]
    fn malformed_records_are_errors() {
        assert_eq!(Record::decode(&[]), Err(RecordError::Empty));
        assert_eq!(Record::decode(&[0x08]), Err(RecordError::UnknownTag(8)));
        assert!(matches!(
            Record::decode(&[0x07]),
            Err(RecordError::Length { .. })
        ));
        assert_eq!(
            Record::decode(&[0xff, 1, 2]),
            Err(RecordError::UnknownTag(0xff))
        );
        for bad in [
            &[0u8, 0][..],
            &[1, 1, 2, 3],
            &[2, 1, 2, 3, 4, 5],
            &[6, 0, 0],
            &[3, 0, 0, 0, 1, 0, 0, 0],
            &[4, 0],
            &[5, 0, 0, 0, 1, 0, 0, 0, 2, 9],
        ] {
            assert!(
                matches!(Record::decode(bad), Err(RecordError::Length { .. })),
                "{bad:?}"
            );
        }
        let mut open = h("03 00000001 00000000");
        open.extend_from_slice(&[0xff, 0xfe]);
        assert_eq!(Record::decode(&open), Err(RecordError::Subprotocol));
        // every short prefix of every kind decodes or errors, never panics
        for tag in 0u8..=8 {
            for len in 0..12 {
                let mut b = vec![tag];
                b.extend(std::iter::repeat_n(0x41, len));
                let _ = Record::decode(&b);
            }
        }
    }
}
