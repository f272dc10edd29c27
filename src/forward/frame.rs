//! The framing of fowl's structured subchannel messages: a 2-byte big-endian length, then a msgpack
//! map with string keys. One message per DATA record: a message is written with a single write.

use rmpv::Value;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Frames carry at most this many msgpack bytes (the length is a u16).
pub const MAX_FRAME: usize = u16::MAX as usize;

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame length {declared} does not match the {actual} bytes received")]
    Length { declared: usize, actual: usize },
    #[error("frame is not valid msgpack: {0}")]
    Msgpack(String),
    #[error("frame is not a msgpack map with string keys")]
    NotAMap,
    #[error("message of {0} bytes is too long for a frame")]
    TooLong(usize),
    #[error("stream ended inside a frame")]
    Truncated,
    #[error("reading a frame failed: {0}")]
    Io(String),
}

/// A decoded frame: its map entries in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fields(pub Vec<(String, Value)>);

impl Fields {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(Value::as_bool)
    }
}

/// Frames `fields` (in this order) as one message.
pub fn encode(fields: &[(&str, Value)]) -> Result<Vec<u8>, FrameError> {
    let map = Value::Map(
        fields
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    );
    let mut out = vec![0u8, 0u8];
    rmpv::encode::write_value(&mut out, &map).map_err(|e| FrameError::Msgpack(e.to_string()))?;
    let len = out.len() - 2;
    if len > MAX_FRAME {
        return Err(FrameError::TooLong(len));
    }
    out[..2].copy_from_slice(&(len as u16).to_be_bytes());
    Ok(out)
}

/// Decodes the msgpack body of one frame (without its length prefix).
pub fn decode_body(body: &[u8]) -> Result<Fields, FrameError> {
    let mut cursor = body;
    // nesting is bounded: peer messages are flat maps
    let value = rmpv::decode::read_value_with_max_depth(&mut cursor, 16)
        .map_err(|e| FrameError::Msgpack(e.to_string()))?;
    if !cursor.is_empty() {
        return Err(FrameError::Length {
            declared: body.len() - cursor.len(),
            actual: body.len(),
        });
    }
    let Value::Map(entries) = value else {
        return Err(FrameError::NotAMap);
    };
    entries
        .into_iter()
        .map(|(k, v)| match k {
            Value::String(s) => s.into_str().map(|k| (k, v)).ok_or(FrameError::NotAMap),
            _ => Err(FrameError::NotAMap),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Fields)
}

/// Decodes one whole frame, length prefix included, that must fill `buf` exactly.
#[cfg(test)]
pub fn decode(buf: &[u8]) -> Result<Fields, FrameError> {
    if buf.len() < 2 {
        return Err(FrameError::Truncated);
    }
    let declared = u16::from_be_bytes([buf[0], buf[1]]) as usize;
    if declared != buf.len() - 2 {
        return Err(FrameError::Length {
            declared,
            actual: buf.len() - 2,
        });
    }
    decode_body(&buf[2..])
}

/// Reads exactly one frame from a stream, and nothing after it.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> Result<Fields, FrameError> {
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e.to_string()),
    };
    let mut len = [0u8; 2];
    r.read_exact(&mut len).await.map_err(io)?;
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    r.read_exact(&mut body).await.map_err(io)?;
    decode_body(&body)
}
