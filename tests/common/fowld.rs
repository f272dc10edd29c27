//! A fowld process, ours or Python's, driven through its JSON lines.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    Rust,
    Python,
}

/// Where Python fowld's Dilation goes: direct (its own hints; its relay is the unreachable public
/// one) or only through this relay (`tests/python/fowld_relay_only.py`).
pub fn python_relay_only(relay_hint: &str) -> Vec<String> {
    vec![format!("--python-relay-only={relay_hint}")]
}

pub struct Fowld {
    pub which: Impl,
    child: tokio::process::Child,
    /// stdout lines, read continuously by a task (as a real controller would), so a daemon never
    /// stalls on a full pipe while a test is busy elsewhere.
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Every JSON line read so far.
    pub seen: Vec<Value>,
    /// Lines passed over by `expect`, still to be looked at by `take`.
    backlog: Vec<Value>,
    /// While set, stdout is not read at all (a stalled controller).
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Fowld {
    /// Starts fowld on `mailbox`. Our fowld gets `args` too (relay options and such); Python's
    /// uses its fixed public relay, unreachable here, so it connects directly.
    pub fn spawn(which: Impl, mailbox: &str, args: &[&str]) -> Fowld {
        let mut cmd = match which {
            Impl::Rust => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_fowld"));
                c.args(args);
                c
            }
            Impl::Python => match args
                .iter()
                .find_map(|a| a.strip_prefix("--python-relay-only="))
            {
                Some(relay) => {
                    let mut c = Command::new(super::venv().join("bin/python"));
                    c.arg(super::python_script("fowld_relay_only.py"))
                        .env("FOWL_TEST_RELAY", relay);
                    c
                }
                None => Command::new(super::venv().join("bin/fowld")),
            },
        };
        cmd.args(["--mailbox", mailbox]);
        Fowld::from_command(which, cmd)
    }

    /// Starts fowld from a prepared command: program, arguments (`--mailbox` included),
    /// environment and stderr already set; stdin and stdout are piped here. For fixtures that run
    /// it elsewhere, e.g. inside a network namespace with `ip netns exec` (`common::lab`).
    pub fn from_command(which: Impl, mut cmd: Command) -> Fowld {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn fowld");
        let mut reader = BufReader::new(child.stdout.take().unwrap()).lines();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        let stalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stall = stalled.clone();
        tokio::spawn(async move {
            loop {
                while stall.load(std::sync::atomic::Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let Ok(Some(line)) = reader.next_line().await else {
                    break;
                };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Fowld {
            which,
            child,
            lines,
            seen: Vec::new(),
            backlog: Vec::new(),
            stalled,
        }
    }

    /// Sends a command, which must be valid against its input schema.
    pub async fn send(&mut self, command: Value) {
        super::schema::check_input(&command);
        self.send_raw(&command.to_string()).await;
    }

    /// Sends a `local` and waits until the daemon has taken it: a peer's request racing ahead of
    /// it would be refused, as with Python (whose controllers send `local` early). Ours answers a
    /// `ping` after the commands before it; Python's ping is broken, so it gets a moment instead.
    pub async fn send_local(&mut self, command: Value) {
        assert_eq!(command["kind"], "local");
        self.send(command).await;
        match self.which {
            Impl::Rust => {
                self.send(json!({"kind": "ping", "ping_id": "sync"})).await;
                self.expect("pong").await;
            }
            Impl::Python => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }

    pub async fn send_raw(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin is open");
        stdin.write_all(line.as_bytes()).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// Stops (or resumes) reading fowld's stdout, as a controller that hangs would.
    pub fn stall(&self, stalled: bool) {
        self.stalled
            .store(stalled, std::sync::atomic::Ordering::Relaxed);
    }

    /// Closes fowld's stdin.
    pub fn close_stdin(&mut self) {
        self.child.stdin.take();
    }

    /// Parses a stdout line: JSON lines are schema-checked (ours) and recorded; Python's non-JSON
    /// lines are skipped, ours would fail the test.
    fn record(&mut self, line: &str) -> Option<Value> {
        match serde_json::from_str::<Value>(line) {
            Ok(v) => {
                if self.which == Impl::Rust {
                    super::schema::check_output(&v);
                }
                self.seen.push(v.clone());
                Some(v)
            }
            Err(_) => {
                assert_eq!(
                    self.which,
                    Impl::Python,
                    "our fowld printed non-JSON: {line}"
                );
                None
            }
        }
    }

    /// Waits for a line of `kind`, keeping the others for later `expect`s.
    pub async fn expect(&mut self, kind: &str) -> Value {
        if let Some(i) = self.backlog.iter().position(|v| v["kind"] == kind) {
            return self.backlog.remove(i);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut passed = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = loop {
                let line = tokio::time::timeout(left, self.lines.recv())
                    .await
                    .unwrap_or_else(|_| {
                        panic!(
                            "{:?} fowld: no {kind} in time; seen {:?}",
                            self.which, self.seen
                        )
                    })
                    .unwrap_or_else(|| {
                        panic!(
                            "{:?} fowld exited before {kind}; seen {:?}",
                            self.which, self.seen
                        )
                    });
                if let Some(v) = self.record(&line) {
                    break v;
                }
            };
            if v["kind"] == kind {
                self.backlog.extend(passed);
                return v;
            }
            passed.push(v);
        }
    }

    /// Records the lines that arrived so far without waiting (kept for later `expect`s); returns
    /// false once stdout is closed and every line was read.
    pub fn poll(&mut self) -> bool {
        loop {
            match self.lines.try_recv() {
                Ok(line) => {
                    if let Some(v) = self.record(&line) {
                        self.backlog.push(v);
                    }
                }
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => return true,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Sum of `bytes` over all `kind` lines for stream `id` seen so far.
    pub fn total(&self, kind: &str, id: &Value) -> u64 {
        self.seen
            .iter()
            .filter(|v| v["kind"] == kind && &v["id"] == id)
            .map(|v| v["bytes"].as_u64().unwrap())
            .sum()
    }

    /// Reads lines (kept for later `expect`s) until none came for `quiet`, at most 30 s.
    pub async fn settle(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(quiet, self.lines.recv()).await {
                Ok(Some(line)) => {
                    if let Some(v) = self.record(&line) {
                        self.backlog.push(v);
                    }
                }
                _ => return,
            }
        }
    }

    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{:?} fowld did not exit within {limit:?}", self.which))
            .unwrap()
            .code()
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// The process id while the process was not reaped.
    pub fn try_pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// Codes the two daemons: `a` allocates, `b` sets; both see peer-connected with one verifier.
pub async fn pair(a: &mut Fowld, b: &mut Fowld) {
    a.send(json!({"kind": "allocate-code"})).await;
    let code = a.expect("code-allocated").await["code"]
        .as_str()
        .unwrap()
        .to_string();
    b.send(json!({"kind": "set-code", "code": code})).await;
    assert_eq!(b.expect("code-allocated").await["code"], code.as_str());
    let (va, vb) = (
        a.expect("peer-connected").await,
        b.expect("peer-connected").await,
    );
    assert_eq!(va["verifier"], vb["verifier"]);
    // (ours add {"fowl-rs": {"remember": 1}}: protocol/remember.md)
    assert_eq!(va["versions"]["fowl"], json!({"features": ["core-v1"]}));
    assert_eq!(vb["versions"]["fowl"], json!({"features": ["core-v1"]}));
}

/// `local` on `roost`, `remote` on `fledge` for the service at 127.0.0.1:`port`, waiting until
/// both took it (the service side knows where streams go only once it has the listener's
/// answer: a stream arriving earlier is refused); returns the port `roost` listens on.
pub async fn service(roost: &mut Fowld, fledge: &mut Fowld, name: &str, port: u16) -> u16 {
    roost
        .send_local(json!({"kind": "local", "name": name}))
        .await;
    fledge
        .send(json!({"kind": "remote", "name": name, "local_connect_port": port}))
        .await;
    fledge.expect("awaiting-connect").await;
    roost.expect("listening").await["listening_port"]
        .as_u64()
        .unwrap() as u16
}

/// An echo server on a free 127.0.0.1 port; returns the port.
pub async fn echo_server() -> u16 {
    echo_server_at("127.0.0.1:0").await
}

/// An echo server listening on `addr` (port 0: a free one); returns the port.
pub async fn echo_server_at(addr: &str) -> u16 {
    let l = TcpListener::bind(addr).await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

/// Sends `data` through the forwarded port and reads the echo; returns what came back.
pub async fn through(port: u16, data: &[u8]) -> Vec<u8> {
    let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let out = data.to_vec();
    let writer = tokio::spawn(async move {
        w.write_all(&out).await.unwrap();
        w
    });
    let mut got = vec![0u8; data.len()];
    tokio::time::timeout(Duration::from_secs(120), r.read_exact(&mut got))
        .await
        .expect("echo in time")
        .unwrap();
    drop(writer.await.unwrap());
    got
}
