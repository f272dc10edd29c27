//! Human output of `fowl invite`/`fowl accept`: one plain line per happening when stdout is not
//! a terminal; on a terminal the same lines scroll above a live status block (code, verifier,
//! mailbox and peer state, services, per-stream rates and totals) redrawn every second.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::forward::events::{Event, EventQueue};
use crate::interfaces::fowld::output;

#[derive(Default)]
struct Stream {
    name: String,
    bytes_in: u64,
    bytes_out: u64,
    /// Totals at the previous redraw, for rates.
    last: (u64, u64),
    rate: (f64, f64),
    ended: Option<Instant>,
}

/// What the status block shows.
#[derive(Default)]
pub struct View {
    code: Option<String>,
    mailbox: Option<String>,
    verifier: Option<String>,
    path: Option<String>,
    peer: &'static str,
    services: BTreeMap<String, String>,
    streams: BTreeMap<u64, Stream>,
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut u) = (n as f64, 0);
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    match u {
        0 => format!("{n} B"),
        _ => format!("{v:.1} {}", UNITS[u]),
    }
}

fn verifier_groups(v: &str) -> String {
    v.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

impl View {
    /// Applies one output line; returns the plain line to print for it, if any.
    pub fn apply(&mut self, v: &Value) -> Option<String> {
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        let id = v["id"].as_u64().unwrap_or(0);
        match v["kind"].as_str()? {
            "welcome" => {
                self.mailbox = Some(s("url"));
                self.peer = "waiting for the peer";
                None
            }
            "code-allocated" => {
                self.code = Some(s("code"));
                Some(format!("code: {}", s("code")))
            }
            "peer-connected" => {
                self.verifier = Some(s("verifier"));
                self.peer = "connected";
                Some(format!(
                    "peer connected; verifier: {}",
                    verifier_groups(&s("verifier"))
                ))
            }
            "dilation-connected" => {
                self.path = Some(format!("{} to {}", s("path"), s("peer_address")));
                self.peer = "connected";
                Some(format!(
                    "connection: {} to {}",
                    s("path"),
                    s("peer_address")
                ))
            }
            "dilation-reconnecting" => {
                self.peer = "reconnecting";
                Some("connection lost: reconnecting".into())
            }
            "listening" => {
                let at = match v["listening_path"].as_str() {
                    Some(p) => p.to_string(),
                    None => format!("port {}", v["listening_port"]),
                };
                let line = format!("{}: listening on {at} for the peer's service", s("name"));
                self.services.insert(s("name"), line.clone());
                Some(line)
            }
            "awaiting-connect" => {
                let at = match v["local_path"].as_str() {
                    Some(p) => p.to_string(),
                    None => format!("port {}", v["local_port"]),
                };
                let line = format!("{}: the peer listens; streams connect to {at}", s("name"));
                self.services.insert(s("name"), line.clone());
                Some(line)
            }
            "outgoing-connection" | "incoming-connection" => {
                let name = v["service_name"].as_str().unwrap_or("?").to_string();
                self.streams.insert(
                    id,
                    Stream {
                        name: name.clone(),
                        ..Default::default()
                    },
                );
                Some(format!("stream {id} ({name}) opened"))
            }
            "bytes-in" | "bytes-out" => {
                let n = v["bytes"].as_u64().unwrap_or(0);
                if let Some(st) = self.streams.get_mut(&id) {
                    match v["kind"] == "bytes-in" {
                        true => st.bytes_in += n,
                        false => st.bytes_out += n,
                    }
                }
                None
            }
            "outgoing-done" | "incoming-done" => {
                let st = self.streams.get_mut(&id)?;
                st.ended = Some(Instant::now());
                Some(format!(
                    "stream {id} ({}) done: {} sent, {} received",
                    st.name,
                    human_bytes(st.bytes_in),
                    human_bytes(st.bytes_out)
                ))
            }
            "outgoing-lost" | "incoming-lost" => {
                if let Some(st) = self.streams.get_mut(&id) {
                    st.ended = Some(Instant::now());
                }
                Some(format!("stream {id} failed: {}", s("reason")))
            }
            "error" => Some(format!("error: {}", s("message"))),
            "closed" => {
                self.peer = "closed";
                Some(format!("closed: {}", s("result")))
            }
            "pong" => None,
            _ => None,
        }
    }

    /// The status block, with rates over the last `elapsed`.
    fn block(&mut self, elapsed: Duration) -> Vec<String> {
        let secs = elapsed.as_secs_f64().max(0.001);
        let mut out = vec![format!(
            "fowl | code {} | mailbox {} | peer: {}{}",
            self.code.as_deref().unwrap_or("-"),
            self.mailbox.as_deref().unwrap_or("connecting..."),
            if self.peer.is_empty() { "-" } else { self.peer },
            self.path
                .as_ref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default(),
        )];
        if let Some(v) = &self.verifier {
            out.push(format!("verifier {}", verifier_groups(v)));
        }
        out.extend(self.services.values().map(|s| format!("  {s}")));
        self.streams.retain(|_, st| {
            st.ended
                .is_none_or(|t| t.elapsed() < Duration::from_secs(10))
        });
        for (id, st) in self.streams.iter_mut() {
            st.rate = (
                (st.bytes_in - st.last.0) as f64 / secs,
                (st.bytes_out - st.last.1) as f64 / secs,
            );
            st.last = (st.bytes_in, st.bytes_out);
            out.push(format!(
                "  #{id} {:<12} out {:>10} ({:>10}/s)  in {:>10} ({:>10}/s){}",
                st.name,
                human_bytes(st.bytes_in),
                human_bytes(st.rate.0 as u64),
                human_bytes(st.bytes_out),
                human_bytes(st.rate.1 as u64),
                if st.ended.is_some() { "  done" } else { "" },
            ));
        }
        out
    }
}

/// Prints what `queue` carries until it is closed. `live`: a terminal, with the status block.
pub fn render(queue: EventQueue, live: bool) {
    let mut view = View::default();
    let stdout = std::io::stdout();
    let mut drawn = 0usize;
    let mut last_draw = Instant::now();
    loop {
        let batch = queue.drain(Duration::from_millis(250));
        if batch.is_empty() && queue.is_closed() {
            break;
        }
        let mut out = stdout.lock();
        if live && drawn > 0 {
            let _ = write!(out, "\x1b[{drawn}A\x1b[J");
            drawn = 0;
        }
        for e in &batch {
            let v = match e {
                Event::Status(v) => v.clone(),
                other => output::event(other),
            };
            if let Some(line) = view.apply(&v) {
                let _ = writeln!(out, "{line}");
            }
        }
        if live {
            let block = view.block(last_draw.elapsed());
            last_draw = Instant::now();
            for l in &block {
                let _ = writeln!(out, "{l}");
            }
            drawn = block.len();
        }
        let _ = out.flush();
    }
}
