//! Human output of `fowl invite`/`fowl accept`: one plain line per happening when stdout is not
//! a terminal; on a terminal the same lines scroll above a live status block (code, verifier,
//! mailbox and peer state, services, per-stream rates and totals) redrawn every second.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::forward::{Event, EventQueue, Status};

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
    /// Per service name: streams open now, streams in all, bytes sent and received in all.
    totals: BTreeMap<String, Totals>,
}

#[derive(Default)]
struct Totals {
    open: u64,
    all: u64,
    sent: u64,
    received: u64,
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

/// A listener's or a connect target's place: its unix path, else its port.
fn place(port: Option<u16>, path: Option<&str>) -> String {
    match (path, port) {
        (Some(p), _) => p.to_string(),
        (None, Some(port)) => format!("port {port}"),
        (None, None) => "an unknown port".into(),
    }
}

/// `seconds` since the Unix epoch as `YYYY-MM-DD HH:MM UTC` (the civil calendar from a day
/// count, Howard Hinnant's method).
pub fn utc(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let (hour, minute) = ((seconds % 86_400) / 3600, (seconds % 3600) / 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

fn remember_line(report: &crate::remember::RememberReport) -> String {
    use crate::remember::RememberReport as R;
    match report {
        R::PeerAsked => "the peer asks to remember this session: run with --remember NAME \
                         (or send `remember`) to agree"
            .into(),
        R::PeerCannot { name } => {
            format!("not remembering {name}: the peer cannot remember peers; nothing stored")
        }
        R::Stored { name, generation } => {
            format!("stored secret {generation} for {name}; waiting for the peer to confirm")
        }
        R::Remembered {
            name,
            generation: 1,
        } => {
            format!("remembered as {name}: next time, `fowl connect {name}` on both sides")
        }
        R::Remembered { name, generation } => {
            format!("{name}: secret rotated (generation {generation})")
        }
        R::NotRemembered { name, reason } => format!("{name} not remembered: {reason}"),
    }
}

fn verifier_groups(v: &str) -> String {
    v.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Stream lines in the live block at most (a busy HTTP forward must not fill the terminal).
const MAX_STREAM_LINES: usize = 8;

/// `line` safe for a terminal: control characters (escape sequences, carriage returns, ...)
/// and bidirectional overrides, which can come with peer or server strings (service names,
/// errors, the motd), are shown escaped instead of acting on the terminal.
pub fn clean(line: &str) -> String {
    let unsafe_char = |c: char| {
        c.is_control()
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    if !line.chars().any(unsafe_char) {
        return line.to_string();
    }
    line.chars()
        .map(|c| match unsafe_char(c) {
            true => c.escape_unicode().to_string(),
            false => c.to_string(),
        })
        .collect()
}

impl View {
    /// Applies one event; returns the line to print for it, if any (terminal-safe).
    pub fn apply(&mut self, e: &Event) -> Option<String> {
        self.apply_raw(e).map(|line| clean(&line))
    }

    fn apply_raw(&mut self, e: &Event) -> Option<String> {
        match e {
            Event::Status(status) => self.status(status),
            Event::Listening { name, port, path } => {
                let at = place(*port, path.as_deref());
                let line = format!("{name}: listening on {at} for the peer's service");
                self.services.insert(name.clone(), line.clone());
                Some(line)
            }
            Event::ListeningFailed { .. } => None,
            Event::AwaitingConnect { name, port, path } => {
                let at = place(*port, path.as_deref());
                let line = format!("{name}: the peer listens; streams connect to {at}");
                self.services.insert(name.clone(), line.clone());
                Some(line)
            }
            Event::OutgoingConnection { name, id } => self.opened(*id, name),
            Event::IncomingConnection { name, id } => {
                self.opened(*id, name.as_deref().unwrap_or("?"))
            }
            Event::BytesIn { id, bytes } => {
                if let Some(st) = self.streams.get_mut(id) {
                    st.bytes_in += bytes;
                    self.totals.entry(st.name.clone()).or_default().sent += bytes;
                }
                None
            }
            Event::BytesOut { id, bytes } => {
                if let Some(st) = self.streams.get_mut(id) {
                    st.bytes_out += bytes;
                    self.totals.entry(st.name.clone()).or_default().received += bytes;
                }
                None
            }
            Event::OutgoingDone { id, .. } | Event::IncomingDone { id } => {
                self.ended(*id);
                let st = self.streams.get(id)?;
                Some(format!(
                    "stream {id} ({}) done: {} sent, {} received",
                    st.name,
                    human_bytes(st.bytes_in),
                    human_bytes(st.bytes_out)
                ))
            }
            Event::OutgoingLost { id, reason, .. } | Event::IncomingLost { id, reason } => {
                self.ended(*id);
                Some(format!("stream {id} failed: {reason}"))
            }
            Event::Error(message) => Some(format!("error: {message}")),
        }
    }

    /// Marks stream `id` finished (once: a lost stream is also done).
    fn ended(&mut self, id: u64) {
        let Some(st) = self.streams.get_mut(&id) else {
            return;
        };
        if st.ended.is_none() {
            st.ended = Some(Instant::now());
            if let Some(t) = self.totals.get_mut(&st.name) {
                t.open = t.open.saturating_sub(1);
            }
        }
    }

    fn opened(&mut self, id: u64, name: &str) -> Option<String> {
        let stream = Stream {
            name: name.to_string(),
            ..Default::default()
        };
        self.streams.insert(id, stream);
        let totals = self.totals.entry(name.to_string()).or_default();
        totals.open += 1;
        totals.all += 1;
        Some(format!("stream {id} ({name}) opened"))
    }

    fn status(&mut self, status: &Status) -> Option<String> {
        match status {
            Status::Welcome { url, proxy, .. } => {
                self.peer = "waiting for the peer";
                match proxy {
                    Some(proxy) => {
                        self.mailbox = Some(format!("{url} via {proxy}"));
                        Some(format!(
                            "privacy mode: every connection goes through the proxy {proxy}; \
                             relay only, no direct connections, no address offered to the peer"
                        ))
                    }
                    None => {
                        self.mailbox = Some(url.clone());
                        None
                    }
                }
            }
            Status::CodeAllocated { code } => {
                self.code = Some(code.clone());
                Some(format!("code: {code}"))
            }
            Status::PeerConnected { verifier, .. } => {
                self.verifier = Some(verifier.clone());
                self.peer = "connected";
                Some(format!(
                    "peer connected; verifier: {}",
                    verifier_groups(verifier)
                ))
            }
            Status::DilationConnected {
                path, peer, outage, ..
            } => {
                self.path = Some(format!("{path} to {peer}"));
                self.peer = "connected";
                Some(match outage {
                    Some(d) => format!(
                        "reconnected: {path} to {peer} after {:.1} s",
                        d.as_secs_f64()
                    ),
                    None => format!("connection: {path} to {peer}"),
                })
            }
            Status::DilationLost { reason, .. } => {
                self.peer = "reconnecting";
                self.path = None;
                Some(format!("connection lost ({reason}): reconnecting"))
            }
            Status::DilationReconnecting { attempt, .. } => {
                self.peer = "reconnecting";
                (*attempt > 1).then(|| format!("still reconnecting (attempt {attempt})"))
            }
            Status::Pong { .. } => None,
            Status::Remember(report) => Some(remember_line(report)),
            Status::Rendezvous { name, generations } => {
                self.code = Some(format!("peer {name}"));
                self.peer = "waiting for the peer";
                let at = match generations.len() {
                    1 => String::new(),
                    _ => " (at both secrets of an unconfirmed rotation)".into(),
                };
                Some(format!("meeting remembered peer {name} without a code{at}"))
            }
            Status::Closed { mood } => {
                self.peer = "closed";
                Some(format!("closed: {}", mood.as_str()))
            }
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
        out.extend(self.totals.iter().map(|(name, t)| {
            format!(
                "  {name}: {} open, {} in all, {} sent, {} received",
                t.open,
                t.all,
                human_bytes(t.sent),
                human_bytes(t.received)
            )
        }));
        self.streams.retain(|_, st| {
            st.ended
                .is_none_or(|t| t.elapsed() < Duration::from_secs(10))
        });
        let mut shown = 0;
        let open = self
            .streams
            .values()
            .filter(|st| st.ended.is_none())
            .count();
        let total = self.streams.len();
        for (id, st) in self.streams.iter_mut() {
            st.rate = (
                (st.bytes_in - st.last.0) as f64 / secs,
                (st.bytes_out - st.last.1) as f64 / secs,
            );
            st.last = (st.bytes_in, st.bytes_out);
            // a bounded block: open streams first, finished ones only while there is room
            let room = MAX_STREAM_LINES.saturating_sub(shown);
            if room == 0 || (st.ended.is_some() && open >= MAX_STREAM_LINES) {
                continue;
            }
            shown += 1;
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
        if total > shown {
            out.push(format!("  ... and {} more streams", total - shown));
        }
        out.iter().map(|l| clean(l)).collect()
    }
}

/// The block as the terminal shows it: no line wider than `cols - 1` columns (a wrapped line
/// would make the redraw erase too little, and the block would creep up the screen) and at most
/// `rows - 1` lines (the header first; what does not fit is counted in the last line).
fn fit(mut block: Vec<String>, cols: usize, rows: usize) -> Vec<String> {
    let max_lines = rows.saturating_sub(1).max(1);
    if block.len() > max_lines {
        let hidden = block.len() - (max_lines - 1);
        block.truncate(max_lines - 1);
        block.push(format!(
            "  ... {hidden} more lines (a taller terminal shows them)"
        ));
    }
    let width = cols.saturating_sub(1).max(1);
    block
        .into_iter()
        .map(|line| {
            let mut used = 0;
            line.chars()
                .take_while(|c| {
                    used += unicode_width::UnicodeWidthChar::width(*c).unwrap_or(0);
                    used <= width
                })
                .collect()
        })
        .collect()
}

/// Columns and rows of the terminal on stdout, if it is one.
fn terminal_size() -> Option<(usize, usize)> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we own; stdout's descriptor stays
    // open for the process's life.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0 && size.ws_row > 0).then(|| (size.ws_col.into(), size.ws_row.into()))
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
        // one write per frame: the terminal never shows a half-drawn block
        let mut frame = String::new();
        if live && drawn > 0 {
            frame.push_str(&format!("\x1b[{drawn}A\x1b[J"));
            drawn = 0;
        }
        for e in &batch {
            if let Some(line) = view.apply(e) {
                frame.push_str(&line);
                frame.push('\n');
            }
        }
        if live {
            // read at every redraw: the terminal may have been resized
            let (cols, rows) = terminal_size().unwrap_or((80, 24));
            let block = fit(view.block(last_draw.elapsed()), cols, rows);
            last_draw = Instant::now();
            for l in &block {
                frame.push_str(l);
                frame.push('\n');
            }
            drawn = block.len();
        }
        let mut out = stdout.lock();
        let _ = out.write_all(frame.as_bytes());
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_are_the_calendar_ones() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_796_041_800), "2026-11-30 12:30 UTC");
    }

    #[test]
    fn peer_strings_cannot_drive_the_terminal() {
        let mut view = View::default();
        let hostile = Event::Error("bad\x1b[2J\x1b]0;owned\x07 \r\u{202e}txt".into());
        let line = view.apply(&hostile).expect("a line");
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        assert!(!line.contains('\u{202e}'), "{line:?}");
        assert!(line.contains("\\u{1b}[2J"), "shown escaped: {line:?}");
        let listening = Event::Listening {
            name: "svc\x1b[31m".into(),
            port: Some(22),
            path: None,
        };
        assert!(!view.apply(&listening).unwrap().contains('\x1b'));
        assert!(view
            .block(Duration::from_secs(1))
            .iter()
            .all(|l| !l.contains('\x1b')));
        assert_eq!(clean("plain text: 42"), "plain text: 42");
    }

    #[test]
    fn the_live_block_stays_short_however_many_streams_run() {
        let mut view = View::default();
        for id in 1..=63 {
            view.apply(&Event::OutgoingConnection {
                name: "web".into(),
                id,
            });
            if id % 2 == 0 {
                view.apply(&Event::OutgoingDone {
                    name: "web".into(),
                    id,
                });
            }
        }
        let block = view.block(Duration::from_secs(1));
        let streams = block.iter().filter(|l| l.starts_with("  #")).count();
        assert_eq!(streams, MAX_STREAM_LINES);
        assert_eq!(block.last().unwrap(), "  ... and 55 more streams");
        assert!(
            block.contains(&"  web: 32 open, 63 in all, 0 B sent, 0 B received".to_string()),
            "totals per service: {block:?}"
        );
        assert!(block.len() <= MAX_STREAM_LINES + 4, "{block:?}");
    }

    #[test]
    fn the_block_fits_the_terminal_in_width_and_height() {
        let mut view = View::default();
        for i in 0..30 {
            view.apply(&Event::Listening {
                name: format!("service-with-a-long-name-{i}"),
                port: Some(10000 + i),
                path: None,
            });
        }
        let block = fit(view.block(Duration::from_secs(1)), 40, 12);
        assert_eq!(block.len(), 11, "{block:#?}");
        assert!(block[0].starts_with("fowl | code"), "{block:#?}");
        assert_eq!(
            block[10], "  ... 21 more lines (a taller terminal ",
            "counted, cut to the width"
        );
        assert!(block.iter().all(|l| l.chars().count() <= 39), "{block:#?}");
        let wide = fit(vec!["界".repeat(30)], 21, 5);
        assert_eq!(
            wide,
            ["界".repeat(10)],
            "double-width characters count twice"
        );
    }
}
