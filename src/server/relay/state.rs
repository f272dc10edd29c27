//! The transit relay's protocol logic, sans-IO: handshake parsing and pairing by token and side.
//! Connections are ids chosen by the driver; the driver owns sockets and timers.

use std::collections::HashMap;

/// A connection, as numbered by the driver.
pub type RelayConnId = u64;

/// The longest handshake line accepted, newline excluded (as the Python relay).
pub const MAX_HANDSHAKE_LINE: usize = 1024;

/// What a client asked for in its handshake line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// 64 word characters (hex in practice).
    pub token: String,
    /// 16 word characters; `None` for the legacy, unsided handshake.
    pub side: Option<String>,
}

fn word_chars(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Parses one handshake line (without its `\n`): `please relay TOKEN for side SIDE` or the legacy
/// `please relay TOKEN`. `None` means `bad handshake`.
pub fn parse_handshake(line: &[u8]) -> Option<Handshake> {
    let line = std::str::from_utf8(line).ok()?;
    let rest = line.strip_prefix("please relay ")?;
    let (token, side) = match rest.split_once(" for side ") {
        Some((token, side)) => (token, Some(side)),
        None => (rest, None),
    };
    if !word_chars(token, 64) || !side.is_none_or(|s| word_chars(s, 16)) {
        return None;
    }
    Some(Handshake {
        token: token.to_owned(),
        side: side.map(str::to_owned),
    })
}

/// What happens to a connection that completed its handshake.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// No partner yet: it waits.
    Wait,
    /// Paired with a waiting connection. Both get `ok\n`; `redundant` waiters for the same token
    /// are dropped.
    Paired {
        /// The waiting connection it is paired with.
        partner: RelayConnId,
        /// Other connections that waited with the same token, now dropped.
        redundant: Vec<RelayConnId>,
    },
    /// Too many connections are waiting already.
    Full,
}

/// The table of connections waiting for a partner.
#[derive(Debug)]
pub struct RelayState {
    waiting: HashMap<String, Vec<(RelayConnId, Option<String>)>>,
    waiting_count: usize,
    max_waiting: usize,
}

impl RelayState {
    /// An empty table; at most `max_waiting` connections may wait at once.
    pub fn new(max_waiting: usize) -> RelayState {
        RelayState {
            waiting: HashMap::new(),
            waiting_count: 0,
            max_waiting,
        }
    }

    /// Connections waiting for a partner.
    pub fn waiting(&self) -> usize {
        self.waiting_count
    }

    /// A connection sent a valid handshake. Two connections pair when they carry the same token
    /// and their sides differ or one is unsided; same-side connections never pair.
    pub fn arrive(&mut self, id: RelayConnId, hs: Handshake) -> Arrival {
        let compatible = |other: &Option<String>| match (other, &hs.side) {
            (Some(a), Some(b)) => a != b,
            _ => true,
        };
        if let Some(list) = self.waiting.get_mut(&hs.token) {
            if let Some(pos) = list.iter().position(|(_, side)| compatible(side)) {
                let (partner, _) = list.remove(pos);
                let redundant: Vec<RelayConnId> = list.drain(..).map(|(id, _)| id).collect();
                self.waiting.remove(&hs.token);
                self.waiting_count -= 1 + redundant.len();
                return Arrival::Paired { partner, redundant };
            }
        }
        if self.waiting_count >= self.max_waiting {
            return Arrival::Full;
        }
        self.waiting
            .entry(hs.token)
            .or_default()
            .push((id, hs.side));
        self.waiting_count += 1;
        Arrival::Wait
    }

    /// A waiting connection left (closed, impatient or timed out). Returns whether it was still
    /// waiting: `false` means a partner took it first.
    pub fn leave(&mut self, id: RelayConnId, token: &str) -> bool {
        let Some(list) = self.waiting.get_mut(token) else {
            return false;
        };
        let Some(pos) = list.iter().position(|(w, _)| *w == id) else {
            return false;
        };
        list.remove(pos);
        if list.is_empty() {
            self.waiting.remove(token);
        }
        self.waiting_count -= 1;
        true
    }
}
