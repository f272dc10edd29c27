//! Fixtures for tests against real components: our mailbox server and transit relay (for tests
//! whose peers are all ours), the Python mailbox server and transit relay (where a Python peer or
//! the Python server itself takes part), on loopback ports, and Python peer programs. Every server
//! and process is stopped when its fixture is dropped, also when a test fails.
#![allow(dead_code)]

pub mod cli;
pub mod dilation;
pub mod fowld;
pub mod lab;
pub mod schema;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command as AsyncCommand};

/// The project-local virtualenv that `scripts/test.sh` fills with the pinned Python reference.
pub fn venv() -> PathBuf {
    let dir = std::env::var_os("FOWL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    assert!(
        dir.join("bin/twist").exists(),
        "{} has no Python reference stack: run scripts/test.sh (it installs tests/python/requirements.txt)",
        dir.display()
    );
    dir
}

pub fn python_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// A loopback port that refuses connections while the returned value lives: a socket is bound
/// to it (so nothing else can listen there) but never listens.
pub struct RefusingPort {
    _socket: tokio::net::TcpSocket,
    pub port: u16,
}

impl RefusingPort {
    pub fn reserve() -> RefusingPort {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
        let port = socket.local_addr().unwrap().port();
        RefusingPort {
            _socket: socket,
            port,
        }
    }
}

/// A port on `host` for a program under test to listen on, where the test must name the port
/// itself (a listener of ours on port 0 could not be handed over). It lies below the kernel's
/// ephemeral range, from which every `bind(port 0)` (all other fixtures) and every outgoing
/// connection take theirs, so none of those can take it before the program binds it; it is
/// free now, and this process does not hand it out twice.
pub fn port_to_listen_on(host: &str) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOWEST: u32 = 10_000;
    let ephemeral_start: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768);
    let span = ephemeral_start.saturating_sub(LOWEST).max(1);
    // test binaries of parallel runs start at different places
    let offset = std::process::id().wrapping_mul(7919);
    for _ in 0..span {
        let port = LOWEST + offset.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(port).unwrap();
        if std::net::TcpListener::bind((host, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on {host} below the ephemeral range");
}

/// How long a `twist` server may take to say it listens (Python start-up on a busy machine).
const TWIST_START: Duration = Duration::from_secs(30);
/// How long `restart` keeps trying to get its old port back.
const TWIST_RESTART: Duration = Duration::from_secs(10);

/// What one `twist` child said about its listening port.
enum Listen {
    /// It listens on this port.
    On(u16),
    /// It could not listen, or exited: its log from this start on.
    Failed(String),
}

/// Waits until `child`'s own log (the records of `log` from byte `from` on, Twisted's JSON lines)
/// says which port it listens on, or that it failed. Twisted logs "... starting on PORT" after
/// `listen()`, so a client may connect from then on; a port it could not bind is logged as an
/// error (`CannotListenError`) while the process keeps running, so that counts as failure too.
fn wait_until_listening(child: &mut Child, log: &Path, from: u64, what: &str) -> Listen {
    let deadline = Instant::now() + TWIST_START;
    loop {
        let said = read_from(log, from);
        // only complete records: each starts with RS (0x1e) and ends with a newline
        let complete = &said[..said.rfind('\n').map_or(0, |i| i + 1)];
        for record in complete
            .split(['\u{1e}', '\n'])
            .filter(|r| !r.trim().is_empty())
        {
            let Ok(v) = serde_json::from_str::<Value>(record) else {
                continue;
            };
            let text = v["log_text"].as_str().unwrap_or_default();
            if let Some(port) = text
                .rsplit_once(" starting on ")
                .and_then(|(_, p)| p.trim().parse::<u16>().ok())
            {
                return Listen::On(port);
            }
            let level = v["log_level"]["name"].as_str().unwrap_or_default();
            if v["isError"] == 1 || level == "error" || level == "critical" {
                return Listen::Failed(said);
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Listen::Failed(format!("{}exited with {status}", read_from(log, from)));
        }
        assert!(
            Instant::now() < deadline,
            "twist {what} did not say it listens within {TWIST_START:?}; its log:\n{said}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The text of `path` from byte `from` on.
fn read_from(path: &Path, from: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut text = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        if f.seek(SeekFrom::Start(from)).is_ok() {
            let _ = f.read_to_end(&mut text);
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// A `twist` plugin (Python server) on a loopback port, killed on drop. The port is the one the
/// server itself reports (it binds port 0), so no other test's listener can be mistaken for it.
pub struct TwistServer {
    plugin: &'static str,
    extra: Vec<String>,
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl TwistServer {
    fn start(plugin: &'static str, extra: Vec<String>) -> TwistServer {
        let dir = tempfile::tempdir().unwrap();
        let mut server = TwistServer {
            plugin,
            extra,
            port: 0,
            dir,
            child: None,
        };
        match server.spawn(0) {
            Listen::On(port) => server.port = port,
            Listen::Failed(log) => panic!("could not start twist {plugin}: {log}"),
        }
        server
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join(format!("{}.log", self.plugin))
    }

    /// Starts the server on `port` (0: one the system picks) and waits until this child says
    /// whether it listens. A child that failed is killed.
    fn spawn(&mut self, port: u16) -> Listen {
        assert!(
            self.child.is_none(),
            "the previous twist {} still runs",
            self.plugin
        );
        let log = self.log();
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        // where this child's output starts (an earlier run's output is before it)
        let from = log_file.metadata().unwrap().len();
        let mut child = Command::new(venv().join("bin/twist"))
            .arg(self.plugin)
            .arg(format!("--port=tcp:{port}:interface=127.0.0.1"))
            .args(&self.extra)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("spawn twist");
        let listen = wait_until_listening(&mut child, &log, from, self.plugin);
        match listen {
            Listen::On(on) if port == 0 || on == port => self.child = Some(child),
            Listen::On(on) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("twist {} listens on {on}, not on {port}", self.plugin);
            }
            Listen::Failed(_) => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        listen
    }

    /// Kills the server (as a crash would: SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, with the same state directory. The port may be taken
    /// for a moment (a connection of the old server lingering): tries again for a bounded time.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + TWIST_RESTART;
        loop {
            match self.spawn(self.port) {
                Listen::On(_) => return,
                Listen::Failed(log) => assert!(
                    Instant::now() < deadline,
                    "could not restart twist {} on port {} within {TWIST_RESTART:?}: {log}",
                    self.plugin,
                    self.port
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TwistServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The real Python mailbox server (magic-wormhole-mailbox-server), state in a temporary SQLite file.
pub struct MailboxServer(pub TwistServer);

impl MailboxServer {
    pub fn start() -> MailboxServer {
        MailboxServer::start_with(&[])
    }

    pub fn start_with(options: &[&str]) -> MailboxServer {
        let mut extra = vec![
            "--channel-db=channel.sqlite".to_string(),
            "--usage-db=usage.sqlite".to_string(),
        ];
        extra.extend(options.iter().map(|s| s.to_string()));
        MailboxServer(TwistServer::start("wormhole-mailbox", extra))
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1", self.0.port)
    }

    /// The `result` column of every finished mailbox in the server's usage database.
    pub fn mailbox_results(&self) -> Vec<String> {
        let db = self.0.dir().join("usage.sqlite");
        let out = Command::new(venv().join("bin/python"))
            .arg("-c")
            .arg("import sqlite3,sys,json; c=sqlite3.connect(sys.argv[1]); print(json.dumps([r[0] for r in c.execute('select result from mailboxes')]))")
            .arg(db)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }
}

/// The real Python transit relay (magic-wormhole-transit-relay).
pub struct TransitRelay(pub TwistServer);

impl TransitRelay {
    pub fn start() -> TransitRelay {
        TransitRelay(TwistServer::start("transitrelay", vec![]))
    }

    pub fn hint(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.0.port)
    }
}

/// Which of our servers a `RustServer` runs.
#[derive(Debug, Clone, Copy)]
enum RustServerKind {
    Mailbox,
    Relay,
}

/// One of our servers (`fowl::server`) on a loopback port, on a thread with a runtime of its own,
/// as a separate server process would be: the test's runtime does not carry it, and `kill` closes
/// its listener and every connection at once. Stopped on drop.
pub struct RustServer {
    kind: RustServerKind,
    pub port: u16,
    running: Option<(
        tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    )>,
}

impl RustServer {
    fn start(kind: RustServerKind) -> RustServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut server = RustServer {
            kind,
            port: listener.local_addr().unwrap().port(),
            running: None,
        };
        server.run(listener);
        server
    }

    /// Serves on `listener` (already listening: connections queue until the thread accepts).
    fn run(&mut self, listener: std::net::TcpListener) {
        listener.set_nonblocking(true).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let kind = self.kind;
        let thread = std::thread::Builder::new()
            .name(format!("{kind:?} server"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let _server: Box<dyn std::any::Any> = match kind {
                        RustServerKind::Mailbox => Box::new(
                            fowl::server::mailbox::serve(listener, Default::default()).unwrap(),
                        ),
                        RustServerKind::Relay => Box::new(
                            fowl::server::relay::serve(listener, Default::default()).unwrap(),
                        ),
                    };
                    let _ = stopped.await;
                });
                // dropping the runtime drops every task: the listener and all connections close
            })
            .unwrap();
        self.running = Some((stop, thread));
    }

    /// Stops the server and closes all its connections, as a crash would.
    pub fn kill(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            drop(stop);
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("our {:?} server's thread panicked", self.kind);
            }
        }
    }

    /// Starts it again on the same port, with fresh state. The port may be taken for a moment:
    /// tries again for a bounded time.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match std::net::TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(listener) => break listener,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "could not restart our {:?} server on port {}: {e}",
                    self.kind,
                    self.port
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        self.run(listener);
    }
}

impl Drop for RustServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Our mailbox server and transit relay, for tests whose peers are all ours.
pub struct RustServers {
    pub mailbox: RustServer,
    pub relay: RustServer,
}

impl RustServers {
    pub fn start() -> RustServers {
        RustServers {
            mailbox: RustServer::start(RustServerKind::Mailbox),
            relay: RustServer::start(RustServerKind::Relay),
        }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1", self.mailbox.port)
    }

    /// The relay's `tcp:HOST:PORT` hint.
    pub fn relay_hint(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.relay.port)
    }
}

/// A Python program from `tests/python` speaking JSON lines on stdout; killed on drop.
pub struct PyPeer {
    child: tokio::process::Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl PyPeer {
    pub fn spawn(script: &str, args: &[String]) -> PyPeer {
        let mut child = AsyncCommand::new(venv().join("bin/python"))
            .arg(python_script(script))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn python peer");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        PyPeer { child, lines }
    }

    /// `tests/python/wormhole_peer.py` on the mailbox server at `url`, with `extra` options.
    pub fn wormhole(url: &str, extra: &[&str]) -> PyPeer {
        let mut args = vec!["--url".to_string(), url.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        PyPeer::spawn("wormhole_peer.py", &args)
    }

    /// The next JSON line, within `limit`.
    pub async fn next(&mut self, limit: Duration) -> Value {
        let line = tokio::time::timeout(limit, self.lines.next_line())
            .await
            .expect("python peer said nothing in time")
            .expect("read python peer")
            .expect("python peer exited early");
        serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("python peer printed non-JSON: {line}"))
    }

    /// The next line, which must be the event `name`.
    pub async fn expect(&mut self, name: &str) -> Value {
        let v = self.next(Duration::from_secs(30)).await;
        assert_eq!(v["event"], name, "python peer: {v}");
        v
    }

    /// Writes one line to the program's stdin.
    pub async fn send_line(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt;
        let stdin = self.child.stdin.as_mut().expect("stdin is piped");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Reads lines until the event `name` arrives; returns it and the events passed over.
    pub async fn until(&mut self, name: &str, limit: Duration) -> (Value, Vec<Value>) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = self.next(left).await;
            if v["event"] == name {
                return (v, skipped);
            }
            assert_ne!(v["event"], "error", "python peer failed: {v}");
            skipped.push(v);
        }
    }

    /// Waits for the process to exit and returns its code.
    pub async fn wait(&mut self, limit: Duration) -> Option<i32> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("python peer did not exit")
            .unwrap()
            .code()
    }
}

/// Sends the library's logs to the test output (shown for failing tests); `RUST_LOG` filters.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "fowl=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Tests with Dilation peers advertise and dial every interface address: they must run where
/// only loopback exists (`scripts/test.sh` runs them in a loopback-only network namespace).
/// Set `FOWL_ALLOW_NON_LOOPBACK=1` to run them elsewhere knowingly.
pub fn require_loopback_only() {
    if std::env::var_os("FOWL_ALLOW_NON_LOOPBACK").is_some() {
        return;
    }
    let others: Vec<String> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !i.ip().is_loopback())
        .map(|i| format!("{} {}", i.name, i.ip()))
        .collect();
    assert!(
        others.is_empty(),
        "this test dials the machine's interface addresses ({}): run it through scripts/test.sh, \
         which uses a loopback-only network namespace",
        others.join(", ")
    );
}

/// A TCP proxy on a loopback port in front of `target`, whose connections the test can cut and
/// whose new connections it can refuse for a while.
pub struct CutProxy {
    pub port: u16,
    state: std::sync::Arc<std::sync::Mutex<ProxyState>>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct ProxyState {
    conns: Vec<tokio::task::AbortHandle>,
    refusing: bool,
    refused_side: Option<String>,
    accepted: usize,
}

impl CutProxy {
    pub async fn start(target: u16) -> CutProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(std::sync::Mutex::new(ProxyState::default()));
        let st = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut s = st.lock().unwrap();
                if s.refusing {
                    continue; // dropped: the client sees the connection close at once
                }
                s.accepted += 1;
                let side = s.refused_side.clone();
                let task = tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    // with a refused side, read the relay line first and drop that side's
                    let mut first = Vec::new();
                    if let Some(side) = side {
                        let mut byte = [0u8; 1];
                        while !first.ends_with(b"\n") && first.len() < 1024 {
                            match inbound.read(&mut byte).await {
                                Ok(1) => first.push(byte[0]),
                                _ => return,
                            }
                        }
                        if String::from_utf8_lossy(&first).contains(&format!("for side {side}")) {
                            return;
                        }
                    }
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    if outbound.write_all(&first).await.is_err() {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                s.conns.push(task.abort_handle());
            }
        });
        CutProxy {
            port,
            state,
            accept,
        }
    }

    pub fn hint(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.port)
    }

    /// Drops every connection through the proxy, as a network failure would.
    pub fn cut(&self) {
        for c in self.state.lock().unwrap().conns.drain(..) {
            c.abort();
        }
    }

    /// While refusing, new connections are closed at once.
    pub fn refuse(&self, refusing: bool) {
        self.state.lock().unwrap().refusing = refusing;
    }

    /// Relay connections announcing this Dilation side are closed (`None`: none are).
    pub fn refuse_side(&self, side: Option<&str>) {
        self.state.lock().unwrap().refused_side = side.map(str::to_owned);
    }

    pub fn accepted(&self) -> usize {
        self.state.lock().unwrap().accepted
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Our `fowl server` binary on free loopback ports (mailbox and relay); killed on drop. Its
/// stderr (the logs) is collected.
pub struct FowlServer {
    child: tokio::process::Child,
    pub url: String,
    /// The relay's `tcp:HOST:PORT` hint.
    pub relay: String,
    /// With `--metrics-listen 127.0.0.1:0` among the extra arguments: the metrics port.
    pub metrics: Option<u16>,
    logs: tokio::task::JoinHandle<String>,
}

/// The port at the end of a URL or hint (`ws://127.0.0.1:PORT/v1`, `tcp:127.0.0.1:PORT`, ...).
pub fn port_of(address: &str) -> u16 {
    let s = address.trim_end_matches("/metrics").trim_end_matches("/v1");
    s.rsplit(':').next().unwrap().parse().unwrap()
}

impl FowlServer {
    pub async fn spawn(extra: &[&str]) -> FowlServer {
        let mut child = AsyncCommand::new(env!("CARGO_BIN_EXE_fowl"))
            .args([
                "server",
                "--mailbox-listen",
                "127.0.0.1:0",
                "--relay-listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn fowl server");
        let mut stderr = child.stderr.take().unwrap();
        let logs = tokio::spawn(async move {
            let mut text = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
            text
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut url, mut relay, mut metrics) = (None, None, None);
        let wants_metrics = extra.contains(&"--metrics-listen");
        while url.is_none() || relay.is_none() || (wants_metrics && metrics.is_none()) {
            let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
                .await
                .expect("fowl server prints its addresses")
                .unwrap()
                .expect("fowl server exited");
            if let Some(u) = line.strip_prefix("mailbox server listening on ") {
                url = Some(u.to_string());
            } else if let Some(h) = line.strip_prefix("transit relay listening on ") {
                relay = Some(h.to_string());
            } else if let Some(m) = line.strip_prefix("metrics listening on ") {
                metrics = Some(port_of(m));
            }
        }
        FowlServer {
            child,
            url: url.unwrap(),
            relay: relay.unwrap(),
            metrics,
            logs,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// Stops the server; returns what it logged.
    pub async fn stop(mut self) -> String {
        let _ = self.child.kill().await;
        self.logs.await.unwrap_or_default()
    }
}

/// Resident memory of process `pid`, in bytes.
pub fn rss_of(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `from`.
pub async fn connect_from(from: [u8; 4], port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind((from, 0).into())?;
    socket.connect(([127, 0, 0, 1], port).into()).await
}
