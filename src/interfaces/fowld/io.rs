//! fowld's standard streams. stdin is read on its own thread (tokio's stdin can hang shutdown)
//! with a bound on the line length; stdout is written by its own thread from an [`EventQueue`],
//! so a controller that reads slowly never slows forwarding.

use std::io::{BufRead, Write};
use std::time::Duration;

use tokio::sync::mpsc;

use super::commands::{Command, CommandError, MAX_LINE};
use super::output;
use crate::forward::EventQueue;

/// What the stdin thread delivers.
#[derive(Debug)]
pub enum Input {
    /// One line (without its newline), still to be parsed.
    Line(String),
    /// A command already parsed (the human CLI builds its commands from its own options).
    Command(Command),
    /// A line over [`MAX_LINE`] bytes (skipped), or not UTF-8.
    Bad(String),
    /// The end of input (stdin closed or unreadable).
    Eof,
}

/// Starts the stdin thread.
pub fn stdin_lines() -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        let mut line = Vec::new();
        let mut overlong = false;
        loop {
            let buf = match lock.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            if buf.is_empty() {
                break;
            }
            let (chunk, end) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            if !overlong {
                if line.len() + chunk.len() > MAX_LINE {
                    overlong = true;
                    line.clear();
                } else {
                    line.extend_from_slice(chunk);
                }
            }
            let used = end.unwrap_or(buf.len());
            lock.consume(used);
            if end.is_some() {
                let input = if overlong {
                    Input::Bad(format!("line too long (over {MAX_LINE} bytes), ignored"))
                } else {
                    match String::from_utf8(std::mem::take(&mut line)) {
                        Ok(s) => Input::Line(s),
                        Err(_) => Input::Bad("line is not UTF-8".into()),
                    }
                };
                overlong = false;
                line.clear();
                if tx.blocking_send(input).is_err() {
                    return;
                }
            }
        }
        let _ = tx.blocking_send(Input::Eof);
    });
    rx
}

/// Starts the stdout thread; it ends once `queue` is closed and drained. Join it before exiting.
pub fn stdout_writer(queue: EventQueue) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let stdout = std::io::stdout();
        // once nobody reads stdout, events are still drained (and dropped) so memory stays flat
        let mut broken = false;
        loop {
            let batch = queue.drain(Duration::from_millis(200));
            if batch.is_empty() {
                if queue.is_closed() {
                    return;
                }
                continue;
            }
            if broken {
                continue;
            }
            let mut out = stdout.lock();
            for e in &batch {
                if writeln!(out, "{}", output::event(e)).is_err() {
                    broken = true;
                    break;
                }
            }
            broken = broken || out.flush().is_err();
        }
    })
}

impl Input {
    /// The command this input carries, its refusal, or `None` at the end of input.
    pub fn into_command(input: Option<Input>) -> Option<Result<Command, CommandError>> {
        match input? {
            Input::Line(l) => Some(super::commands::parse(&l)),
            Input::Command(c) => Some(Ok(c)),
            Input::Bad(e) => Some(Err(CommandError(e))),
            Input::Eof => None,
        }
    }
}
