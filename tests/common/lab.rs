//! A network fault lab: Linux network namespaces as hosts, joined by veth links to a bridge, with
//! our daemons running in them, so that tests can inject real, silent network faults.
//!
//! Hosts `s` (our mailbox server and transit relay, two separate `fowl server` processes so each
//! can be stopped alone), `a` and `b` (the two peers' fowld). Each host's `eth0` is one end of a
//! veth pair whose other end (`vs`, `va`, `vb`) is a port of bridge `br0` in a namespace of its
//! own. Addresses come from 198.18.0.0/24 only; there is no default route, so nothing leaves the
//! lab. A paced stream of seeded pseudo-random bytes goes from a client in `a` through fowld `a`,
//! Dilation and fowld `b` to a sink in `b`, which checks every byte and when it arrived.
//!
//! Needs root and iproute2 (`ip`, `tc`, `bridge`); without them no lab is built and the test
//! says why and passes.
//! Every process and namespace goes away on drop, also when a test panics.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use serde_json::{json, Value};

use super::fowld::{pair, Fowld, Impl};

/// The mailbox server's port on host `s` (lab namespaces are private: fixed ports are fine).
pub const MAILBOX_PORT: u16 = 4000;
/// The transit relay's port on host `s`.
pub const RELAY_PORT: u16 = 4001;
/// How long one `ip` or `tc` command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(20);
/// How long a killed process may take to die.
const EXIT_LIMIT: Duration = Duration::from_secs(10);
/// How long a server may take to say it listens (retried while its port is still taken).
const SERVER_START: Duration = Duration::from_secs(20);
/// How long a new lab's links may take to carry a connection from `a` and `b` to `s`.
const LINKS_UP: Duration = Duration::from_secs(20);
/// How long a stream may take to start flowing.
const FLOW_START: Duration = Duration::from_secs(30);
/// Generous bound for a stream to move again once the fault is gone (or, without a fault, the
/// longest silence allowed): a loaded machine must never fail a test by timing.
pub const RESUME_LIMIT: Duration = Duration::from_secs(20);
/// How long the sender goes on once the fault is gone.
const TAIL: Duration = Duration::from_secs(5);
/// How long the stream may take to complete after the sender stopped.
const COMPLETE_LIMIT: Duration = Duration::from_secs(60);
/// Socket timeouts of the stream threads: how often they look at their stop flag.
const SOCKET_POLL: Duration = Duration::from_millis(200);

/// A host of the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// The server host: mailbox server and transit relay.
    S,
    /// The first peer (the stream's client side).
    A,
    /// The second peer (the stream's sink side).
    B,
}

impl Host {
    pub const ALL: [Host; 3] = [Host::S, Host::A, Host::B];

    pub fn name(self) -> &'static str {
        match self {
            Host::S => "s",
            Host::A => "a",
            Host::B => "b",
        }
    }

    /// The bridge side of the host's veth pair (in the bridge namespace).
    fn veth(self) -> &'static str {
        match self {
            Host::S => "vs",
            Host::A => "va",
            Host::B => "vb",
        }
    }

    /// The address the host starts with (on its `eth0`, /24).
    pub fn address(self) -> &'static str {
        match self {
            Host::S => "198.18.0.1",
            Host::A => "198.18.0.2",
            Host::B => "198.18.0.3",
        }
    }
}

/// The lab's mailbox server URL.
pub fn mailbox_url() -> String {
    format!("ws://{}:{MAILBOX_PORT}/v1", Host::S.address())
}

/// The lab's transit relay hint.
pub fn relay_hint() -> String {
    format!("tcp:{}:{RELAY_PORT}", Host::S.address())
}

/// Writes `line` to the real stderr, past the test harness's output capture, so that skips and
/// figures show in every run.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The time of day (UTC) with milliseconds, as the daemons' logs show it.
fn utc_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let s = d.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_millis()
    )
}

/// Runs `cmd` to completion within `limit` and returns its output; one still running then is
/// killed and reported as timed out.
fn run_bounded(mut cmd: Command, limit: Duration) -> std::io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait()?.is_some() {
            return child.wait_with_output();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                ErrorKind::TimedOut,
                format!("{cmd:?} took over {limit:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `program` (`ip`, `tc`) with `args` (split at whitespace); its stderr if it failed.
fn run_tool(program: &str, args: &str) -> Result<(), String> {
    let mut cmd = Command::new(program);
    cmd.args(args.split_whitespace());
    match run_bounded(cmd, COMMAND_LIMIT) {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`{program} {args}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("`{program} {args}`: {e}")),
    }
}

/// Why a lab cannot run here (not root, no `ip`, `tc` or `bridge`), if it cannot.
fn missing_requirement() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (to create network namespaces)".into());
    }
    for (tool, arg) in [("ip", "-V"), ("tc", "-V"), ("bridge", "-V")] {
        if let Err(e) = run_tool(tool, arg) {
            return Some(format!("needs iproute2's `{tool}`: {e}"));
        }
    }
    None
}

/// Sends `signal` to process `pid` (no error if it is gone).
fn signal(pid: i32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Whether process `pid` is dead: gone, or a zombie waiting to be reaped.
fn is_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // the state follows the command name in parentheses, which may hold anything
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

/// SIGCONT (a stopped process could not act on anything else), then SIGKILL to `pid`; waits a
/// bounded time until it is dead. Its parent (a tokio `Child`) reaps it.
fn kill_and_wait_dead(pid: i32) {
    signal(pid, libc::SIGCONT);
    signal(pid, libc::SIGKILL);
    let deadline = Instant::now() + EXIT_LIMIT;
    while !is_dead(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kills a child of ours (SIGCONT first) and reaps it, within a bounded time.
fn kill_and_reap(child: &mut Child) {
    signal(child.id() as i32, libc::SIGCONT);
    let _ = child.kill();
    let deadline = Instant::now() + EXIT_LIMIT;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The text of `path` from byte `from` on.
fn read_from(path: &Path, from: u64) -> String {
    use std::io::{Seek, SeekFrom};
    let mut text = Vec::new();
    if let Ok(mut f) = File::open(path) {
        if f.seek(SeekFrom::Start(from)).is_ok() {
            let _ = f.read_to_end(&mut text);
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// The last `n` lines of the file at `path`.
fn tail(path: &Path, n: usize) -> String {
    let text = read_from(path, 0);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `f` on a new thread inside network namespace `ns` (`/run/netns/<ns>`): the sockets it
/// creates belong to that namespace.
pub fn spawn_in<T: Send + 'static>(
    ns: &str,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::Builder::new()
        .name(what.to_string())
        .spawn(move || {
            let file =
                File::open(&path).unwrap_or_else(|e| panic!("open network namespace {path}: {e}"));
            // SAFETY: a valid namespace file descriptor; only this thread changes namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .expect("spawn a thread")
}

/// Tries to connect to `addr` from namespace `ns` until it works or `limit` passes.
fn reachable(ns: &str, addr: SocketAddr, limit: Duration) -> bool {
    spawn_in(ns, "reachability", move || {
        let deadline = Instant::now() + limit;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .join()
    .unwrap_or(false)
}

/// Which of our servers a `fowl server` process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerKind {
    Mailbox,
    Relay,
}

impl ServerKind {
    fn name(self) -> &'static str {
        match self {
            ServerKind::Mailbox => "mailbox",
            ServerKind::Relay => "relay",
        }
    }
}

/// A set of network namespaces wired as the lab, with our servers on host `s`. Dropping it kills
/// the servers and deletes every namespace.
pub struct Lab {
    pub scenario: String,
    /// Unique per lab: the prefix of its namespace names.
    id: String,
    /// Logs of every process; kept (and named on stderr) if the test fails or
    /// `FOWL_LAB_KEEP_LOGS` is set.
    dir: Option<tempfile::TempDir>,
    /// Namespaces created so far, deleted on drop.
    namespaces: Vec<String>,
    mailbox: Option<Child>,
    relay: Option<Child>,
    started: Instant,
    /// What was done when, for the diagnostics of a failure.
    timeline: Mutex<Vec<String>>,
}

impl Lab {
    /// Builds the namespaces, links and addresses (no processes yet). `None`, after saying why
    /// on stderr, where the lab cannot run (not root, no iproute2, no namespaces allowed).
    pub fn new(scenario: &str) -> Option<Lab> {
        if let Some(why) = missing_requirement() {
            say(&format!("LAB {scenario} SKIPPED: {why}"));
            return None;
        }
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "fl{}-{}-{:04x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u16>()
        );
        let mut lab = Lab {
            scenario: scenario.to_string(),
            id,
            dir: Some(
                tempfile::Builder::new()
                    .prefix("fowl-lab-")
                    .tempdir()
                    .unwrap(),
            ),
            namespaces: Vec::new(),
            mailbox: None,
            relay: None,
            started: Instant::now(),
            timeline: Mutex::new(Vec::new()),
        };
        // the first namespace tells whether this system lets us make them at all
        let bridge = lab.bridge_ns();
        if let Err(e) = run_tool("ip", &format!("netns add {bridge}")) {
            say(&format!(
                "LAB {scenario} SKIPPED: cannot create a network namespace: {e}"
            ));
            return None;
        }
        lab.namespaces.push(bridge);
        lab.build();
        Some(lab)
    }

    /// The name of a host's namespace.
    pub fn ns(&self, host: Host) -> String {
        format!("{}-{}", self.id, host.name())
    }

    /// The name of the bridge's namespace.
    pub fn bridge_ns(&self) -> String {
        format!("{}-br", self.id)
    }

    /// The directory of the processes' logs.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("the log directory").path()
    }

    /// Runs `ip ARGS` (split at whitespace); panics if it fails.
    pub fn ip(&self, args: &str) {
        run_tool("ip", args).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs `bridge ARGS` (split at whitespace); panics if it fails.
    pub fn bridge(&self, args: &str) {
        run_tool("bridge", args).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs `tc ARGS` (split at whitespace); panics if it fails.
    pub fn tc(&self, args: &str) {
        run_tool("tc", args).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Notes what happens now in the lab's timeline (printed on failure, and at once with
    /// `--nocapture`).
    pub fn event(&self, what: &str) {
        let line = format!(
            "[{:7.3}s {}] {what}",
            self.started.elapsed().as_secs_f64(),
            utc_now()
        );
        eprintln!("lab {}: {line}", self.scenario);
        self.timeline.lock().unwrap().push(line);
    }

    /// The timeline so far, one event a line.
    pub fn timeline(&self) -> String {
        self.timeline.lock().unwrap().join("\n")
    }

    /// The bridge namespace with `br0`, a namespace per host with `lo` up and `eth0` (a veth to a
    /// port of `br0`) with the host's address. No IPv6 link-local addresses, no default route.
    fn build(&mut self) {
        let br = self.bridge_ns();
        for host in Host::ALL {
            let ns = self.ns(host);
            self.ip(&format!("netns add {ns}"));
            self.namespaces.push(ns);
        }
        for ns in &self.namespaces {
            self.ip(&format!("-n {ns} link set lo up"));
        }
        self.ip(&format!("-n {br} link add br0 type bridge"));
        self.ip(&format!("-n {br} link set br0 addrgenmode none"));
        self.ip(&format!("-n {br} link set br0 up"));
        for host in Host::ALL {
            let (ns, veth, address) = (self.ns(host), host.veth(), host.address());
            self.ip(&format!(
                "-n {br} link add {veth} type veth peer name eth0 netns {ns}"
            ));
            self.ip(&format!("-n {br} link set {veth} addrgenmode none"));
            self.ip(&format!("-n {br} link set {veth} master br0"));
            self.ip(&format!("-n {br} link set {veth} up"));
            self.ip(&format!("-n {ns} link set eth0 addrgenmode none"));
            self.ip(&format!("-n {ns} addr add {address}/24 dev eth0"));
            self.ip(&format!("-n {ns} link set eth0 up"));
        }
        self.event(&format!("namespaces {}-{{br,s,a,b}} ready", self.id));
    }

    /// Starts the mailbox server and the relay on host `s` and waits until `a` and `b` reach both.
    pub fn start_servers(&mut self) {
        self.start_mailbox();
        self.start_relay();
        for host in [Host::A, Host::B] {
            for port in [MAILBOX_PORT, RELAY_PORT] {
                let addr = SocketAddr::new(Host::S.address().parse().unwrap(), port);
                assert!(
                    reachable(&self.ns(host), addr, LINKS_UP),
                    "host {} cannot reach {addr} within {LINKS_UP:?}",
                    host.name()
                );
            }
        }
        self.event("servers reachable from a and b");
    }

    fn server_log(&self, kind: ServerKind) -> PathBuf {
        self.dir().join(format!("{}.log", kind.name()))
    }

    /// Starts one `fowl server` process on host `s` and waits until it says it listens; tries
    /// again while its port is still taken (a restart), for a bounded time.
    fn start_server(&mut self, kind: ServerKind) -> Child {
        let log = self.server_log(kind);
        let deadline = Instant::now() + SERVER_START;
        let ns = self.ns(Host::S);
        loop {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            let from = file.metadata().unwrap().len();
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_fowl"), "server"]);
            match kind {
                ServerKind::Mailbox => cmd.args([
                    "--no-relay",
                    "--mailbox-listen",
                    &format!("{}:{MAILBOX_PORT}", Host::S.address()),
                ]),
                ServerKind::Relay => cmd.args([
                    "--no-mailbox",
                    "--relay-listen",
                    &format!("{}:{RELAY_PORT}", Host::S.address()),
                ]),
            };
            let mut child = cmd
                .env("RUST_LOG", rust_log())
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .expect("spawn ip netns exec fowl server");
            loop {
                if read_from(&log, from).contains(" listening on ") {
                    self.event(&format!("{} server started", kind.name()));
                    return child;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // its port may still be taken: try again
                }
                if Instant::now() >= deadline {
                    kill_and_reap(&mut child);
                    panic!(
                        "our {} server did not listen within {SERVER_START:?}; its log:\n{}",
                        kind.name(),
                        read_from(&log, 0)
                    );
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(
                Instant::now() < deadline,
                "our {} server could not start within {SERVER_START:?}; its log:\n{}",
                kind.name(),
                read_from(&log, 0)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the mailbox server (`fowl server --no-relay`) on 198.18.0.1:4000, fresh state.
    pub fn start_mailbox(&mut self) {
        assert!(self.mailbox.is_none(), "the mailbox server runs already");
        self.mailbox = Some(self.start_server(ServerKind::Mailbox));
    }

    /// Starts the transit relay (`fowl server --no-mailbox`) on 198.18.0.1:4001.
    pub fn start_relay(&mut self) {
        assert!(self.relay.is_none(), "the relay runs already");
        self.relay = Some(self.start_server(ServerKind::Relay));
    }

    /// Kills the mailbox server (as a crash would) and reaps it.
    pub fn stop_mailbox(&mut self) {
        let mut child = self.mailbox.take().expect("the mailbox server runs");
        kill_and_reap(&mut child);
        self.event("mailbox server killed");
    }

    /// Kills the relay (as a crash would) and reaps it.
    pub fn stop_relay(&mut self) {
        let mut child = self.relay.take().expect("the relay runs");
        kill_and_reap(&mut child);
        self.event("relay killed");
    }

    /// Takes the bridge port of `host` down: the host's `eth0` loses its carrier (its kernel sees
    /// the link go and drops what it sends; nothing reaches the other hosts, no RST comes).
    pub fn link_down(&self, host: Host) {
        self.ip(&format!(
            "-n {} link set {} down",
            self.bridge_ns(),
            host.veth()
        ));
        self.event(&format!("link of {} down", host.name()));
    }

    /// Brings the bridge port of `host` back up.
    pub fn link_up(&self, host: Host) {
        self.ip(&format!(
            "-n {} link set {} up",
            self.bridge_ns(),
            host.veth()
        ));
        self.event(&format!("link of {} up", host.name()));
    }

    /// Makes the bridge drop everything from and to `host` (its port disabled) while both ends
    /// of the link stay up: packets vanish and no host notices anything (unlike `link_down`,
    /// where the host's `eth0` loses its carrier and its kernel drops what it sends at once), as
    /// when a router in the middle of the path fails.
    pub fn blackhole(&self, host: Host) {
        self.bridge(&format!(
            "-n {} link set dev {} state 0",
            self.bridge_ns(),
            host.veth()
        ));
        self.event(&format!("path of {} blackholed", host.name()));
    }

    /// Lets the bridge forward for `host` again (after `blackhole`).
    pub fn restore(&self, host: Host) {
        self.bridge(&format!(
            "-n {} link set dev {} state 3",
            self.bridge_ns(),
            host.veth()
        ));
        self.event(&format!("path of {} restored", host.name()));
    }

    /// Replaces `host`'s address `old` with `new` (both in 198.18.0.0/24), as a DHCP renumbering
    /// would: connections bound to the old address are silently dead.
    pub fn replace_address(&self, host: Host, old: &str, new: &str) {
        let ns = self.ns(host);
        self.ip(&format!("-n {ns} addr del {old}/24 dev eth0"));
        self.ip(&format!("-n {ns} addr add {new}/24 dev eth0"));
        let name = host.name();
        self.event(&format!("address of {name} changed {old} -> {new}"));
    }

    /// Limits the traffic the bridge sends to `host` with a token bucket (`rate` as tc takes it,
    /// e.g. `16mbit`); packets beyond its queue are dropped, as on a slow link.
    pub fn rate_limit(&self, host: Host, rate: &str) {
        let (br, veth) = (self.bridge_ns(), host.veth());
        self.tc(&format!(
            "-n {br} qdisc add dev {veth} root tbf rate {rate} burst 64kb latency 100ms"
        ));
        self.event(&format!("traffic to {} limited to {rate}", host.name()));
    }

    /// Freezes a daemon (SIGSTOP): it neither reads nor answers, its sockets stay open.
    pub fn pause(&self, daemon: &Daemon) {
        daemon.check_pid();
        signal(daemon.pid, libc::SIGSTOP);
        self.event(&format!(
            "fowld of {} stopped (SIGSTOP)",
            daemon.host.name()
        ));
    }

    /// Lets a frozen daemon run on (SIGCONT).
    pub fn resume(&self, daemon: &Daemon) {
        signal(daemon.pid, libc::SIGCONT);
        self.event(&format!(
            "fowld of {} continued (SIGCONT)",
            daemon.host.name()
        ));
    }

    /// Writes the Python fowld wrapper into the log directory; returns its path. It fixes the
    /// Dilation side (`FOWL_LAB_SIDE`, to choose who leads), uses the lab relay
    /// (`FOWL_LAB_RELAY`; fowl hard-codes the public one) and, with `FOWL_LAB_NO_LISTEN`, offers no
    /// direct hints; everything else is the unchanged `fowld` entry point.
    fn python_wrapper(&self) -> PathBuf {
        let path = self.dir().join("lab_fowld.py");
        std::fs::write(
            &path,
            r#"import os
import sys

import wormhole._dilation.manager as manager
import wormhole.wormhole as ww

side = os.environ.get("FOWL_LAB_SIDE")
if side:
    manager.make_side = lambda: side

_dilate = ww._DeferredWormhole.dilate


def dilate(self, *args, **kwargs):
    if os.environ.get("FOWL_LAB_NO_LISTEN"):
        kwargs["no_listen"] = True
    kwargs["transit_relay_location"] = os.environ["FOWL_LAB_RELAY"]
    return _dilate(self, *args, **kwargs)


ww._DeferredWormhole.dilate = dilate

from fowl.cli import fowld  # noqa: E402

sys.exit(fowld())
"#,
        )
        .unwrap();
        path
    }

    /// Starts a fowld in `host`'s namespace on the lab's mailbox, its stderr in a log file. Ours
    /// gets the lab relay and `--status-events`; Python's the wrapper (`python_wrapper`).
    pub fn fowld(&self, host: Host, spec: &DaemonSpec) -> Daemon {
        let log = self.dir().join(format!("fowld-{}.log", host.name()));
        let stderr = File::create(&log).unwrap();
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(host)]);
        match spec.which {
            Impl::Rust => {
                cmd.arg(env!("CARGO_BIN_EXE_fowld"))
                    .args(["--relay", &relay_hint(), "--status-events"])
                    .env("RUST_LOG", rust_log())
                    .env("NO_COLOR", "1");
                if spec.no_listen {
                    cmd.arg("--no-listen");
                }
            }
            Impl::Python => {
                cmd.arg(super::venv().join("bin/python"))
                    .arg(self.python_wrapper())
                    .env("FOWL_LAB_RELAY", relay_hint());
                if spec.no_listen {
                    cmd.env("FOWL_LAB_NO_LISTEN", "1");
                }
                if let Some(side) = spec.python_side {
                    cmd.env("FOWL_LAB_SIDE", side);
                }
            }
        }
        cmd.args(["--mailbox", &mailbox_url()]).stderr(stderr);
        let fowld = Fowld::from_command(spec.which, cmd);
        let pid = fowld.pid() as i32;
        self.event(&format!(
            "{:?} fowld started in {} (pid {pid}{})",
            spec.which,
            host.name(),
            if spec.no_listen { ", no-listen" } else { "" }
        ));
        Daemon {
            host,
            which: spec.which,
            pid,
            log,
            fowld: Some(fowld),
            reaped: false,
            schema_error: None,
        }
    }

    /// Keeps the log directory (it is named on stderr).
    fn keep_logs(&mut self) {
        if let Some(dir) = self.dir.take() {
            let path = dir.keep();
            say(&format!(
                "LAB {}: logs kept in {}",
                self.scenario,
                path.display()
            ));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in [self.mailbox.take(), self.relay.take()]
            .iter_mut()
            .flatten()
        {
            kill_and_reap(child);
        }
        for ns in self.namespaces.drain(..).rev() {
            if let Err(e) = run_tool("ip", &format!("netns del {ns}")) {
                say(&format!("lab teardown: {e}"));
            }
        }
        if std::thread::panicking() || std::env::var_os("FOWL_LAB_KEEP_LOGS").is_some() {
            self.keep_logs();
        }
    }
}

/// The log filter for our processes: `RUST_LOG` if set, else our crate at debug.
fn rust_log() -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| "fowl=debug".into())
}

/// What fowld to start in a host.
#[derive(Debug, Clone)]
pub struct DaemonSpec {
    pub which: Impl,
    /// Offer no direct hints (relay only).
    pub no_listen: bool,
    /// Python only: its Dilation side (16 hex digits; the larger side leads).
    pub python_side: Option<&'static str>,
}

/// A fowld in a lab host. Dropping it kills it (SIGCONT first) and waits until it is dead.
pub struct Daemon {
    pub host: Host,
    pub which: Impl,
    /// Its pid: `ip netns exec` execs the daemon, so this is the daemon itself.
    pub pid: i32,
    /// Its stderr.
    pub log: PathBuf,
    fowld: Option<Fowld>,
    reaped: bool,
    /// The first line of ours that broke its schema.
    pub schema_error: Option<String>,
}

impl Daemon {
    /// The JSON-lines handle.
    pub fn f(&mut self) -> &mut Fowld {
        self.fowld.as_mut().expect("the daemon runs")
    }

    /// Panics unless the pid is the daemon itself (`ip netns exec` has exec'd).
    fn check_pid(&self) {
        let exe = std::fs::read_link(format!("/proc/{}/exe", self.pid)).unwrap_or_default();
        assert!(
            exe.file_name().is_some_and(|n| n != "ip"),
            "pid {} is {} and not the daemon",
            self.pid,
            exe.display()
        );
    }

    /// Reads the lines that arrived so far. A line that breaks its schema (a panic in `Fowld`)
    /// is noted in `schema_error` instead of ending the test at once, so that the figures and
    /// diagnostics still get out.
    pub fn refresh(&mut self) {
        let f = self.fowld.as_mut().expect("the daemon runs");
        while let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| f.poll())) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            self.schema_error.get_or_insert(message);
        }
    }

    /// How many lines of `kind` it printed so far.
    pub fn count(&mut self, kind: &str) -> usize {
        self.refresh();
        self.f().seen.iter().filter(|v| v["kind"] == kind).count()
    }

    /// Its `dilation-lost` lines so far.
    pub fn losses(&mut self) -> Vec<Value> {
        self.refresh();
        let seen = &self.f().seen;
        seen.iter()
            .filter(|v| v["kind"] == "dilation-lost")
            .cloned()
            .collect()
    }

    /// Its JSON lines so far other than byte counts, one a line.
    pub fn status_lines(&mut self) -> String {
        self.refresh();
        self.f()
            .seen
            .iter()
            .filter(|v| v["kind"] != "bytes-in" && v["kind"] != "bytes-out")
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Kills it and reaps it (bounded).
    pub async fn shutdown(&mut self) {
        self.refresh();
        if let Some(mut f) = self.fowld.take() {
            signal(self.pid, libc::SIGCONT);
            signal(self.pid, libc::SIGKILL);
            f.wait_exit(EXIT_LIMIT).await;
            self.fowld = Some(f);
            self.reaped = true;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.reaped {
            kill_and_wait_dead(self.pid);
        }
        // dropping the `Fowld` lets tokio reap a process not waited for above
        self.fowld.take();
    }
}

/// The stream's pseudo-random payload: xorshift64 words, little-endian, from a seed.
struct Payload {
    state: u64,
    word: [u8; 8],
    used: usize,
}

impl Payload {
    fn new(seed: u64) -> Payload {
        Payload {
            state: (0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d)) | 1,
            word: [0; 8],
            used: 8,
        }
    }

    /// Fills `buf` with the next bytes of the payload.
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            if self.used == 8 {
                let x = &mut self.state;
                *x ^= *x << 13;
                *x ^= *x >> 7;
                *x ^= *x << 17;
                self.word = x.to_le_bytes();
                self.used = 0;
            }
            *b = self.word[self.used];
            self.used += 1;
        }
    }
}

/// Paces a byte stream at `rate` bytes per second by the clock: the byte at offset n is due at
/// start + n / rate. After a stall (blocked writes, no data) at most `SLACK` of the lost time is
/// made up, so the stream never bursts for long.
struct Pacer {
    rate: f64,
    start: Instant,
    done: u64,
}

impl Pacer {
    const SLACK: Duration = Duration::from_millis(100);

    fn new(rate: u64) -> Pacer {
        Pacer {
            rate: rate as f64,
            start: Instant::now(),
            done: 0,
        }
    }

    /// Sleeps until the next byte is due (in slices, returning early once `stop` is set).
    fn wait(&mut self, stop: &AtomicBool) {
        let due = self.start + Duration::from_secs_f64(self.done as f64 / self.rate);
        let now = Instant::now();
        if now > due + Pacer::SLACK {
            self.start += now - due - Pacer::SLACK;
            return;
        }
        loop {
            let now = Instant::now();
            if now >= due || stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep((due - now).min(Duration::from_millis(50)));
        }
    }

    /// Counts `n` bytes as gone.
    fn record(&mut self, n: usize) {
        self.done += n as u64;
    }
}

/// What a paced stream sends and how its sink reads.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Seed of the payload.
    pub seed: u64,
    /// Sending rate, bytes per second.
    pub rate: u64,
    /// How long the sender writes; `None`: until the fault is gone, then `TAIL` more.
    pub send_for: Option<Duration>,
    /// Bytes per write.
    pub chunk: usize,
    /// A slow consumer: the sink reads at most this many bytes per second.
    pub consumer_rate: Option<u64>,
}

impl Default for StreamSpec {
    fn default() -> StreamSpec {
        StreamSpec {
            seed: 1,
            rate: 2_000_000,
            send_for: None,
            chunk: 16 * 1024,
            consumer_rate: None,
        }
    }
}

/// What the sink saw so far, shared with the test.
#[derive(Default)]
struct Progress {
    received: u64,
    /// When each read returned data.
    arrivals: Vec<Instant>,
    /// The sink has finished (end of stream, error or told to stop).
    done: bool,
}

/// The sink's final account.
#[derive(Debug, Default)]
struct SinkReport {
    received: u64,
    /// Offset of the first byte that differs from the payload.
    mismatch_at: Option<u64>,
    /// The stream ended cleanly (EOF).
    eof: bool,
    error: Option<String>,
}

/// The sender's final account.
#[derive(Debug, Default)]
struct SendReport {
    sent: u64,
    /// The sender saw bytes coming back (nothing should).
    got_back: u64,
    error: Option<String>,
}

/// One paced stream: a sink thread (listening in one namespace) and a sender thread (connecting
/// in another). Dropping it stops both threads and waits for them (bounded by their socket
/// timeouts).
pub struct Stream {
    spec: StreamSpec,
    pub sink_port: u16,
    /// When the sender stops writing.
    end: Arc<Mutex<Instant>>,
    stop: Arc<AtomicBool>,
    progress: Arc<Mutex<Progress>>,
    sent: Arc<AtomicU64>,
    sink: Option<JoinHandle<SinkReport>>,
    sender: Option<JoinHandle<SendReport>>,
}

impl Stream {
    /// Starts the sink on 127.0.0.1 (a free port) in namespace `ns`.
    pub fn sink(ns: &str, spec: StreamSpec) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Mutex::new(Progress::default()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let sink = {
            let (spec, stop, progress) = (spec.clone(), stop.clone(), progress.clone());
            spawn_in(ns, "lab sink", move || {
                let listener = match TcpListener::bind("127.0.0.1:0") {
                    Ok(l) => l,
                    Err(e) => {
                        progress.lock().unwrap().done = true;
                        return SinkReport {
                            error: Some(format!("bind: {e}")),
                            ..SinkReport::default()
                        };
                    }
                };
                let _ = port_tx.send(listener.local_addr().unwrap().port());
                let report = sink_thread(listener, &spec, &stop, &progress);
                progress.lock().unwrap().done = true;
                report
            })
        };
        let sink_port = port_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the sink listens");
        let send_for = spec.send_for.unwrap_or(Duration::from_secs(600));
        Stream {
            spec,
            sink_port,
            end: Arc::new(Mutex::new(Instant::now() + send_for)),
            stop,
            progress,
            sent: Arc::new(AtomicU64::new(0)),
            sink: Some(sink),
            sender: None,
        }
    }

    /// Starts the sender: it connects to 127.0.0.1:`port` in namespace `ns` and writes.
    pub fn start_sender(&mut self, ns: &str, port: u16) {
        let (spec, stop, sent) = (self.spec.clone(), self.stop.clone(), self.sent.clone());
        let end = self.end.clone();
        if let Some(d) = spec.send_for {
            *end.lock().unwrap() = Instant::now() + d;
        }
        self.sender = Some(spawn_in(ns, "lab sender", move || {
            sender_thread(port, &spec, &end, &stop, &sent)
        }));
    }

    /// Makes the sender stop writing at `when`.
    pub fn send_until(&self, when: Instant) {
        *self.end.lock().unwrap() = when;
    }

    /// Bytes the sink got so far, when the last came, whether it finished.
    fn snapshot(&self) -> (u64, Option<Instant>, bool) {
        let p = self.progress.lock().unwrap();
        (p.received, p.arrivals.last().copied(), p.done)
    }

    /// Stops both threads and returns their accounts and the arrival times.
    fn stop(&mut self) -> (SendReport, SinkReport, Vec<Instant>) {
        self.stop.store(true, Ordering::Relaxed);
        let send = match self.sender.take() {
            Some(h) => h.join().expect("the sender thread panicked"),
            None => SendReport {
                error: Some("never started".into()),
                ..SendReport::default()
            },
        };
        let sink = match self.sink.take() {
            Some(h) => h.join().expect("the sink thread panicked"),
            None => SinkReport::default(),
        };
        let arrivals = std::mem::take(&mut self.progress.lock().unwrap().arrivals);
        (send, sink, arrivals)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.sender.take() {
            let _ = h.join();
        }
        if let Some(h) = self.sink.take() {
            let _ = h.join();
        }
    }
}

/// The sink: accepts one connection, reads it to its end (at most `consumer_rate`), checks every
/// byte against the payload and notes when data arrived.
fn sink_thread(
    listener: TcpListener,
    spec: &StreamSpec,
    stop: &AtomicBool,
    progress: &Mutex<Progress>,
) -> SinkReport {
    let mut report = SinkReport::default();
    listener.set_nonblocking(true).unwrap();
    let mut conn = loop {
        match listener.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if stop.load(Ordering::Relaxed) {
                    report.error = Some("no connection came".into());
                    return report;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                report.error = Some(format!("accept: {e}"));
                return report;
            }
        }
    };
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(SOCKET_POLL)).unwrap();
    let mut payload = Payload::new(spec.seed);
    let mut pacer = spec.consumer_rate.map(Pacer::new);
    let mut buf = vec![0u8; 64 * 1024];
    let mut want = vec![0u8; buf.len()];
    // a slow consumer reads in small steps, so that its pace holds within each
    let step = if spec.consumer_rate.is_some() {
        16 * 1024
    } else {
        buf.len()
    };
    while !stop.load(Ordering::Relaxed) {
        if let Some(p) = pacer.as_mut() {
            p.wait(stop);
        }
        match conn.read(&mut buf[..step]) {
            Ok(0) => {
                report.eof = true;
                break;
            }
            Ok(n) => {
                let now = Instant::now();
                payload.fill(&mut want[..n]);
                if report.mismatch_at.is_none() && buf[..n] != want[..n] {
                    let i = (0..n).find(|&i| buf[i] != want[i]).unwrap_or(0);
                    report.mismatch_at = Some(report.received + i as u64);
                }
                report.received += n as u64;
                if let Some(p) = pacer.as_mut() {
                    p.record(n);
                }
                let mut p = progress.lock().unwrap();
                p.received = report.received;
                p.arrivals.push(now);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                report.error = Some(format!("read: {e}"));
                break;
            }
        }
    }
    report
}

/// The sender: connects, writes the payload paced at `rate` until `end`, then shuts its sending
/// side down and keeps the connection until the far end closes it (or until told to stop).
fn sender_thread(
    port: u16,
    spec: &StreamSpec,
    end: &Mutex<Instant>,
    stop: &AtomicBool,
    sent: &AtomicU64,
) -> SendReport {
    let mut report = SendReport::default();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut conn = match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
        Ok(c) => c,
        Err(e) => {
            report.error = Some(format!("connect {addr}: {e}"));
            return report;
        }
    };
    conn.set_nodelay(true).unwrap();
    conn.set_write_timeout(Some(SOCKET_POLL)).unwrap();
    let mut payload = Payload::new(spec.seed);
    let mut pacer = Pacer::new(spec.rate);
    let mut buf = vec![0u8; spec.chunk];
    let over = || stop.load(Ordering::Relaxed) || Instant::now() >= *end.lock().unwrap();
    'send: while !over() {
        pacer.wait(stop);
        payload.fill(&mut buf);
        let mut off = 0;
        while off < buf.len() {
            if over() {
                break 'send;
            }
            match conn.write(&buf[off..]) {
                Ok(0) => {
                    report.error = Some("write: the connection is closed".into());
                    break 'send;
                }
                Ok(n) => {
                    off += n;
                    report.sent += n as u64;
                    sent.store(report.sent, Ordering::Relaxed);
                    pacer.record(n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    report.error = Some(format!("write after {} bytes: {e}", report.sent));
                    break 'send;
                }
            }
        }
    }
    let _ = conn.shutdown(Shutdown::Write);
    conn.set_read_timeout(Some(SOCKET_POLL)).unwrap();
    let mut back = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match conn.read(&mut back) {
            Ok(0) => break,
            Ok(n) => report.got_back += n as u64,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
    report
}

/// Our fowld's Dilation role against Python's (the larger side leads; the Python side is fixed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
}

/// Which daemons a session runs: ours in `a` and ours or Python's in `b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peers {
    RustRust,
    /// Python fowld in `b`, our fowld in `a` with this role.
    RustPython(Role),
}

impl Peers {
    /// The `impl=` figure.
    fn label(self) -> &'static str {
        match self {
            Peers::RustRust => "rust-rust",
            Peers::RustPython(Role::Leader) => "rust-python/rust-leader",
            Peers::RustPython(Role::Follower) => "rust-python/rust-follower",
        }
    }
}

/// What a session must show at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The stream moves again within `RESUME_LIMIT` of the fault's end and completes intact.
    Recovers,
    /// The stream completes intact and our daemons never reconnect.
    NoReconnect,
}

/// One scenario's figures.
#[derive(Debug)]
pub struct Outcome {
    pub outage: Duration,
    pub resume: Option<Duration>,
    pub longest_gap: Duration,
    pub intact: bool,
    pub reconnects: usize,
    /// How our daemons declared the loss: `reason` (`silent` with the seconds of silence).
    pub detected: Vec<String>,
    pub sent: u64,
    pub received: u64,
}

/// A lab with servers, two paired daemons (`a` and `b`) and, once started, a stream from `a` to
/// `b`. Fields drop in order: the stream's threads, the daemons, then the lab.
pub struct Session {
    stream: Option<Stream>,
    pub a: Daemon,
    pub b: Daemon,
    pub lab: Lab,
    peers: Peers,
    fault_began: Option<Instant>,
    fault_ended: Option<Instant>,
    stream_started: Option<Instant>,
}

impl Session {
    /// Builds the lab, starts the servers and the daemons and pairs them. `None` where the lab
    /// cannot run (it said why). `relay_only`: no direct hints on either side.
    pub async fn start(scenario: &str, peers: Peers, relay_only: bool) -> Option<Session> {
        let mut lab = Lab::new(scenario)?;
        lab.start_servers();
        let ours = DaemonSpec {
            which: Impl::Rust,
            no_listen: relay_only,
            python_side: None,
        };
        let b_spec = match peers {
            Peers::RustRust => ours.clone(),
            Peers::RustPython(role) => DaemonSpec {
                which: Impl::Python,
                no_listen: relay_only,
                python_side: Some(match role {
                    Role::Leader => "0000000000000000",
                    Role::Follower => "ffffffffffffffff",
                }),
            },
        };
        let mut a = lab.fowld(Host::A, &ours);
        let mut b = lab.fowld(Host::B, &b_spec);
        if let Err(panic) = AssertUnwindSafe(pair(a.f(), b.f())).catch_unwind().await {
            eprintln!("{}", diagnostics(&lab, &mut a, &mut b));
            std::panic::resume_unwind(panic);
        }
        lab.event("daemons paired");
        Some(Session {
            stream: None,
            a,
            b,
            lab,
            peers,
            fault_began: None,
            fault_ended: None,
            stream_started: None,
        })
    }

    /// Sets up the forward (`local` on `a`, `remote` on `b` to the sink) and starts the stream;
    /// returns once `min_bytes` reached the sink (the stream flows).
    pub async fn start_stream(&mut self, spec: StreamSpec, min_bytes: u64) {
        let mut stream = Stream::sink(&self.lab.ns(Host::B), spec);
        let sink_port = stream.sink_port;
        let (a, b) = (self.a.f(), self.b.f());
        let forward = async {
            a.send_local(json!({"kind": "local", "name": "lab"})).await;
            b.send(json!({"kind": "remote", "name": "lab", "local_connect_port": sink_port}))
                .await;
            b.expect("awaiting-connect").await;
            a.expect("listening").await["listening_port"]
                .as_u64()
                .expect("a listening port") as u16
        };
        let port = match AssertUnwindSafe(forward).catch_unwind().await {
            Ok(port) => port,
            Err(panic) => {
                eprintln!("{}", diagnostics(&self.lab, &mut self.a, &mut self.b));
                std::panic::resume_unwind(panic);
            }
        };
        self.lab.event(&format!(
            "forward ready: a listens on {port}, b connects to the sink's {sink_port}"
        ));
        stream.start_sender(&self.lab.ns(Host::A), port);
        self.stream_started = Some(Instant::now());
        self.stream = Some(stream);
        self.lab.event("stream started");
        let deadline = Instant::now() + FLOW_START;
        loop {
            let (received, _, done) = self.stream().snapshot();
            if received >= min_bytes {
                break;
            }
            if done || Instant::now() >= deadline {
                self.fail(&format!(
                    "the stream did not flow: {received} bytes within {FLOW_START:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.lab
            .event(&format!("stream flowing ({min_bytes} bytes in)"));
    }

    fn stream(&self) -> &Stream {
        self.stream.as_ref().expect("the stream started")
    }

    /// Notes that the fault begins now.
    pub fn fault_begins(&mut self) {
        self.fault_began = Some(Instant::now());
    }

    /// Notes that the fault is gone now; the sender goes on for `TAIL` more.
    pub fn fault_ends(&mut self) {
        let now = Instant::now();
        self.fault_ended = Some(now);
        if self.stream().spec.send_for.is_none() {
            self.stream().send_until(now + TAIL);
        }
    }

    /// Waits `d` while the fault holds.
    pub async fn hold(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    /// Waits until the stream completes (or stalls for `RESUME_LIMIT` after the fault's end),
    /// prints the figures line (also appended to `$FOWL_LAB_REPORT`), checks `expect`, and
    /// stops everything. On failure it prints the timeline and the daemons' logs, then panics.
    pub async fn finish(mut self, expect: Expect) -> Outcome {
        if self.fault_ended.is_none() && self.stream().spec.send_for.is_none() {
            self.stream().send_until(Instant::now() + TAIL);
        }
        let stall_from = self
            .fault_ended
            .or(self.stream_started)
            .unwrap_or_else(Instant::now);
        let mut problem = None;
        loop {
            let (received, last, done) = self.stream().snapshot();
            if done {
                break;
            }
            let now = Instant::now();
            let quiet_since = last.map_or(stall_from, |l| l.max(stall_from));
            let sender_end = *self.stream().end.lock().unwrap();
            if now.duration_since(quiet_since) > RESUME_LIMIT {
                problem = Some(format!(
                    "the stream stalled: nothing for {RESUME_LIMIT:?} (since +{:.1}s), {received} of {} bytes in",
                    quiet_since.duration_since(self.lab.started).as_secs_f64(),
                    self.stream().sent.load(Ordering::Relaxed)
                ));
                break;
            }
            if now > sender_end + COMPLETE_LIMIT {
                problem = Some(format!(
                    "the stream did not complete within {COMPLETE_LIMIT:?} of the sender's end"
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (send, sink, arrivals) = self.stream.as_mut().unwrap().stop();
        self.lab.event(&format!(
            "stream over: sent {} received {} eof {} mismatch {:?} sink error {:?} sender error {:?} got back {}",
            send.sent, sink.received, sink.eof, sink.mismatch_at, sink.error, send.error, send.got_back
        ));
        let intact = sink.eof
            && sink.error.is_none()
            && sink.mismatch_at.is_none()
            && send.error.is_none()
            && send.got_back == 0
            && sink.received == send.sent;
        let longest_gap = arrivals
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        // the stall the fault caused: the longest silence ending after the fault began (bytes
        // already on their way may still arrive after it began, or after it ended, as with a
        // renumbered host). Resume is from the fault's end to the first byte after that silence:
        // 0 if the stream moved again before the fault fully ended, none if it never did.
        let resume = self
            .fault_began
            .zip(self.fault_ended)
            .filter(|&(_, ended)| arrivals.last().is_some_and(|&last| last > ended))
            .and_then(|(began, ended)| {
                arrivals
                    .windows(2)
                    .filter(|w| w[1] > began)
                    .max_by_key(|w| w[1] - w[0])
                    .map(|w| w[1].saturating_duration_since(ended))
            });
        let outage = match (self.fault_began, self.fault_ended) {
            (Some(b), Some(e)) => e - b,
            _ => Duration::ZERO,
        };
        // reconnections: connections after the first, as our daemons report them
        let mut reconnects = 0;
        let mut status = Vec::new();
        let mut detected = Vec::new();
        for d in [&mut self.a, &mut self.b] {
            if d.which == Impl::Rust {
                if let Some(lost) = d.losses().first() {
                    let reason = lost["reason"].as_str().unwrap_or("?");
                    detected.push(match lost["silent_seconds"].as_f64() {
                        Some(s) => format!("{}:{reason}:{s:.1}", d.host.name()),
                        None => format!("{}:{reason}", d.host.name()),
                    });
                }
                let connected = d.count("dilation-connected");
                reconnects = reconnects.max(connected.saturating_sub(1));
                status.push(format!(
                    "{}: {connected} dilation-connected, {} dilation-lost, {} dilation-reconnecting",
                    d.host.name(),
                    d.count("dilation-lost"),
                    d.count("dilation-reconnecting")
                ));
                if let Some(e) = &d.schema_error {
                    problem.get_or_insert(format!(
                        "fowld of {} printed a line that breaks its schema: {e}",
                        d.host.name()
                    ));
                }
            }
        }
        self.lab
            .event(&format!("our daemons: {}", status.join("; ")));
        let outcome = Outcome {
            outage,
            resume,
            longest_gap,
            intact,
            reconnects,
            detected: detected.clone(),
            sent: send.sent,
            received: sink.received,
        };
        let line = format!(
            "LAB {} impl={} outage={:.1} resume={} longest_gap={:.2} intact={} reconnects={} detected={} sent={} received={}",
            self.lab.scenario,
            self.peers.label(),
            outage.as_secs_f64(),
            resume.map_or("-".to_string(), |r| format!("{:.2}", r.as_secs_f64())),
            longest_gap.as_secs_f64(),
            intact,
            reconnects,
            if detected.is_empty() { "-".to_string() } else { detected.join(",") },
            send.sent,
            sink.received
        );
        say(&line);
        if let Some(path) = std::env::var_os("FOWL_LAB_REPORT") {
            if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
                let _ = f.write_all(format!("{line}\n").as_bytes());
            }
        }
        if problem.is_none() && !intact {
            problem = Some("the stream is not intact".into());
        }
        if problem.is_none() && expect == Expect::Recovers {
            match resume {
                Some(r) if r <= RESUME_LIMIT => {}
                _ => {
                    problem = Some(format!(
                        "the stream did not resume within {RESUME_LIMIT:?} of the fault's end ({resume:?})"
                    ))
                }
            }
        }
        if problem.is_none() && expect == Expect::NoReconnect {
            let calm = [&mut self.a, &mut self.b]
                .into_iter()
                .filter(|d| d.which == Impl::Rust)
                .all(|d| {
                    d.count("dilation-connected") == 1
                        && d.count("dilation-lost") == 0
                        && d.count("dilation-reconnecting") == 0
                });
            if !calm {
                problem = Some(format!(
                    "our daemons lost their connection: {}",
                    status.join("; ")
                ));
            }
        }
        if let Some(problem) = problem {
            self.fail(&problem);
        }
        self.a.shutdown().await;
        self.b.shutdown().await;
        outcome
    }

    /// Prints the diagnostics and panics with `problem`.
    fn fail(&mut self, problem: &str) -> ! {
        let text = diagnostics(&self.lab, &mut self.a, &mut self.b);
        eprintln!("{text}");
        panic!("LAB {}: {problem}", self.lab.scenario);
    }
}

/// The timeline, each daemon's status lines and the tails of every log.
fn diagnostics(lab: &Lab, a: &mut Daemon, b: &mut Daemon) -> String {
    let mut text = format!("==== lab {} timeline\n{}\n", lab.scenario, lab.timeline());
    for d in [a, b] {
        let status = d.status_lines();
        text += &format!(
            "==== {:?} fowld in {} (pid {}): JSON lines other than byte counts\n{status}\n\
             ==== its stderr (last 80 lines)\n{}\n",
            d.which,
            d.host.name(),
            d.pid,
            tail(&d.log, 80)
        );
    }
    for kind in [ServerKind::Mailbox, ServerKind::Relay] {
        text += &format!(
            "==== {} server log (last 30 lines)\n{}\n",
            kind.name(),
            tail(&lab.server_log(kind), 30)
        );
    }
    text
}
