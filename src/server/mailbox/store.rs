//! The mailbox server's database (`fowl server --db PATH`): nameplates, mailboxes and their
//! messages in SQLite, so that a restarted server still has every session's state (as Python's
//! `--channel-db`). The state machine says what changed ([`MailboxState::take_changes`]); this
//! writes it, one transaction per batch, before the frames that depend on it are sent.
//!
//! [`MailboxState::take_changes`]: super::MailboxState::take_changes

use std::path::Path;

use rusqlite::{params, Connection};

use super::state::{Change, MailboxRow, NameplateRow, Snapshot, Usage};

/// The layout version in `PRAGMA user_version`; a database of another version is refused.
const LAYOUT: i64 = 1;

/// The database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (opening, reading or writing).
    #[error("mailbox database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file is a database of another layout.
    #[error("mailbox database has layout {found}, this server knows {LAYOUT}")]
    Layout {
        /// What the file says.
        found: i64,
    },
    /// A stored row does not parse.
    #[error("mailbox database: bad row: {0}")]
    Row(String),
}

/// A row of the usage record: app, started, duration (seconds), moods (JSON list), result.
pub type UsageRow = (String, f64, f64, String, String);

/// An open mailbox database.
pub struct Store {
    db: Connection,
}

fn sides_json(sides: &[(String, bool)]) -> String {
    serde_json::to_string(sides).unwrap_or_else(|_| "[]".into())
}

fn sides_of(text: &str) -> Result<Vec<(String, bool)>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Row(e.to_string()))
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
        match version {
            0 => {
                db.execute_batch(
                    "CREATE TABLE IF NOT EXISTS nameplates (
                         app TEXT NOT NULL, name TEXT NOT NULL, mailbox TEXT NOT NULL,
                         sides TEXT NOT NULL, PRIMARY KEY (app, name));
                     CREATE TABLE IF NOT EXISTS mailboxes (
                         app TEXT NOT NULL, id TEXT NOT NULL, sides TEXT NOT NULL,
                         last_message REAL NOT NULL, created REAL NOT NULL,
                         PRIMARY KEY (app, id));
                     CREATE TABLE IF NOT EXISTS usage (
                         app TEXT NOT NULL, started REAL NOT NULL, duration REAL NOT NULL,
                         moods TEXT NOT NULL, result TEXT NOT NULL);
                     CREATE INDEX IF NOT EXISTS usage_started ON usage (started);
                     CREATE TABLE IF NOT EXISTS messages (
                         app TEXT NOT NULL, mailbox TEXT NOT NULL, seq INTEGER NOT NULL,
                         message TEXT NOT NULL, PRIMARY KEY (app, mailbox, seq));",
                )?;
                db.pragma_update(None, "user_version", LAYOUT)?;
            }
            LAYOUT => {}
            found => return Err(StoreError::Layout { found }),
        }
        Ok(Store { db })
    }

    /// Everything stored.
    pub fn load(&self) -> Result<Snapshot, StoreError> {
        let mut snapshot = Snapshot::default();
        let mut q = self
            .db
            .prepare("SELECT app, name, mailbox, sides FROM nameplates")?;
        let rows = q.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, String>(3)?))
        })?;
        for row in rows {
            let (app, name, mailbox, sides): (String, String, String, String) = row?;
            let sides = sides_of(&sides)?;
            snapshot
                .nameplates
                .push((app, name, NameplateRow { mailbox, sides }));
        }
        let mut q = self
            .db
            .prepare("SELECT app, id, sides, last_message, created FROM mailboxes")?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get::<_, String>(2)?,
                r.get(3)?,
                r.get(4)?,
            ))
        })?;
        let mut messages = self
            .db
            .prepare("SELECT message FROM messages WHERE app = ?1 AND mailbox = ?2 ORDER BY seq")?;
        for row in rows {
            let (app, id, sides, last_message, created): (String, String, String, f64, f64) = row?;
            let sides = sides_of(&sides)?;
            let texts = messages
                .query_map(params![app, id], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<String>, _>>()?;
            let row = MailboxRow {
                sides,
                last_message,
                created,
            };
            snapshot.mailboxes.push((app, id, row, texts));
        }
        Ok(snapshot)
    }

    /// Writes `changes` in one transaction.
    pub fn apply(&mut self, changes: Vec<Change>) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let tx = self.db.transaction()?;
        for change in changes {
            match change {
                Change::Nameplate { app, name, row } => match row {
                    Some(row) => {
                        tx.execute(
                            "INSERT OR REPLACE INTO nameplates (app, name, mailbox, sides)
                             VALUES (?1, ?2, ?3, ?4)",
                            params![app, name, row.mailbox, sides_json(&row.sides)],
                        )?;
                    }
                    None => {
                        tx.execute(
                            "DELETE FROM nameplates WHERE app = ?1 AND name = ?2",
                            params![app, name],
                        )?;
                    }
                },
                Change::Mailbox {
                    app,
                    id,
                    row,
                    new_messages,
                } => match row {
                    Some(row) => {
                        tx.execute(
                            "INSERT OR REPLACE INTO mailboxes (app, id, sides, last_message, created)
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                            params![
                                app,
                                id,
                                sides_json(&row.sides),
                                row.last_message,
                                row.created
                            ],
                        )?;
                        for (seq, message) in new_messages {
                            tx.execute(
                                "INSERT OR REPLACE INTO messages (app, mailbox, seq, message)
                                 VALUES (?1, ?2, ?3, ?4)",
                                params![app, id, seq as i64, message],
                            )?;
                        }
                    }
                    None => {
                        tx.execute(
                            "DELETE FROM mailboxes WHERE app = ?1 AND id = ?2",
                            params![app, id],
                        )?;
                        tx.execute(
                            "DELETE FROM messages WHERE app = ?1 AND mailbox = ?2",
                            params![app, id],
                        )?;
                    }
                },
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Adds finished sessions to the usage record.
    pub fn record_usage(&mut self, usage: Vec<Usage>) -> Result<(), StoreError> {
        if usage.is_empty() {
            return Ok(());
        }
        let tx = self.db.transaction()?;
        for u in usage {
            let moods = serde_json::to_string(&u.moods).unwrap_or_else(|_| "[]".into());
            tx.execute(
                "INSERT INTO usage (app, started, duration, moods, result)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![u.app, u.started, u.duration, moods, u.result],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes usage rows of sessions that started before `before`; returns how many.
    pub fn forget_usage_before(&mut self, before: f64) -> Result<usize, StoreError> {
        Ok(self
            .db
            .execute("DELETE FROM usage WHERE started < ?1", params![before])?)
    }

    /// The usage record, oldest first.
    pub fn usage(&self) -> Result<Vec<UsageRow>, StoreError> {
        let mut q = self
            .db
            .prepare("SELECT app, started, duration, moods, result FROM usage ORDER BY started")?;
        let rows = q.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}
