//! `fowl invite` / `fowl accept` end to end, between two peers of this project on our in-process
//! mailbox server: a TCP forward over ::1, a unix socket forward, TCP half-close through the
//! forward, and Ctrl-C closing both (plain output); completion scripts and the manual page; and on
//! a terminal (tmux, reading the screen) the code prompt's completion and the live view.

mod common;

use std::time::Duration;

use common::cli::Fowl;
use common::dilation::{pattern, sha};
use fowl::server::mailbox::{serve, MailboxConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Echoes every connection on a unix socket.
fn unix_echo(path: &std::path::Path) {
    let l = tokio::net::UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
}

/// Reads a whole request until EOF, then answers with its length: needs a half-close to work.
async fn count_until_eof() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut all = Vec::new();
                s.read_to_end(&mut all).await.unwrap();
                s.write_all(format!("got {}", all.len()).as_bytes())
                    .await
                    .unwrap();
            });
        }
    });
    port
}

#[tokio::test]
async fn invite_and_accept_forward_ipv6_unix_and_half_closed_streams() {
    common::require_loopback_only();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mb = serve(listener, MailboxConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        // services on the inviting side: an echo on ::1, a unix echo, a half-close counter
        let echo6_port = common::fowld::echo_server_at("[::1]:0").await;
        let service_sock = dir.path().join("service.sock");
        unix_echo(&service_sock);
        let counter = count_until_eof().await;
        let net = |v: &mut Vec<String>| {
            v.extend(["--mailbox".into(), mb.url(), "--no-relay".into()]);
        };
        let mut args = vec![
            "invite".to_string(),
            "-R".into(),
            format!("v6:{echo6_port}:address=[::1]"),
            "-R".into(),
            format!("sock:{}", service_sock.display()),
            "--service".into(),
            format!("count:{counter}"),
        ];
        net(&mut args);
        let mut inviter = Fowl::spawn(&args, &[]);
        let code = inviter.line("code: ").await["code: ".len()..].to_string();

        let v6_port = common::port_to_listen_on("::1");
        let client_sock = dir.path().join("client.sock");
        // as Python fowl's users type it: the code first, no `accept`
        let mut args = vec![
            code,
            "-L".into(),
            format!("v6:{v6_port}:bind=[::1]"),
            "-L".into(),
            format!("sock:{}", client_sock.display()),
            "--client".into(),
            "count".into(),
        ];
        net(&mut args);
        let mut acceptor = Fowl::spawn(&args, &[]);
        let v1 = inviter.line("peer connected; verifier: ").await;
        let v2 = acceptor.line("peer connected; verifier: ").await;
        assert_eq!(v1, v2);
        acceptor.line("v6: listening on port").await;
        acceptor.line("sock: listening on").await;
        let count_line = acceptor.line("count: listening on port ").await;
        // the service side takes streams once it has each listener's answer
        for name in ["v6", "sock", "count"] {
            inviter.line(&format!("{name}: the peer listens")).await;
        }
        let count_port: u16 = count_line["count: listening on port ".len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();

        // ::1
        let data = pattern(1 << 20, 1);
        let mut s = tokio::net::TcpStream::connect(("::1", v6_port))
            .await
            .unwrap();
        s.write_all(&data).await.unwrap();
        let mut got = vec![0u8; data.len()];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(sha(&got), sha(&data));
        drop(s);
        // unix socket
        let mut s = tokio::net::UnixStream::connect(&client_sock).await.unwrap();
        s.write_all(b"through a unix socket").await.unwrap();
        let mut got = [0u8; 21];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"through a unix socket");
        drop(s);
        // half-close: the request ends with EOF, the answer still comes back
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", count_port))
            .await
            .unwrap();
        s.write_all(&[7u8; 5000]).await.unwrap();
        s.shutdown().await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        assert_eq!(answer, "got 5000");

        // Ctrl-C on one side closes both
        let _ = std::process::Command::new("kill")
            .args(["-INT", &inviter.child.id().unwrap().to_string()])
            .status();
        assert_eq!(inviter.line("closed: ").await, "closed: happy");
        assert_eq!(acceptor.line("closed: ").await, "closed: happy");
        assert_eq!(inviter.wait().await, Some(0));
        assert_eq!(acceptor.wait().await, Some(0));
        assert!(
            !client_sock.exists(),
            "our unix listener's socket file is removed"
        );
    })
    .await
    .unwrap();
}

/// `fowl completions bash` gives a script that bash really completes with (subcommands and their
/// options); zsh and fish scripts and the manual page name the subcommands too.
#[test]
fn completion_scripts_complete_and_the_manual_page_renders() {
    let fowl = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fowl"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "fowl {args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("fowl.bash");
    std::fs::write(&script, fowl(&["completions", "bash"])).unwrap();
    let complete = |words: &str| {
        let program = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _fowl fowl \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; echo \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &program])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert_eq!(complete("fowl inv"), "invite");
    assert_eq!(complete("fowl ac"), "accept");
    assert_eq!(complete("fowl invite --allow"), "--allow-peer-port");
    assert_eq!(complete("fowl accept --no-l"), "--no-listen");
    for shell in ["zsh", "fish"] {
        let s = fowl(&["completions", shell]);
        assert!(
            s.contains("invite") && s.contains("allow-peer-port"),
            "{shell}"
        );
    }
    let man = fowl(&["man"]);
    assert!(man.contains(".TH fowl 1"), "{man}");
    assert!(man.contains("invite") && man.contains("accept") && man.contains("server"));
}

/// A tmux server of its own (`-L`), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (bounded) until the pane shows `text`; returns the pane.
    fn until(&self, text: &str) -> String {
        let mut pane = String::new();
        for _ in 0..200 {
            pane = self.run(&["capture-pane", "-p", "-t", "fowl"]);
            if pane.contains(text) {
                return pane;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the terminal never showed {text:?}:\n{pane}");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// On a terminal, `fowl accept` asks for the code: Tab completes the common prefix as readline
/// does, and Enter on an unfinished code keeps the line open instead of spending the code.
#[tokio::test]
async fn the_code_prompt_completes_like_readline_and_refuses_an_unfinished_code() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mb = serve(listener, MailboxConfig::default()).unwrap();
    let tmux = Tmux {
        socket: format!("fowl-test-{}", std::process::id()),
    };
    let command = format!(
        "{} accept -L svc --mailbox {} --no-relay",
        env!("CARGO_BIN_EXE_fowl"),
        mb.url()
    );
    tokio::task::spawn_blocking(move || {
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "fowl",
            "-x",
            "150",
            "-y",
            "20",
            &command,
        ]);
        tmux.until("Enter the code");
        // "adroitness" is the only odd-column word starting "adr": completed at once
        tmux.run(&["send-keys", "-t", "fowl", "7-adr", "Tab"]);
        tmux.until("7-adroitness-");
        // "a" starts several even-column words: the first Tab completes only what they share,
        // the second lists them (no cycling through candidates)
        tmux.run(&["send-keys", "-t", "fowl", "a", "Tab"]);
        tmux.run(&["send-keys", "-t", "fowl", "Tab"]);
        let listed = tmux.until("aardvark");
        assert!(listed.contains("absurd"), "candidates listed:\n{listed}");
        // Enter on the unfinished code: the line stays
        tmux.run(&["send-keys", "-t", "fowl", "ard", "Enter"]);
        tmux.until("unfinished: Tab completes");
        tmux.run(&["send-keys", "-t", "fowl", "C-c"]);
    })
    .await
    .unwrap();
}

/// On a small terminal, the live view of `fowl invite` serving 40 streams (20 of them finished)
/// fits: no line wraps and the block is redrawn in place, so its header is on the screen once and
/// nowhere in the scrollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_view_fits_a_small_terminal_however_many_streams_run() {
    common::require_loopback_only();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mb = serve(listener, MailboxConfig::default()).unwrap();
    let echo = common::fowld::echo_server().await;
    let tmux = std::sync::Arc::new(Tmux {
        socket: format!("fowl-live-{}", std::process::id()),
    });
    let command = format!(
        "{} invite -R svc:{echo} --mailbox {} --no-relay",
        env!("CARGO_BIN_EXE_fowl"),
        mb.url()
    );
    // tmux 3.3 pushes a screen cleared from its top line into the scrollback (scroll-on-clear):
    // off, so that the scrollback shows only what really scrolled
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tmux.conf");
    std::fs::write(&config, "set -g scroll-on-clear off\n").unwrap();
    let config = config.to_str().unwrap().to_string();
    let t = tmux.clone();
    let pane = tokio::task::spawn_blocking(move || {
        let start = ["-f", &config, "new-session", "-d", "-s", "fowl"];
        t.run(&[&start[..], &["-x", "60", "-y", "12", &command]].concat());
        t.until("code: ")
    })
    .await
    .unwrap();
    let code = pane
        .lines()
        .find_map(|l| l.strip_prefix("code: "))
        .expect("the code line")
        .trim()
        .to_string();
    let mut accept =
        common::fowld::Fowld::spawn(common::fowld::Impl::Rust, &mb.url(), &["--no-relay"]);
    accept
        .send(serde_json::json!({"kind": "set-code", "code": code}))
        .await;
    accept
        .send(serde_json::json!({"kind": "local", "name": "svc"}))
        .await;
    let port = accept.expect("listening").await["listening_port"]
        .as_u64()
        .unwrap() as u16;
    let mut open = Vec::new();
    for i in 0..40u8 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(&[i]).await.unwrap();
        let mut echoed = [0u8];
        tokio::time::timeout(Duration::from_secs(30), s.read_exact(&mut echoed))
            .await
            .expect("echo in time")
            .unwrap();
        if i % 2 == 0 {
            open.push(s);
        }
    }
    let t = tmux.clone();
    tokio::task::spawn_blocking(move || {
        // the block counts what it does not show; it settles within a few redraws
        t.until("more");
        let screen = t.until("svc: 20 open, 40 in all");
        // a frame that holds still across the captures (the block is redrawn 4 times a second)
        let (screen, joined, history) = (0..100)
            .find_map(|_| {
                let before = t.run(&["capture-pane", "-p", "-t", "fowl"]);
                let joined = t.run(&["capture-pane", "-p", "-J", "-t", "fowl"]);
                let history = t.run(&["capture-pane", "-p", "-S", "-", "-t", "fowl"]);
                let after = t.run(&["capture-pane", "-p", "-t", "fowl"]);
                std::thread::sleep(Duration::from_millis(20));
                (before == after).then_some((after, joined, history))
            })
            .unwrap_or_else(|| panic!("the screen never held still:\n{screen}"));
        assert_eq!(
            history
                .lines()
                .filter(|l| l.starts_with("fowl | code"))
                .count(),
            1,
            "one header, redrawn in place:\n{history}"
        );
        // the block (from its header down) has no wrapped line: joining wrapped lines changes
        // nothing there (log lines above it may wrap)
        let block = |pane: &str| -> Vec<String> {
            let lines: Vec<&str> = pane.lines().collect();
            let top = lines.iter().position(|l| l.starts_with("fowl | code"));
            let top = top.unwrap_or_else(|| panic!("no header:\n{pane}"));
            lines[top..]
                .iter()
                .map(|l| l.trim_end().to_string())
                .collect()
        };
        assert_eq!(block(&screen), block(&joined), "no wrapped line:\n{screen}");
        assert_eq!(
            screen
                .lines()
                .filter(|l| l.starts_with("fowl | code"))
                .count(),
            1,
            "{screen}"
        );
    })
    .await
    .unwrap();
    drop(open);
}
