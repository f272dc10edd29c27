//! For the examples: use a given mailbox URL, or start the Python mailbox server from
//! `$FOWL_VENV` on a free loopback port (stopped when the guard is dropped).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn url_or_local(given: Option<String>) -> anyhow::Result<(String, Option<KillOnDrop>)> {
    if let Some(url) = given {
        return Ok((url, None));
    }
    let venv = std::env::var("FOWL_VENV").unwrap_or_else(|_| ".venv".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = std::env::temp_dir().join(format!("fowl-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let child = Command::new(format!("{venv}/bin/twist"))
        .args([
            "wormhole-mailbox",
            &format!("--port=tcp:{port}:interface=127.0.0.1"),
            "--channel-db=channel.sqlite",
        ])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!("cannot start {venv}/bin/twist ({e}): run scripts/demo.sh first")
        })?;
    let guard = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the local mailbox server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((format!("ws://127.0.0.1:{port}/v1"), Some(guard)))
}
