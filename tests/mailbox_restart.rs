//! `fowl server --db`: the server process killed (SIGKILL) and started again on the same
//! database in the middle of sessions, with Python magic-wormhole 0.24 clients and ours. The
//! sessions go on: the code still leads to the mailbox, every message arrives, once.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::PyPeer;
use fowl::wormhole::{Mood, Wormhole, WormholeConfig};
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

const APPID: &str = "lothar.com/rust-fowl-test";

/// `fowl server --db` on `port` (0: a free one); returns the process and its port.
async fn start(db: &Path, port: u16) -> (Child, u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fowl"))
            .args(["server", "--no-relay", "--mailbox-listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--db")
            .arg(db)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn fowl server");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await;
        if let Ok(Ok(Some(line))) = line {
            if let Some(url) = line.strip_prefix("mailbox server listening on ") {
                let port = url.trim_end_matches("/v1").rsplit(':').next().unwrap();
                return (child, port.parse().unwrap());
            }
        }
        // the port may be taken for a moment after the kill: again, for a bounded time
        let _ = child.kill().await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "fowl server did not start on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills the server as a crash would and starts it again on the same port and database.
async fn crash_and_restart(server: &mut Child, db: &Path, port: u16) {
    server.kill().await.unwrap(); // SIGKILL: nothing is written after this
    let (child, again) = start(db, port).await;
    assert_eq!(again, port);
    *server = child;
}

fn py(url: &str, extra: &[&str]) -> PyPeer {
    PyPeer::wormhole(url, extra)
}

#[tokio::test]
async fn sessions_ride_through_a_server_crash_and_restart_on_its_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mailbox.sqlite");
    let (mut server, port) = start(&db, 0).await;
    let url = format!("ws://127.0.0.1:{port}/v1");
    tokio::time::timeout(Duration::from_secs(120), async {
        // 1. ours allocates; the server crashes before the Python peer arrives with the code
        let mut w = Wormhole::connect(WormholeConfig::new(APPID, &url))
            .await
            .unwrap();
        w.allocate_code(2);
        let code = w.allocated_code().await.unwrap();
        crash_and_restart(&mut server, &db, port).await;
        let mut p = py(&url, &["--code", &code, "--send", "2", "--expect", "2"]);
        assert_eq!(
            p.expect("verifier").await["verifier"],
            hex::encode(w.verifier().await.unwrap())
        );
        assert_eq!(
            w.peer_versions().await.unwrap(),
            json!({"python-peer": {"n": 1}})
        );
        w.send_message(b"before the second crash".to_vec());
        p.expect("versions").await;
        assert_eq!(p.expect("message").await["text"], "before the second crash");
        // 2. a crash in the middle of the exchange
        crash_and_restart(&mut server, &db, port).await;
        w.send_message(b"after it".to_vec());
        assert_eq!(p.expect("message").await["text"], "after it");
        assert_eq!(w.recv_message().await.unwrap(), b"py-0");
        assert_eq!(w.recv_message().await.unwrap(), b"py-1");
        assert_eq!(p.expect("closed").await["result"], "happy");
        assert_eq!(w.close().await, Ok(Mood::Happy));

        // 3. Python allocates, the server crashes, ours joins with the code
        let mut p = py(&url, &["--send", "1", "--expect", "1"]);
        let code = p.expect("code").await["code"].as_str().unwrap().to_string();
        crash_and_restart(&mut server, &db, port).await;
        let mut w = Wormhole::connect(WormholeConfig::new(APPID, &url))
            .await
            .unwrap();
        w.set_code(&code).await.unwrap();
        assert_eq!(
            p.expect("verifier").await["verifier"],
            hex::encode(w.verifier().await.unwrap())
        );
        w.send_message(b"from rust".to_vec());
        assert_eq!(w.recv_message().await.unwrap(), b"py-0");
        p.expect("versions").await;
        assert_eq!(p.expect("message").await["text"], "from rust");
        assert_eq!(p.expect("closed").await["result"], "happy");
        assert_eq!(w.close().await, Ok(Mood::Happy));
    })
    .await
    .unwrap();
    server.kill().await.unwrap();
}
