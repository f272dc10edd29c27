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
