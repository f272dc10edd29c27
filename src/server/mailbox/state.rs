//! The mailbox server's protocol logic, sans-IO: connections are ids, frames are strings, time is
//! seconds since the epoch passed in by the caller.

use std::collections::{HashMap, HashSet, VecDeque};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use crate::server::metrics::Mood;

/// A connection, as numbered by the driver.
pub type ConnId = u64;

/// A nameplate as stored: its mailbox and its sides (side, still claimed).
#[derive(Debug, Clone, PartialEq)]
pub struct NameplateRow {
    /// The mailbox it leads to.
    pub mailbox: String,
    /// Its sides: (side, still claimed).
    pub sides: Vec<(String, bool)>,
}

/// A mailbox as stored, without its messages: its sides (side, closed) and the time of its last
/// message.
#[derive(Debug, Clone, PartialEq)]
pub struct MailboxRow {
    /// Its sides: (side, closed).
    pub sides: Vec<(String, bool)>,
    /// When its last message arrived (or it was created), seconds since the epoch.
    pub last_message: f64,
    /// When it was created, seconds since the epoch.
    pub created: f64,
}

/// One finished session (a mailbox deleted), for the usage record (as the Python server's usage
/// database keeps).
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    /// The app id.
    pub app: String,
    /// When the mailbox was created, seconds since the epoch.
    pub started: f64,
    /// How long it lived, in seconds.
    pub duration: f64,
    /// The moods its sides closed with (as the metrics label them: no client words).
    pub moods: Vec<&'static str>,
    /// `happy`, `scary`, `errory`, `lonely`, `unwelcome` (worst mood first) or `pruney` (it
    /// expired without every side closing).
    pub result: &'static str,
}

impl Usage {
    fn of(app: &str, mb: &Mailbox, now: f64, pruned: bool) -> Usage {
        let moods: Vec<&'static str> = mb.moods.iter().map(|m| Mood::of(m).mood).collect();
        let result = if pruned {
            "pruney"
        } else {
            ["scary", "errory", "unwelcome", "lonely", "happy"]
                .into_iter()
                .find(|r| moods.contains(r))
                .unwrap_or("happy")
        };
        Usage {
            app: app.to_string(),
            started: mb.created,
            duration: (now - mb.created).max(0.0),
            moods,
            result,
        }
    }
}

/// What changed in the state since [`MailboxState::take_changes`] was last called, for a store
/// to write (see `store.rs`). `None` rows are deletions.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A nameplate of `app` was created, changed (`Some`) or deleted (`None`).
    Nameplate {
        /// The app id.
        app: String,
        /// The nameplate.
        name: String,
        /// Its new row.
        row: Option<NameplateRow>,
    },
    /// A mailbox of `app` was created, changed or got messages (`Some`) or was deleted (`None`).
    Mailbox {
        /// The app id.
        app: String,
        /// The mailbox id.
        id: String,
        /// Its new row.
        row: Option<MailboxRow>,
        /// Messages added since the last change: (index in the mailbox, message JSON).
        new_messages: Vec<(usize, String)>,
    },
}

/// Everything a store holds, to start a server from ([`MailboxState::restore`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// (app, nameplate, row)
    pub nameplates: Vec<(String, String, NameplateRow)>,
    /// (app, mailbox id, row, its messages as JSON, in order)
    pub mailboxes: Vec<(String, String, MailboxRow, Vec<String>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Dirty {
    Nameplate(String, String),
    Mailbox(String, String),
}

/// What the server says in its welcome, and its limits (see `protocol/mailbox-server.md`).
#[derive(Debug, Clone)]
pub struct MailboxConfig {
    /// Message of the day, shown by clients.
    pub motd: Option<String>,
    /// Makes every client fail with this message (maintenance).
    pub signal_error: Option<String>,
    /// Refuse to list allocated nameplates (`nameplates` answers `[]`).
    pub disallow_list: bool,
    /// A mailbox nobody listens to is deleted after this long without a new message (seconds).
    pub mailbox_expiry: f64,
    /// Bytes of message bodies one mailbox may store; an `add` beyond gets `mailbox full`.
    pub max_mailbox_bytes: usize,
    /// Bytes of messages stored in all mailboxes together; an `add` beyond gets `server full`.
    pub max_stored_bytes: usize,
    /// A mailbox someone listens to but that saw no new message for this long is deleted too,
    /// and its listeners disconnected (they reconnect and open it afresh) (seconds).
    pub listened_expiry: f64,
    /// How often expired mailboxes are looked for (seconds).
    pub prune_interval: f64,
    /// Open WebSocket connections at most; more are closed right after accepting.
    pub max_connections: usize,
    /// A connection that has not sent `bind` after this long is closed (seconds).
    pub bind_timeout: f64,
    /// Seconds allowed for the WebSocket upgrade of a new connection.
    pub handshake_timeout: f64,
    /// Open connections from one client address at most.
    pub max_per_address: usize,
    /// Bytes queued for one connection that does not read at most; beyond, it is disconnected.
    pub max_send_queue: usize,
    /// Mailboxes stored at once, in all apps; a new one beyond is refused.
    pub max_mailboxes: usize,
    /// Longest app id, side, phase, nameplate or mailbox id accepted (bytes).
    pub max_string: usize,
    /// Keep nameplates, mailboxes and messages in this SQLite database (created if missing), so
    /// that a restart loses nothing; in memory only when `None`.
    pub db: Option<std::path::PathBuf>,
    /// With `db`: sessions (mailboxes) are recorded there when they end (app, start, duration,
    /// moods, result) and kept this long (seconds).
    pub usage_retention: f64,
    /// Serve `wss://` with this certificate chain and private key (PEM files); plain `ws://`
    /// when `None`.
    pub tls: Option<TlsFiles>,
    /// Where the server counts what happens (see `fowl server --metrics-listen`).
    pub metrics: crate::server::ServerMetrics,
}

/// The PEM files of a TLS server: certificate chain and private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: std::path::PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        MailboxConfig {
            motd: None,
            signal_error: None,
            disallow_list: false,
            mailbox_expiry: 11.0 * 60.0,
            max_mailbox_bytes: 16 << 20,
            max_stored_bytes: 1 << 30,
            listened_expiry: 7.0 * 24.0 * 3600.0,
            prune_interval: 5.0 * 60.0,
            max_connections: 10_000,
            bind_timeout: 60.0,
            handshake_timeout: 10.0,
            max_per_address: 64,
            max_send_queue: 40 << 20,
            max_mailboxes: 100_000,
            max_string: 1024,
            db: None,
            usage_retention: 90.0 * 24.0 * 3600.0,
            tls: None,
            metrics: Default::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Nameplate {
    mailbox: String,
    /// side -> still claimed (false once released)
    sides: HashMap<String, bool>,
}

#[derive(Debug, Default)]
struct Mailbox {
    /// side -> closed
    sides: HashMap<String, bool>,
    messages: Vec<Value>,
    /// Body bytes stored, against `max_mailbox_bytes`.
    stored: usize,
    listeners: HashSet<ConnId>,
    /// Last time a message arrived or someone listened (seconds since the epoch).
    updated: f64,
    /// Last time a message arrived (or the mailbox was created).
    last_message: f64,
    /// Messages already handed to the store.
    persisted: usize,
    /// When it was created.
    created: f64,
    /// The moods of its sides' `close`s (not stored: lost on a restart).
    moods: Vec<String>,
}

#[derive(Debug, Default)]
struct App {
    nameplates: HashMap<String, Nameplate>,
    mailboxes: HashMap<String, Mailbox>,
}

#[derive(Debug, Default)]
struct Conn {
    app: Option<String>,
    side: Option<String>,
    allocated: bool,
    claimed: Option<String>,
    released: bool,
    opened: Option<String>,
    closed: bool,
}

/// A refusal: the exact error string of the Python server.
struct Refusal(&'static str);

/// The server state.
pub struct MailboxState {
    config: MailboxConfig,
    apps: HashMap<String, App>,
    conns: HashMap<ConnId, Conn>,
    outbox: VecDeque<(ConnId, String)>,
    rng: StdRng,
    /// Bytes stored in all mailboxes, against `max_stored_bytes`.
    stored: usize,
    /// Listeners of expired mailboxes, to be disconnected (see [`MailboxState::take_evicted`]).
    evicted: Vec<ConnId>,
    /// With a store: what changed since the last [`MailboxState::take_changes`].
    dirty: Option<HashSet<Dirty>>,
    /// The moods of `close`s since [`MailboxState::take_moods`] (at most 1000 kept).
    moods: Vec<String>,
    /// With a store: sessions finished since [`MailboxState::take_usage`].
    usage: Vec<Usage>,
}

fn text(msg: &Map<String, Value>, key: &str) -> Option<String> {
    msg.get(key).and_then(Value::as_str).map(str::to_owned)
}

impl MailboxState {
    /// An empty server (no apps, no connections) with `config`.
    pub fn new(config: MailboxConfig) -> MailboxState {
        MailboxState {
            config,
            apps: HashMap::new(),
            conns: HashMap::new(),
            outbox: VecDeque::new(),
            rng: StdRng::from_entropy(),
            stored: 0,
            evicted: Vec::new(),
            dirty: None,
            moods: Vec::new(),
            usage: Vec::new(),
        }
    }

    /// A server whose state a store keeps: it starts from `snapshot` (the store's content; every
    /// mailbox counts as updated `now`, so its clients have the expiry time to come back), and
    /// records what changes for [`MailboxState::take_changes`].
    pub fn restore(config: MailboxConfig, snapshot: Snapshot, now: f64) -> MailboxState {
        let mut state = MailboxState::new(config);
        for (app, name, row) in snapshot.nameplates {
            let np = Nameplate {
                mailbox: row.mailbox,
                sides: row.sides.into_iter().collect(),
            };
            let app = state.apps.entry(app).or_default();
            app.nameplates.insert(name, np);
        }
        for (app, id, row, messages) in snapshot.mailboxes {
            let messages: Vec<Value> = messages
                .iter()
                .filter_map(|m| serde_json::from_str(m).ok())
                .collect();
            let stored = messages.iter().map(|m| m.to_string().len()).sum();
            state.stored += stored;
            let mb = Mailbox {
                sides: row.sides.into_iter().collect(),
                persisted: messages.len(),
                messages,
                stored,
                listeners: HashSet::new(),
                updated: now,
                last_message: row.last_message,
                created: row.created,
                moods: Vec::new(),
            };
            state.apps.entry(app).or_default().mailboxes.insert(id, mb);
        }
        state.dirty = Some(HashSet::new());
        state
    }

    fn touch(&mut self, dirty: Dirty) {
        if let Some(d) = self.dirty.as_mut() {
            d.insert(dirty);
        }
    }

    /// What changed since the last call (only for a state made by [`MailboxState::restore`]).
    pub fn take_changes(&mut self) -> Vec<Change> {
        let Some(dirty) = self.dirty.as_mut().map(std::mem::take) else {
            return Vec::new();
        };
        let mut changes = Vec::with_capacity(dirty.len());
        for d in dirty {
            match d {
                Dirty::Nameplate(app, name) => {
                    let row = self
                        .apps
                        .get(&app)
                        .and_then(|a| a.nameplates.get(&name))
                        .map(|np| NameplateRow {
                            mailbox: np.mailbox.clone(),
                            sides: np.sides.iter().map(|(s, c)| (s.clone(), *c)).collect(),
                        });
                    changes.push(Change::Nameplate { app, name, row });
                }
                Dirty::Mailbox(app, id) => {
                    let mb = self
                        .apps
                        .get_mut(&app)
                        .and_then(|a| a.mailboxes.get_mut(&id));
                    let (row, new_messages) = match mb {
                        Some(mb) => {
                            let new = mb.messages[mb.persisted..]
                                .iter()
                                .enumerate()
                                .map(|(i, m)| (mb.persisted + i, m.to_string()))
                                .collect();
                            mb.persisted = mb.messages.len();
                            let row = MailboxRow {
                                sides: mb.sides.iter().map(|(s, c)| (s.clone(), *c)).collect(),
                                last_message: mb.last_message,
                                created: mb.created,
                            };
                            (Some(row), new)
                        }
                        None => (None, Vec::new()),
                    };
                    changes.push(Change::Mailbox {
                        app,
                        id,
                        row,
                        new_messages,
                    });
                }
            }
        }
        changes
    }

    /// The next frame to send, and to which connection.
    pub fn poll_transmit(&mut self) -> Option<(ConnId, String)> {
        self.outbox.pop_front()
    }

    fn send(&mut self, to: ConnId, kind: &str, mut fields: Map<String, Value>, now: f64) {
        fields.insert("type".into(), kind.into());
        fields.insert("server_tx".into(), now.into());
        self.outbox
            .push_back((to, Value::Object(fields).to_string()));
    }

    /// A new WebSocket: it gets the welcome at once.
    pub fn connected(&mut self, id: ConnId, now: f64) {
        self.conns.insert(id, Conn::default());
        let mut welcome = Map::new();
        if let Some(motd) = &self.config.motd {
            welcome.insert("motd".into(), motd.clone().into());
        }
        if let Some(error) = &self.config.signal_error {
            welcome.insert("error".into(), error.clone().into());
        }
        let mut fields = Map::new();
        fields.insert("welcome".into(), Value::Object(welcome));
        self.send(id, "welcome", fields, now);
    }

    /// The WebSocket is gone: it stops listening; its claims and opens stay (the client may come
    /// back on a new connection).
    pub fn disconnected(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.remove(&id) {
            if let (Some(app), Some(mailbox)) = (conn.app, conn.opened) {
                if let Some(mb) = self
                    .apps
                    .get_mut(&app)
                    .and_then(|a| a.mailboxes.get_mut(&mailbox))
                {
                    mb.listeners.remove(&id);
                }
            }
        }
    }

    /// One text frame from a client.
    pub fn received(&mut self, id: ConnId, frame: &str, now: f64) {
        let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(frame) else {
            tracing::debug!("mailbox server: ignoring a frame that is not a JSON object");
            return;
        };
        let Some(kind) = text(&msg, "type") else {
            return self.error(id, "missing 'type'", &msg, now);
        };
        let mut ack = Map::new();
        ack.insert("id".into(), msg.get("id").cloned().unwrap_or(Value::Null));
        self.send(id, "ack", ack, now);
        if let Err(Refusal(e)) = self.handle(id, &kind, &msg, now) {
            self.error(id, e, &msg, now);
        }
    }

    fn error(&mut self, id: ConnId, error: &str, orig: &Map<String, Value>, now: f64) {
        let mut fields = Map::new();
        fields.insert("error".into(), error.into());
        fields.insert("orig".into(), Value::Object(orig.clone()));
        self.send(id, "error", fields, now);
    }

    fn handle(
        &mut self,
        id: ConnId,
        kind: &str,
        msg: &Map<String, Value>,
        now: f64,
    ) -> Result<(), Refusal> {
        if kind == "ping" {
            let ping = msg
                .get("ping")
                .ok_or(Refusal("ping requires 'ping'"))?
                .clone();
            let mut fields = Map::new();
            fields.insert("pong".into(), ping);
            self.send(id, "pong", fields, now);
            return Ok(());
        }
        let limit = self.config.max_string;
        let too_long = ["appid", "side", "phase", "nameplate", "mailbox"]
            .iter()
            .any(|k| {
                msg.get(*k)
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.len() > limit)
            });
        if too_long {
            return Err(Refusal("string too long"));
        }
        let conn = self.conns.get_mut(&id).ok_or(Refusal("must bind first"))?;
        if kind == "bind" {
            if conn.app.is_some() {
                return Err(Refusal("already bound"));
            }
            let app = text(msg, "appid").ok_or(Refusal("bind requires 'appid'"))?;
            let side = text(msg, "side").ok_or(Refusal("bind requires 'side'"))?;
            conn.app = Some(app);
            conn.side = Some(side);
            return Ok(());
        }
        let (Some(app_id), Some(side)) = (conn.app.clone(), conn.side.clone()) else {
            return Err(Refusal("must bind first"));
        };
        let (allocated, claimed, released, opened, closed) = (
            conn.allocated,
            conn.claimed.clone(),
            conn.released,
            conn.opened.clone(),
            conn.closed,
        );
        match kind {
            "list" => {
                let mut ids: Vec<String> = match self.config.disallow_list {
                    true => Vec::new(),
                    false => self
                        .apps
                        .get(&app_id)
                        .map(|a| a.nameplates.keys().cloned().collect())
                        .unwrap_or_default(),
                };
                ids.sort();
                let list: Vec<Value> = ids.into_iter().map(|n| json!({"id": n})).collect();
                let mut fields = Map::new();
                fields.insert("nameplates".into(), list.into());
                self.send(id, "nameplates", fields, now);
            }
            "allocate" => {
                if allocated {
                    return Err(Refusal("you already allocated one, don't be greedy"));
                }
                let nameplate = self
                    .free_nameplate(&app_id)
                    .ok_or(Refusal("no nameplate left"))?;
                self.conn(id).allocated = true;
                self.claim(&app_id, &nameplate, &side, now)?;
                let mut fields = Map::new();
                fields.insert("nameplate".into(), nameplate.into());
                self.send(id, "allocated", fields, now);
            }
            "claim" => {
                let nameplate =
                    text(msg, "nameplate").ok_or(Refusal("claim requires 'nameplate'"))?;
                if claimed.is_some() {
                    return Err(Refusal("only one claim per connection"));
                }
                if nameplate.is_empty()
                    || nameplate.len() > 40
                    || !nameplate.bytes().all(|b| b.is_ascii_digit())
                {
                    // Python's server crashes its handler here; we refuse cleanly
                    return Err(Refusal("claim requires 'nameplate'"));
                }
                self.conn(id).claimed = Some(nameplate.clone());
                let mailbox = self.claim(&app_id, &nameplate, &side, now)?;
                let mut fields = Map::new();
                fields.insert("mailbox".into(), mailbox.into());
                self.send(id, "claimed", fields, now);
            }
            "release" => {
                if released {
                    return Err(Refusal("only one release per connection"));
                }
                let nameplate = match (text(msg, "nameplate"), claimed) {
                    (Some(n), Some(c)) if n != c => {
                        return Err(Refusal("release and claim must use same nameplate"))
                    }
                    (Some(n), _) => n,
                    (None, Some(c)) => c,
                    (None, None) => {
                        return Err(Refusal("release without nameplate must follow claim"))
                    }
                };
                self.conn(id).released = true;
                self.touch(Dirty::Nameplate(app_id.clone(), nameplate.clone()));
                if let Some(app) = self.apps.get_mut(&app_id) {
                    if let Some(np) = app.nameplates.get_mut(&nameplate) {
                        if let Some(claimed) = np.sides.get_mut(&side) {
                            *claimed = false;
                        }
                        if np.sides.values().all(|claimed| !claimed) {
                            app.nameplates.remove(&nameplate);
                        }
                    }
                }
                self.send(id, "released", Map::new(), now);
            }
            "open" => {
                let mailbox = text(msg, "mailbox").ok_or(Refusal("open requires 'mailbox'"))?;
                if opened.is_some() {
                    return Err(Refusal("only one open per connection"));
                }
                self.conn(id).opened = Some(mailbox.clone());
                let mb = self.open_side(&app_id, &mailbox, &side, now)?;
                mb.listeners.insert(id);
                let replay: Vec<Value> = mb.messages.clone();
                for m in replay {
                    let Value::Object(mut fields) = m else {
                        continue;
                    };
                    fields.remove("type");
                    self.send(id, "message", fields, now);
                }
            }
            "add" => {
                let mailbox = opened.ok_or(Refusal("must open mailbox before adding"))?;
                let phase = text(msg, "phase").ok_or(Refusal("missing 'phase'"))?;
                let body = text(msg, "body").ok_or(Refusal("missing 'body'"))?;
                let message = json!({
                    "side": side, "phase": phase, "body": body, "server_rx": now,
                    "id": msg.get("id").cloned().unwrap_or(Value::Null),
                });
                let Some(mb) = self
                    .apps
                    .get_mut(&app_id)
                    .and_then(|a| a.mailboxes.get_mut(&mailbox))
                else {
                    return Err(Refusal("must open mailbox before adding"));
                };
                // everything stored counts, not only the body
                let size = message.to_string().len();
                if mb.stored + size > self.config.max_mailbox_bytes {
                    return Err(Refusal("mailbox full"));
                }
                if self.stored + size > self.config.max_stored_bytes {
                    return Err(Refusal("server full"));
                }
                mb.stored += size;
                self.stored += size;
                mb.updated = now;
                mb.last_message = now;
                mb.messages.push(message.clone());
                let touched = Dirty::Mailbox(app_id.clone(), mailbox.clone());
                let listeners: Vec<ConnId> = mb.listeners.iter().copied().collect();
                for to in listeners {
                    let Value::Object(fields) = message.clone() else {
                        continue;
                    };
                    self.send(to, "message", fields, now);
                }
                self.touch(touched);
            }
            "close" => {
                if closed {
                    return Err(Refusal("only one close per connection"));
                }
                let mailbox = match (text(msg, "mailbox"), opened) {
                    (Some(m), Some(o)) if m != o => {
                        return Err(Refusal("open and close must use same mailbox"))
                    }
                    (Some(m), _) => m,
                    (None, Some(o)) => o,
                    (None, None) => return Err(Refusal("close without mailbox must follow open")),
                };
                self.conn(id).closed = true;
                let mood = text(msg, "mood").unwrap_or_default();
                if self.moods.len() < 1000 {
                    self.moods.push(mood.clone());
                }
                self.touch(Dirty::Mailbox(app_id.clone(), mailbox.clone()));
                let recording = self.dirty.is_some();
                if let Some(app) = self.apps.get_mut(&app_id) {
                    if let Some(mb) = app.mailboxes.get_mut(&mailbox) {
                        mb.sides.insert(side.clone(), true);
                        mb.listeners.remove(&id);
                        if mb.moods.len() < 2 {
                            mb.moods.push(mood);
                        }
                        if mb.sides.values().all(|closed| *closed) {
                            if recording {
                                self.usage.push(Usage::of(&app_id, mb, now, false));
                            }
                            let stored = mb.stored;
                            app.mailboxes.remove(&mailbox);
                            self.stored -= stored;
                        }
                    }
                }
                self.send(id, "closed", Map::new(), now);
            }
            _ => return Err(Refusal("unknown type")),
        }
        Ok(())
    }

    fn conn(&mut self, id: ConnId) -> &mut Conn {
        self.conns.entry(id).or_default()
    }

    /// Claims `nameplate` for `side`, creating it (and its mailbox) when new.
    fn claim(
        &mut self,
        app_id: &str,
        nameplate: &str,
        side: &str,
        now: f64,
    ) -> Result<String, Refusal> {
        let mailbox_id = new_mailbox_id(&mut self.rng);
        self.touch(Dirty::Nameplate(app_id.into(), nameplate.into()));
        let app = self.apps.entry(app_id.into()).or_default();
        let np = app
            .nameplates
            .entry(nameplate.into())
            .or_insert_with(|| Nameplate {
                mailbox: mailbox_id,
                sides: HashMap::new(),
            });
        match np.sides.get(side) {
            Some(false) => return Err(Refusal("reclaimed")),
            Some(true) => {}
            None if np.sides.len() >= 2 => return Err(Refusal("crowded")),
            None => {
                np.sides.insert(side.into(), true);
            }
        }
        let mailbox = np.mailbox.clone();
        self.open_side(app_id, &mailbox, side, now)?;
        Ok(mailbox)
    }

    /// Adds `side` to a mailbox (created when new); a third side is refused.
    fn open_side(
        &mut self,
        app_id: &str,
        mailbox: &str,
        side: &str,
        now: f64,
    ) -> Result<&mut Mailbox, Refusal> {
        let exists = self
            .apps
            .get(app_id)
            .is_some_and(|a| a.mailboxes.contains_key(mailbox));
        if !exists && self.mailboxes() >= self.config.max_mailboxes {
            return Err(Refusal("too many mailboxes"));
        }
        self.touch(Dirty::Mailbox(app_id.into(), mailbox.into()));
        let app = self.apps.entry(app_id.into()).or_default();
        let mb = app
            .mailboxes
            .entry(mailbox.into())
            .or_insert_with(|| Mailbox {
                updated: now,
                last_message: now,
                created: now,
                ..Default::default()
            });
        if !mb.sides.contains_key(side) {
            if mb.sides.len() >= 2 {
                return Err(Refusal("crowded"));
            }
            mb.sides.insert(side.into(), false);
        }
        Ok(mb)
    }

    /// Deletes mailboxes that nobody listens to and that saw no message for `mailbox_expiry`
    /// (the Python server's `pruney`), with the nameplates that lead to them. A listened-to mailbox
    /// counts as updated, until it saw no new message for `listened_expiry`: then it is deleted
    /// too and its listeners are to be disconnected ([`MailboxState::take_evicted`]). Returns how
    /// many mailboxes were deleted.
    pub fn prune(&mut self, now: f64) -> usize {
        let (expiry, listened_expiry) = (self.config.mailbox_expiry, self.config.listened_expiry);
        let mut pruned = 0;
        let (mut freed, evicted) = (0, &mut self.evicted);
        let mut gone = Vec::new();
        let (recording, usage) = (self.dirty.is_some(), &mut self.usage);
        for (app_id, app) in self.apps.iter_mut() {
            let before = app.mailboxes.len();
            app.mailboxes.retain(|id, mb| {
                let keep = if mb.listeners.is_empty() {
                    now - mb.updated < expiry
                } else if now - mb.last_message >= listened_expiry {
                    evicted.extend(mb.listeners.iter().copied());
                    false
                } else {
                    mb.updated = now;
                    true
                };
                if !keep {
                    freed += mb.stored;
                    gone.push(Dirty::Mailbox(app_id.clone(), id.clone()));
                    if recording {
                        usage.push(Usage::of(app_id, mb, now, true));
                    }
                }
                keep
            });
            pruned += before - app.mailboxes.len();
            let mailboxes = &app.mailboxes;
            app.nameplates.retain(|name, np| {
                let keep = mailboxes.contains_key(&np.mailbox);
                if !keep {
                    gone.push(Dirty::Nameplate(app_id.clone(), name.clone()));
                }
                keep
            });
        }
        for d in gone {
            self.touch(d);
        }
        self.apps
            .retain(|_, a| !a.mailboxes.is_empty() || !a.nameplates.is_empty());
        self.stored -= freed;
        pruned
    }

    /// The connections that listened to mailboxes [`MailboxState::prune`] deleted as idle: the
    /// server disconnects them.
    pub fn take_evicted(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.evicted)
    }

    /// Sessions finished (mailboxes deleted) since the last call; only for a state made by
    /// [`MailboxState::restore`].
    pub fn take_usage(&mut self) -> Vec<Usage> {
        std::mem::take(&mut self.usage)
    }

    /// The moods `close` messages gave since the last call.
    pub fn take_moods(&mut self) -> Vec<String> {
        std::mem::take(&mut self.moods)
    }

    /// Bytes of messages stored in all mailboxes.
    pub fn stored_bytes(&self) -> usize {
        self.stored
    }

    /// Whether connection `id` has sent its `bind`.
    pub fn is_bound(&self, id: ConnId) -> bool {
        self.conns.get(&id).is_some_and(|c| c.app.is_some())
    }

    /// Mailboxes stored now, in all apps.
    pub fn mailboxes(&self) -> usize {
        self.apps.values().map(|a| a.mailboxes.len()).sum()
    }

    /// A random free nameplate of the shortest possible length; `None` when all million are
    /// taken (never a loop without end).
    fn free_nameplate(&mut self, app_id: &str) -> Option<String> {
        let used: HashSet<String> = self
            .apps
            .get(app_id)
            .map(|a| a.nameplates.keys().cloned().collect())
            .unwrap_or_default();
        for (lo, hi) in [(1u32, 9u32), (10, 99), (100, 999)] {
            let free: Vec<u32> = (lo..=hi)
                .filter(|n| !used.contains(&n.to_string()))
                .collect();
            if !free.is_empty() {
                return Some(free[self.rng.gen_range(0..free.len())].to_string());
            }
        }
        for _ in 0..1000 {
            let n = self.rng.gen_range(1000u32..=999_999).to_string();
            if !used.contains(&n) {
                return Some(n);
            }
        }
        // nearly full: look at every one, from a random start
        let start = self.rng.gen_range(1000u32..=999_999);
        (start..=999_999)
            .chain(1000..start)
            .map(|n| n.to_string())
            .find(|n| !used.contains(n))
    }
}

/// 13 characters of lowercase base32, like the Python server's.
fn new_mailbox_id(rng: &mut StdRng) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..13)
        .map(|_| ALPHABET[rng.gen_range(0..32)] as char)
        .collect()
}
