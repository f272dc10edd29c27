//! What the forwarding engine reports, and the queue that carries it to a slow consumer without
//! ever blocking the engine: byte counts for a stream that are still queued are added up in place,
//! so totals stay exact while the queue holds at most one count per stream and direction.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::dilation::PathKind;
use crate::wormhole::Mood;

/// A stream's number within this process, shared by outgoing and incoming streams, from 1.
pub type StreamId = u64;

/// One report of the engine (fowld's output kinds, see `protocol/fowld.md`).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Roost side: listening for the peer's service `name`.
    Listening {
        name: String,
        port: Option<u16>,
        path: Option<String>,
    },
    ListeningFailed {
        name: String,
        reason: String,
    },
    /// Fledge side: the peer listens; streams connect to `port` (or `path`).
    AwaitingConnect {
        name: String,
        port: Option<u16>,
        path: Option<String>,
    },
    OutgoingConnection {
        name: String,
        id: StreamId,
    },
    IncomingConnection {
        name: Option<String>,
        id: StreamId,
    },
    /// Bytes read from the local socket (to the peer).
    BytesIn {
        id: StreamId,
        bytes: u64,
    },
    /// Bytes written to the local socket (from the peer).
    BytesOut {
        id: StreamId,
        bytes: u64,
    },
    OutgoingDone {
        name: String,
        id: StreamId,
    },
    OutgoingLost {
        name: String,
        id: StreamId,
        reason: String,
    },
    IncomingDone {
        id: StreamId,
    },
    IncomingLost {
        id: StreamId,
        reason: String,
    },
    Error(String),
    /// What the session around the engine reports, queued in order with the rest.
    Status(Status),
}

/// What a fowl session reports besides the engine's events (fowld's session kinds).
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// The mailbox server at `url` welcomed us (its whole welcome object, as it sent it).
    Welcome {
        url: String,
        welcome: serde_json::Value,
    },
    CodeAllocated {
        code: String,
    },
    /// The key is confirmed and the peer's versions are known: the verifier (hex) and the peer's
    /// application versions (its own JSON).
    PeerConnected {
        verifier: String,
        versions: serde_json::Value,
    },
    /// Opt-in: a Dilation connection was selected.
    DilationConnected {
        generation: u32,
        path: PathKind,
        peer: SocketAddr,
    },
    /// Opt-in: the Dilation connection was lost; a new generation is connecting.
    DilationReconnecting {
        generation: u32,
    },
    /// The answer to the controller's ping: its own `ping_id`, and the round trip in seconds.
    Pong {
        ping_id: serde_json::Value,
        time_of_flight: f64,
    },
    /// The session ended with this mood.
    Closed {
        mood: Mood,
    },
}

/// A byte count's key (stream, is-in) and its bytes; `None` for other events.
fn count_of(event: &Event) -> Option<((StreamId, bool), u64)> {
    match *event {
        Event::BytesIn { id, bytes } => Some(((id, true), bytes)),
        Event::BytesOut { id, bytes } => Some(((id, false), bytes)),
        _ => None,
    }
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Event>,
    /// Sequence number of `items[0]`.
    base: u64,
    /// (stream, is-in) -> sequence number of its queued count.
    counts: HashMap<(StreamId, bool), u64>,
    closed: bool,
}

/// A many-producer, one-consumer queue of [`Event`]s; producers never wait.
#[derive(Clone, Default)]
pub struct EventQueue {
    inner: Arc<(Mutex<Queue>, Condvar)>,
}

impl EventQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `event`; a byte count joins a count of the same stream and direction still queued.
    pub fn push(&self, event: Event) {
        let mut q = self.lock();
        if let Some((key, n)) = count_of(&event) {
            if let Some(seq) = q.counts.get(&key).copied() {
                let index = (seq - q.base) as usize;
                if let Some(Event::BytesIn { bytes, .. } | Event::BytesOut { bytes, .. }) =
                    q.items.get_mut(index)
                {
                    *bytes += n;
                    return;
                }
            }
            let seq = q.base + q.items.len() as u64;
            q.counts.insert(key, seq);
        }
        q.items.push_back(event);
        self.inner.1.notify_one();
    }

    /// Takes everything queued, waiting up to `wait` for something to arrive. An empty result
    /// after [`close`](Self::close) means the end.
    pub fn drain(&self, wait: Duration) -> Vec<Event> {
        let mut q = self.lock();
        if q.items.is_empty() && !q.closed {
            q = self
                .inner
                .1
                .wait_timeout(q, wait)
                .map(|(q, _)| q)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        let out: Vec<Event> = q.items.drain(..).collect();
        q.base += out.len() as u64;
        q.counts.clear();
        out
    }

    /// No more events: the consumer ends after draining.
    pub fn close(&self) {
        self.lock().closed = true;
        self.inner.1.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_counts_add_up_in_place_and_keep_their_order() {
        let q = EventQueue::default();
        q.push(Event::OutgoingConnection {
            name: "a".into(),
            id: 1,
        });
        for _ in 0..1000 {
            q.push(Event::BytesIn { id: 1, bytes: 64 });
            q.push(Event::BytesOut { id: 1, bytes: 10 });
        }
        q.push(Event::BytesIn { id: 2, bytes: 5 });
        q.push(Event::OutgoingDone {
            name: "a".into(),
            id: 1,
        });
        let got = q.drain(Duration::ZERO);
        assert_eq!(
            got,
            vec![
                Event::OutgoingConnection {
                    name: "a".into(),
                    id: 1
                },
                Event::BytesIn {
                    id: 1,
                    bytes: 64_000
                },
                Event::BytesOut {
                    id: 1,
                    bytes: 10_000
                },
                Event::BytesIn { id: 2, bytes: 5 },
                Event::OutgoingDone {
                    name: "a".into(),
                    id: 1
                },
            ]
        );
        // after a drain, counts start anew
        q.push(Event::BytesIn { id: 1, bytes: 1 });
        q.push(Event::BytesIn { id: 1, bytes: 2 });
        assert_eq!(
            q.drain(Duration::ZERO),
            vec![Event::BytesIn { id: 1, bytes: 3 }]
        );
        q.close();
        assert!(q.drain(Duration::from_secs(5)).is_empty());
    }
}
