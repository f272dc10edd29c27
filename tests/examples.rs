//! The runnable glue program `examples/forward.py` against our fowld, on our mailbox server.

mod common;

use std::time::Duration;

#[tokio::test]
async fn the_python_glue_program_forwards_through_two_fowlds() {
    common::require_loopback_only();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mb = fowl::server::mailbox::serve(listener, Default::default()).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/forward.py");
    let child = tokio::process::Command::new("python3")
        .arg(script)
        .args([
            "--fowld",
            env!("CARGO_BIN_EXE_fowld"),
            "--mailbox",
            &mb.url(),
            "--selftest",
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .expect("the glue program finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("selftest: 1048576 bytes went through and came back"),
        "{stdout}"
    );
    assert!(
        stdout.contains("server side: happy") && stdout.contains("client side: happy"),
        "{stdout}"
    );
}

/// `examples/send_file.rs`, the library used as a Rust program would: two processes, a code,
/// one named subchannel, relay-only through our in-process relay.
#[tokio::test]
async fn send_file_goes_between_two_processes_over_a_named_subchannel() {
    use tokio::io::AsyncBufReadExt;
    common::require_loopback_only();
    let servers = common::RustServers::start();
    let example = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples/send_file");
    assert!(
        example.exists(),
        "{} is built by `cargo build --all-targets`",
        example.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.bin"), dir.path().join("out.bin"));
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(&input, &payload).unwrap();
    let (url, relay) = (servers.url(), servers.relay_hint());
    let common_args = ["--mailbox", &url, "--relay", &relay, "--no-listen"];
    let mut sender = tokio::process::Command::new(&example)
        .arg("send")
        .arg(&input)
        .args(common_args)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(sender.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the sender prints its code")
        .unwrap()
        .expect("a line");
    let code = first.strip_prefix("code: ").expect("code line").to_string();
    let receiver = tokio::process::Command::new(&example)
        .arg("receive")
        .arg(&code)
        .arg(&output)
        .args(common_args)
        .kill_on_drop(true)
        .output();
    let received = tokio::time::timeout(Duration::from_secs(60), receiver)
        .await
        .expect("the receiver finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&received.stdout);
    assert!(received.status.success(), "{stdout}");
    assert!(stdout.contains("received 3000000 bytes"), "{stdout}");
    assert!(stdout.contains("mood: happy"), "{stdout}");
    let mut rest = Vec::new();
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
    {
        rest.push(line);
    }
    let status = tokio::time::timeout(Duration::from_secs(30), sender.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{rest:?}");
    assert!(
        rest[0].starts_with("sent 3000000 bytes") && rest[0].ends_with("confirmed"),
        "{rest:?}"
    );
    assert_eq!(rest[1], "mood: happy");
    assert!(
        std::fs::read(&output).unwrap() == payload,
        "the file arrived intact"
    );
}
