//! What the forwarding engine reports, and the queue that carries it to a slow consumer without
//! ever blocking the engine: byte counts for a stream that are still queued are added up in place,
//! so totals stay exact while the queue holds at most one count per stream and direction. Byte
//! counts reach the consumer at most every 50 ms (`COUNT_INTERVAL`), as a bulk stream would
//! otherwise wake it for every chunk; every other event wakes it at once.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::dilation::PathKind;
use crate::wormhole::Mood;

/// A stream's number within this process, shared by outgoing and incoming streams, from 1.
pub type StreamId = u64;

/// One report of the engine (fowld's output kinds, see `protocol/fowld.md`).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Roost side: listening for the peer's service `name`.
    Listening {
        /// The service name the peer asked us to listen for.
        name: String,
        /// The TCP port we listen on; `None` for a unix listener.
        port: Option<u16>,
        /// The unix socket path we listen on; `None` for a TCP listener.
        path: Option<String>,
    },
    /// Roost side: the listener the peer asked for could not be opened (after an `Error`).
    ListeningFailed {
        /// The service name the peer asked us to listen for.
        name: String,
        /// Why the listener could not be opened.
        reason: String,
    },
    /// Fledge side: the peer listens; streams connect to `port` (or `path`).
    AwaitingConnect {
        /// Our service's name.
        name: String,
        /// The local TCP port streams connect to; `None` for a unix target.
        port: Option<u16>,
        /// The local unix socket path streams connect to; `None` for a TCP target.
        path: Option<String>,
    },
    /// Roost side: a local client connected to our listener; its stream to the peer is opened.
    OutgoingConnection {
        /// The service the listener is for.
        name: String,
        /// The new stream's id.
        id: StreamId,
    },
    /// Fledge side: the peer opened a stream, naming the service it wants (not yet checked).
    IncomingConnection {
        /// The service name from the peer's handshake; `None` if it sent none.
        name: Option<String>,
        /// The new stream's id.
        id: StreamId,
    },
    /// Bytes read from the local socket (to the peer).
    BytesIn {
        /// The stream.
        id: StreamId,
        /// How many bytes (summed while queued).
        bytes: u64,
    },
    /// Bytes written to the local socket (from the peer).
    BytesOut {
        /// The stream.
        id: StreamId,
        /// How many bytes (summed while queued).
        bytes: u64,
    },
    /// An outgoing stream ended (also after `OutgoingLost`).
    OutgoingDone {
        /// The service the stream was for.
        name: String,
        /// The stream's id.
        id: StreamId,
    },
    /// An outgoing stream failed: refused by the peer, no reply, or an I/O error.
    OutgoingLost {
        /// The service the stream was for.
        name: String,
        /// The stream's id.
        id: StreamId,
        /// Why it failed.
        reason: String,
    },
    /// An incoming stream ended cleanly.
    IncomingDone {
        /// The stream's id.
        id: StreamId,
    },
    /// An incoming stream failed or was refused (by policy, or the local connect failed).
    IncomingLost {
        /// The stream's id.
        id: StreamId,
        /// Why it failed.
        reason: String,
    },
    /// Something went wrong that the controller should hear of (fowld's `error`; the message).
    Error(String),
    /// What the session around the engine reports, queued in order with the rest.
    Status(Status),
}

/// What a fowl session reports besides the engine's events (fowld's session kinds).
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// The mailbox server at `url` welcomed us (its whole welcome object, as it sent it).
    Welcome {
        /// The mailbox server's URL.
        url: String,
        /// The server's welcome object.
        welcome: serde_json::Value,
        /// The SOCKS5 proxy every connection of the session goes through (the relay being the
        /// only path), without its password; `None` without one.
        proxy: Option<String>,
    },
    /// A code was allocated for this session (after `allocate-code`).
    CodeAllocated {
        /// The whole code, e.g. `4-purple-sausages`.
        code: String,
    },
    /// The key is confirmed and the peer's versions are known: the verifier (hex) and the peer's
    /// application versions (its own JSON).
    PeerConnected {
        /// The verifier, in hex.
        verifier: String,
        /// The peer's application versions.
        versions: serde_json::Value,
    },
    /// Opt-in: a Dilation connection was selected.
    DilationConnected {
        /// The generation that connected (counted from 0; one per reconnection).
        generation: u32,
        /// Direct or through a relay.
        path: PathKind,
        /// The address we are connected to (the peer, or the relay).
        peer: SocketAddr,
        /// After a loss: how long no connection was selected.
        outage: Option<std::time::Duration>,
    },
    /// Opt-in: the Dilation connection was lost (why).
    DilationLost {
        /// The generation whose connection was lost.
        generation: u32,
        /// Why it was declared lost.
        reason: crate::dilation::LossReason,
    },
    /// Opt-in: after a loss, a new generation is connecting.
    DilationReconnecting {
        /// The generation now connecting.
        generation: u32,
        /// 1 for the first generation after the loss, then 2, ...
        attempt: u32,
    },
    /// The answer to the controller's ping: its own `ping_id`, and the round trip in seconds.
    Pong {
        /// The controller's `ping_id`, as it sent it.
        ping_id: serde_json::Value,
        /// Round trip to the mailbox server, in seconds.
        time_of_flight: f64,
    },
    /// Remembering the peer made progress or ended (`protocol/remember.md`).
    Remember(crate::remember::RememberReport),
    /// Meeting the remembered peer `name` (after `connect`), at these generations of the
    /// secret, newest first.
    Rendezvous {
        /// The local name of the peer.
        name: String,
        /// The generations waited at (two while a rotation is unconfirmed).
        generations: Vec<u64>,
    },
    /// The session ended with this mood.
    Closed {
        /// How the session ended.
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

/// `error` events queued at most while the consumer does not drain (they can come from the
/// peer); more are counted and reported as one. With [`MAX_ERROR_TEXT`], at most about 5 MiB.
pub const MAX_QUEUED_ERRORS: usize = 10_000;
/// Events of streams (their start and end; byte counts merge in place) queued at most while the
/// consumer does not drain: a peer opening and closing streams for ever cannot grow the queue
/// without bound. More are counted and reported in one `error`; errors and session events are
/// never dropped this way (errors have their own bound).
pub const MAX_QUEUED_STREAM_EVENTS: usize = 100_000;
/// Longest error text kept (a peer's refusal reason travels in it).
pub const MAX_ERROR_TEXT: usize = 512;
/// `error` events caused by the peer (see [`EventQueue::push_peer_error`]) shown per
/// [`PEER_ERROR_WINDOW`]; more are counted and reported in one line when the window ends.
pub const PEER_ERRORS_PER_WINDOW: u32 = 10;
/// See [`PEER_ERRORS_PER_WINDOW`].
pub const PEER_ERROR_WINDOW: Duration = Duration::from_secs(1);

/// Byte counts are handed to the consumer at most this often (20 times a second); they add up
/// in place meanwhile. Any other event takes them along at once, in order.
pub const COUNT_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Queue {
    /// The consumer waits in [`EventQueue::drain`]: a push wakes it.
    waiting: bool,
    /// When byte counts were last handed out.
    counts_drained: Option<Instant>,
    items: VecDeque<Event>,
    /// `error` events among `items`, and those dropped since the last drain.
    errors: usize,
    dropped_errors: u64,
    /// Stream events among `items`, and those dropped since the last drain.
    stream_events: usize,
    dropped_stream_events: u64,
    /// Sequence number of `items[0]`.
    base: u64,
    /// (stream, is-in) -> sequence number of its queued count.
    counts: HashMap<(StreamId, bool), u64>,
    closed: bool,
    /// The current window of the peer's errors: its start, errors shown and suppressed in it.
    peer_window: Option<Instant>,
    peer_shown: u32,
    peer_suppressed: u64,
}

impl Queue {
    fn push(&mut self, mut event: Event) {
        if let Event::Error(text) = &mut event {
            if self.errors >= MAX_QUEUED_ERRORS {
                self.dropped_errors += 1;
                return;
            }
            self.errors += 1;
            if text.len() > MAX_ERROR_TEXT {
                let mut end = MAX_ERROR_TEXT;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
                text.push_str("...");
            }
        }
        if let Some((key, n)) = count_of(&event) {
            if let Some(seq) = self.counts.get(&key).copied() {
                let index = (seq - self.base) as usize;
                if let Some(Event::BytesIn { bytes, .. } | Event::BytesOut { bytes, .. }) =
                    self.items.get_mut(index)
                {
                    *bytes += n;
                    return;
                }
            }
        }
        if !matches!(event, Event::Error(_) | Event::Status(_)) {
            if self.stream_events >= MAX_QUEUED_STREAM_EVENTS {
                self.dropped_stream_events += 1;
                return;
            }
            self.stream_events += 1;
        }
        if let Some((key, _)) = count_of(&event) {
            let seq = self.base + self.items.len() as u64;
            self.counts.insert(key, seq);
        }
        self.items.push_back(event);
    }

    /// Ends the window of the peer's errors if it is over, with a line for those suppressed.
    fn end_peer_window(&mut self, now: Instant) {
        if self
            .peer_window
            .is_some_and(|start| now >= start + PEER_ERROR_WINDOW)
        {
            let n = std::mem::take(&mut self.peer_suppressed);
            if n > 0 {
                self.push(Event::Error(format!(
                    "{n} more errors caused by the peer were not shown (at most \
                     {PEER_ERRORS_PER_WINDOW} a second)"
                )));
            }
            self.peer_window = None;
            self.peer_shown = 0;
        }
    }
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
        // a count wakes a consumer waiting on an empty queue (it then holds counts until their
        // interval is over); anything else wakes it at once
        let wake = q.waiting && (count_of(&event).is_none() || q.items.is_empty());
        q.push(event);
        drop(q);
        if wake {
            self.inner.1.notify_one();
        }
    }

    /// Queues an `error` the peer caused (a refused request, abuse of a bound): at most
    /// `PEER_ERRORS_PER_WINDOW` (10) a second are shown, the rest counted in one line.
    pub fn push_peer_error(&self, text: impl Into<String>) {
        self.push_peer_error_at(Instant::now(), text.into());
    }

    fn push_peer_error_at(&self, now: Instant, text: String) {
        let mut q = self.lock();
        q.end_peer_window(now);
        q.peer_window.get_or_insert(now);
        if q.peer_shown < PEER_ERRORS_PER_WINDOW {
            q.peer_shown += 1;
            q.push(Event::Error(text));
            if q.waiting {
                self.inner.1.notify_one();
            }
        } else {
            q.peer_suppressed += 1;
        }
    }

    /// Takes everything queued, waiting up to `wait` for something to arrive (byte counts alone
    /// are held until `COUNT_INTERVAL`, 50 ms, after the last ones were taken, within `wait`).
    /// An empty result after [`close`](Self::close) means the end.
    pub fn drain(&self, wait: Duration) -> Vec<Event> {
        self.drain_at(wait, Instant::now)
    }

    fn drain_at(&self, wait: Duration, now: impl Fn() -> Instant) -> Vec<Event> {
        let deadline = now() + wait;
        let mut q = self.lock();
        loop {
            let t = now();
            // anything but counts, or the end: take it all now
            if q.closed || q.items.len() > q.counts.len() || t >= deadline {
                break;
            }
            let until = match q.items.is_empty() {
                true => deadline,
                false => match q.counts_drained.map(|d| d + COUNT_INTERVAL) {
                    Some(due) if due > t => due.min(deadline),
                    _ => break,
                },
            };
            q.waiting = true;
            q = self
                .inner
                .1
                .wait_timeout(q, until - t)
                .map(|(q, _)| q)
                .unwrap_or_else(|e| e.into_inner().0);
            q.waiting = false;
        }
        let t = now();
        if !q.counts.is_empty() {
            q.counts_drained = Some(t);
        }
        q.end_peer_window(t);
        let mut out: Vec<Event> = q.items.drain(..).collect();
        q.base += out.len() as u64;
        q.counts.clear();
        q.errors = 0;
        q.stream_events = 0;
        if q.dropped_stream_events > 0 {
            let n = std::mem::take(&mut q.dropped_stream_events);
            out.push(Event::Error(format!(
                "{n} stream events were dropped while the controller did not read (at most \
                 {MAX_QUEUED_STREAM_EVENTS} are kept)"
            )));
        }
        if q.dropped_errors > 0 {
            let n = std::mem::take(&mut q.dropped_errors);
            out.push(Event::Error(format!(
                "{n} more errors were dropped while the controller did not read"
            )));
        }
        out
    }

    /// No more events: the consumer ends after draining.
    pub fn close(&self) {
        self.lock().closed = true;
        self.inner.1.notify_all();
    }

    /// Whether [`close`](Self::close) was called.
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

    #[test]
    fn counts_are_held_for_their_interval_but_other_events_take_them_along_at_once() {
        let q = EventQueue::default();
        q.push(Event::BytesIn { id: 1, bytes: 1 });
        // the first count since none were taken comes at once
        assert_eq!(
            q.drain(Duration::from_secs(30)),
            vec![Event::BytesIn { id: 1, bytes: 1 }]
        );
        // counts alone wait out the interval (a consumer that waits long enough gets them
        // without anything else arriving), adding up in place
        q.push(Event::BytesIn { id: 1, bytes: 2 });
        q.push(Event::BytesIn { id: 1, bytes: 3 });
        let started = Instant::now();
        assert_eq!(
            q.drain(Duration::from_secs(30)),
            vec![Event::BytesIn { id: 1, bytes: 5 }]
        );
        assert!(started.elapsed() < Duration::from_secs(30));
        // another event wakes a waiting consumer and the held counts come before it
        q.push(Event::BytesOut { id: 1, bytes: 7 });
        let pusher = {
            let q = q.clone();
            std::thread::spawn(move || {
                // once the consumer waits on the held count
                for _ in 0..10_000 {
                    if q.lock().waiting {
                        break;
                    }
                    std::thread::yield_now();
                }
                q.push(Event::IncomingDone { id: 1 });
            })
        };
        let mut got = q.drain(Duration::from_secs(30));
        pusher.join().unwrap();
        if got.len() == 1 {
            // the consumer took the count when its interval ended, before the push
            got.extend(q.drain(Duration::from_secs(30)));
        }
        assert_eq!(
            got,
            vec![
                Event::BytesOut { id: 1, bytes: 7 },
                Event::IncomingDone { id: 1 }
            ]
        );
    }

    #[test]
    fn errors_caused_by_the_peer_are_shown_ten_a_second_and_the_rest_counted() {
        let q = EventQueue::default();
        let t0 = Instant::now();
        for i in 0..1000 {
            q.push_peer_error_at(t0 + Duration::from_millis(i / 2), format!("refused {i}"));
        }
        q.push(Event::Error("our own".into()));
        let errors = |v: Vec<Event>| -> Vec<String> {
            v.into_iter()
                .map(|e| match e {
                    Event::Error(t) => t,
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        // within the window: the first ten and our own error, nothing about the rest yet
        let first = errors(q.drain_at(Duration::ZERO, || t0 + Duration::from_millis(999)));
        assert_eq!(first.len(), 11);
        assert_eq!(first[0], "refused 0");
        assert_eq!(first[9], "refused 9");
        assert_eq!(first[10], "our own");
        // once the window is over: one line for the 990 not shown
        let later = errors(q.drain_at(Duration::ZERO, || t0 + Duration::from_secs(1)));
        assert_eq!(
            later,
            vec!["990 more errors caused by the peer were not shown (at most 10 a second)"]
        );
        // a new window shows errors again
        q.push_peer_error_at(t0 + Duration::from_secs(5), "refused again".into());
        let again = errors(q.drain_at(Duration::ZERO, || t0 + Duration::from_secs(5)));
        assert_eq!(again, vec!["refused again"]);
    }

    #[test]
    fn a_flood_of_errors_while_nobody_reads_is_bounded_and_counted() {
        let q = EventQueue::default();
        for i in 0..20_000 {
            q.push(Event::Error(format!("refused {i}: {}", "x".repeat(5000))));
        }
        let out = q.drain(Duration::ZERO);
        assert_eq!(out.len(), MAX_QUEUED_ERRORS + 1);
        assert!(out.iter().all(|e| match e {
            Event::Error(t) => t.len() <= MAX_ERROR_TEXT + 3,
            _ => false,
        }));
        assert_eq!(
            out.last(),
            Some(&Event::Error(
                "10000 more errors were dropped while the controller did not read".into()
            ))
        );
        // the next drain starts afresh
        q.push(Event::Error("one".into()));
        assert_eq!(q.drain(Duration::ZERO), vec![Event::Error("one".into())]);
    }

    #[test]
    fn stream_events_while_nobody_reads_are_bounded_but_session_events_are_kept() {
        let q = EventQueue::default();
        for id in 0..(MAX_QUEUED_STREAM_EVENTS as u64 + 500) {
            q.push(Event::IncomingConnection {
                name: Some("svc".into()),
                id,
            });
        }
        q.push(Event::Status(Status::Closed { mood: Mood::Happy }));
        let out = q.drain(Duration::ZERO);
        let streams = out
            .iter()
            .filter(|e| matches!(e, Event::IncomingConnection { .. }))
            .count();
        assert_eq!(streams, MAX_QUEUED_STREAM_EVENTS);
        assert!(out.contains(&Event::Status(Status::Closed { mood: Mood::Happy })));
        assert_eq!(
            out.last(),
            Some(&Event::Error(format!(
                "500 stream events were dropped while the controller did not read (at most \
                 {MAX_QUEUED_STREAM_EVENTS} are kept)"
            )))
        );
        // after a drain the queue takes them again
        q.push(Event::IncomingDone { id: 1 });
        assert_eq!(q.drain(Duration::ZERO), vec![Event::IncomingDone { id: 1 }]);
    }
}
