//! Privacy mode (`--proxy`): a real SOCKS5 server (pproxy, from the pinned Python stack) between
//! our daemons and the servers. Asserted from the proxy's side (its log names every connection
//! it carried: the mailbox and the relay, by name with socks5h) and from the kernel's (every
//! `connect` fowld made, traced with strace: the proxy and nothing else), with a Python fowld
//! peer and with `fowl invite` on the other side.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fowld::{echo_server, pair, python_relay_only, through, Fowld, Impl};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// pproxy serving SOCKS5 on a free loopback port, logging each connection it carries.
struct Socks5Server {
    _child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Socks5Server {
    async fn start() -> Socks5Server {
        let mut child = Command::new(common::venv().join("bin/pproxy"))
            .args(["-l", "socks5://127.0.0.1:0", "-v"])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start pproxy (tests/python/requirements.txt)");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        let mut port_tx = Some(port_tx);
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let lines = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                // "Serving on ipv? 127.0.0.1:41079 by socks5"
                if let Some(rest) = line.strip_prefix("Serving on ") {
                    let port = rest
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("127.0.0.1:"))
                        .and_then(|p| p.parse::<u16>().ok());
                    if let (Some(port), Some(tx)) = (port, port_tx.take()) {
                        let _ = tx.send(port);
                    }
                }
                lines.lock().unwrap().push(line);
            }
        });
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let lines = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                lines.lock().unwrap().push(line);
            }
        });
        let port = tokio::time::timeout(Duration::from_secs(30), port_rx)
            .await
            .expect("pproxy listens within 30 s")
            .expect("pproxy printed its port");
        Socks5Server {
            _child: child,
            port,
            log,
        }
    }

    fn url(&self) -> String {
        format!("socks5h://127.0.0.1:{}", self.port)
    }

    /// The targets of the connections it carried ("socks5 127.0.0.1:54994 -> localhost:4000").
    fn targets(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix("socks5 "))
            .filter_map(|l| l.split_once(" -> ").map(|(_, to)| to.trim().to_string()))
            .collect()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

/// Our fowld under `strace -f -e trace=connect`: the trace lists every connect it made.
struct Traced {
    fowld: Fowld,
    trace: PathBuf,
    _dir: tempfile::TempDir,
}

impl Traced {
    fn spawn(mailbox: &str, args: &[&str]) -> Traced {
        let dir = tempfile::tempdir().unwrap();
        let trace = dir.path().join("connects");
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-qq", "--seccomp-bpf", "-e", "trace=connect", "-o"])
            .arg(&trace)
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_fowld"))
            .args(args)
            .args(["--mailbox", mailbox, "--status-events"]);
        Traced {
            fowld: Fowld::from_command(Impl::Rust, cmd),
            trace,
            _dir: dir,
        }
    }

    /// Every IP address and port fowld called `connect` for (successful or not).
    fn connects(&self) -> Vec<String> {
        connects_in(&self.trace)
    }
}

impl Drop for Traced {
    /// A traced process outlives a killed strace: fowld (strace's child) is killed first.
    fn drop(&mut self) {
        let Some(strace) = self.fowld.try_pid() else {
            return;
        };
        let children = std::fs::read_to_string(format!("/proc/{strace}/task/{strace}/children"))
            .unwrap_or_default();
        for pid in children.split_whitespace().filter_map(|p| p.parse().ok()) {
            // SAFETY: kill(2) on a process id we read as strace's child; no memory involved.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// `ADDRESS:PORT` of every AF_INET/AF_INET6 connect in an strace output.
fn connects_in(trace: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(trace).expect("strace wrote its trace");
    let between = |line: &str, start: &str, end: &str| -> Option<String> {
        let from = line.find(start)? + start.len();
        let len = line[from..].find(end)?;
        Some(line[from..from + len].to_string())
    };
    text.lines()
        .filter(|l| l.contains("connect("))
        .filter_map(|l| {
            if l.contains("AF_INET6") {
                let port = between(l, "sin6_port=htons(", ")")?;
                let addr = between(l, "inet_pton(AF_INET6, \"", "\"")?;
                Some(format!("[{addr}]:{port}"))
            } else if l.contains("AF_INET") {
                let port = between(l, "sin_port=htons(", ")")?;
                let addr = between(l, "inet_addr(\"", "\"")?;
                Some(format!("{addr}:{port}"))
            } else {
                None
            }
        })
        .collect()
}

struct Servers {
    mailbox: fowl::server::mailbox::MailboxServerHandle,
    relay: fowl::server::relay::RelayServerHandle,
}

impl Servers {
    async fn start() -> Servers {
        let listener = || tokio::net::TcpListener::bind("127.0.0.1:0");
        Servers {
            mailbox: fowl::server::mailbox::serve(listener().await.unwrap(), Default::default())
                .unwrap(),
            relay: fowl::server::relay::serve(listener().await.unwrap(), Default::default())
                .unwrap(),
        }
    }

    /// By name, so that socks5h hands the proxy a name to resolve.
    fn mailbox_url(&self) -> String {
        format!("ws://localhost:{}/v1", self.mailbox.addr.port())
    }

    fn relay_hint(&self) -> String {
        format!("tcp:localhost:{}", self.relay.addr.port())
    }
}

/// The proxy carried only connections to the mailbox and the relay, at least one of each.
fn assert_only_servers_through(proxy: &Socks5Server, servers: &Servers, at_least: usize) {
    let mailbox = format!("localhost:{}", servers.mailbox.addr.port());
    let relay = format!("localhost:{}", servers.relay.addr.port());
    let targets = proxy.targets();
    assert!(
        targets.iter().filter(|t| **t == mailbox).count() >= at_least
            && targets.iter().filter(|t| **t == relay).count() >= at_least,
        "the proxy carried {at_least}+ mailbox and relay connections:\n{}",
        proxy.log()
    );
    assert!(
        targets.iter().all(|t| *t == mailbox || *t == relay),
        "the proxy carried nothing but the mailbox and the relay:\n{}",
        proxy.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_socks5_proxy_fowld_reaches_the_mailbox_and_relay_only_through_it_and_forwards_with_python(
) {
    common::require_loopback_only();
    let servers = Servers::start().await;
    let proxy = Socks5Server::start().await;
    let mut ours = Traced::spawn(
        &servers.mailbox_url(),
        &["--relay", &servers.relay_hint(), "--proxy", &proxy.url()],
    );
    tokio::time::timeout(Duration::from_secs(90), async {
        let welcome = ours.fowld.expect("welcome").await;
        assert_eq!(welcome["proxy"], proxy.url().as_str(), "{welcome}");
        let python_args = python_relay_only(&servers.relay_hint());
        let args: Vec<&str> = python_args.iter().map(String::as_str).collect();
        let mut python = Fowld::spawn(Impl::Python, &servers.mailbox_url(), &args);
        pair(&mut ours.fowld, &mut python).await;
        let connected = ours.fowld.expect("dilation-connected").await;
        assert_eq!(connected["path"], "relay", "{connected}");
        // a service at the Python side, its listener at ours
        let echo = echo_server().await;
        ours.fowld
            .send_local(json!({"kind": "local", "name": "svc"}))
            .await;
        python
            .send(json!({"kind": "remote", "name": "svc", "local_connect_port": echo}))
            .await;
        python.expect("awaiting-connect").await;
        let port = ours.fowld.expect("listening").await["listening_port"]
            .as_u64()
            .unwrap() as u16;
        let data = common::dilation::pattern(256 << 10, 7);
        assert!(through(port, &data).await == data, "echoed through");
        ours.fowld.send(json!({"kind": "session-close"})).await;
        ours.fowld.expect("closed").await;
        assert_eq!(ours.fowld.wait_exit(Duration::from_secs(30)).await, Some(0));
        drop(python);
    })
    .await
    .expect("the session within 90 s");
    let connects = ours.connects();
    let via = format!("127.0.0.1:{}", proxy.port);
    assert!(
        connects.len() >= 2 && connects.iter().all(|c| *c == via),
        "fowld connected to the proxy ({via}) and nowhere else: {connects:?}"
    );
    assert_only_servers_through(&proxy, &servers, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fowl_invite_through_a_proxy_says_so_and_two_proxied_peers_meet_on_the_relay() {
    common::require_loopback_only();
    let servers = Servers::start().await;
    let proxy = Socks5Server::start().await;
    let echo = echo_server().await;
    let mut invite = Command::new(env!("CARGO_BIN_EXE_fowl"))
        .args(["invite", "--mailbox", &servers.mailbox_url()])
        .args(["--relay", &servers.relay_hint(), "--proxy", &proxy.url()])
        .args(["--remote", &format!("svc:{echo}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(invite.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(90), async {
        let code = loop {
            let line = lines.next_line().await.unwrap().expect("fowl invite runs");
            seen.push(line.clone());
            if let Some(code) = line.strip_prefix("code: ") {
                break code.to_string();
            }
        };
        let mut accept = Traced::spawn(
            &servers.mailbox_url(),
            &["--relay", &servers.relay_hint(), "--proxy", &proxy.url()],
        );
        accept
            .fowld
            .send(json!({"kind": "set-code", "code": code}))
            .await;
        accept
            .fowld
            .send(json!({"kind": "local", "name": "svc"}))
            .await;
        let connected = accept.fowld.expect("dilation-connected").await;
        assert_eq!(connected["path"], "relay", "{connected}");
        let port = accept.fowld.expect("listening").await["listening_port"]
            .as_u64()
            .unwrap() as u16;
        assert_eq!(through(port, b"private").await, b"private");
        accept.fowld.send(json!({"kind": "session-close"})).await;
        accept.fowld.expect("closed").await;
        assert_eq!(
            accept.fowld.wait_exit(Duration::from_secs(30)).await,
            Some(0)
        );
        let via = format!("127.0.0.1:{}", proxy.port);
        let connects = accept.connects();
        assert!(
            connects.len() >= 2 && connects.iter().all(|c| *c == via),
            "fowld connected to the proxy ({via}) and nowhere else: {connects:?}"
        );
        // the inviter sees the mode, then its peer leaving
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the session within 90 s; fowl printed {seen:?}"));
    assert!(
        seen.iter().any(|l| l.starts_with(
            "privacy mode: every connection goes through the proxy socks5h://127.0.0.1:"
        )),
        "fowl invite tells the user: {seen:?}"
    );
    // two mailbox and two relay connections at least: both sides went through the proxy
    assert_only_servers_through(&proxy, &servers, 2);
}
