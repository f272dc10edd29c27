//! Helpers for Dilation tests: peers, an echo server, data patterns.

use std::time::{Duration, Instant};

use fowl::dilation::{Dilated, DilationConfig, DilationEvent, PathKind, RelayLocation, Subchannel};
use fowl::wormhole::{Wormhole, WormholeConfig};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const APPID: &str = "lothar.com/rust-fowl-test";
/// Dilation sides that make us Leader or Follower against any random peer side.
pub const LEADER: &str = "ffffffffffffffff";
pub const FOLLOWER: &str = "0000000000000000";

pub fn config(side: &str) -> DilationConfig {
    DilationConfig {
        side: Some(side.into()),
        ..DilationConfig::default()
    }
}

/// Relay-only through `relay` (a `tcp:HOST:PORT` hint).
pub fn relay_only(side: &str, relay: &str) -> DilationConfig {
    DilationConfig {
        no_listen: true,
        relay: Some(relay.parse::<RelayLocation>().unwrap()),
        ..config(side)
    }
}

/// Two Rust wormholes through the mailbox at `url`, dilated with `a` and `b`.
pub async fn rust_pair(url: &str, a: DilationConfig, b: DilationConfig) -> (Dilated, Dilated) {
    let wc = WormholeConfig::new(APPID, url);
    let mut wa = Wormhole::connect(wc.clone()).await.unwrap();
    wa.allocate_code(2);
    let code = wa.allocated_code().await.unwrap();
    let wb = Wormhole::connect(wc).await.unwrap();
    wb.set_code(&code).await.unwrap();
    (wa.dilate(a), wb.dilate(b))
}

pub async fn connected(d: &mut Dilated) -> PathKind {
    d.wait_for(|e| match e {
        DilationEvent::Connected { path, .. } => Some(*path),
        _ => None,
    })
    .await
    .expect("connected")
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x: u64 = 0x9e3779b97f4a7c15 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Echoes the first subchannel accepted for `name`; returns (bytes, sha256) of what it got.
pub fn echo_server(d: &Dilated, name: &str) -> tokio::task::JoinHandle<(usize, String)> {
    let mut listener = d.listen(name);
    tokio::spawn(async move {
        let mut sub = listener.accept().await.expect("a subchannel");
        let (mut count, mut hash) = (0, Sha256::new());
        let mut buf = vec![0u8; 65536];
        loop {
            // end of stream, or the session ended under us
            let n = sub.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            count += n;
            hash.update(&buf[..n]);
            if sub.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        (count, hex::encode(hash.finalize()))
    })
}

/// What a transfer through an echo saw.
pub struct Echoed {
    pub back: Vec<u8>,
    /// The longest pause between two reads after `hook` first returned true.
    pub longest_gap_after_hook: Option<Duration>,
}

/// Sends `data` on `sub` while reading its echo; `hook(bytes_read)` runs after every read (a test
/// cuts the connection from it). Closes the subchannel at the end.
pub async fn send_and_read_echo(
    sub: Subchannel,
    data: Vec<u8>,
    mut hook: impl FnMut(usize) -> bool,
) -> Echoed {
    let (mut r, mut w) = tokio::io::split(sub);
    let len = data.len();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w
    });
    let mut back = vec![0u8; len];
    let (mut got, mut hooked, mut last, mut gap) = (0, false, Instant::now(), None::<Duration>);
    while got < len {
        let n = r.read(&mut back[got..]).await.unwrap();
        assert!(n > 0, "echo ended early at {got} of {len} bytes");
        got += n;
        if hooked {
            gap = Some(gap.unwrap_or_default().max(last.elapsed()));
        }
        last = Instant::now();
        if !hooked && hook(got) {
            hooked = true;
        }
    }
    let w = writer.await.unwrap();
    let mut sub = r.unsplit(w);
    sub.shutdown().await.unwrap();
    Echoed {
        back,
        longest_gap_after_hook: gap,
    }
}

/// Starts `tests/python/dilation_peer.py` with `args` (besides `--url`), joins it with a Rust
/// wormhole and dilates that with `config`. The Python peer has already confirmed the verifier.
pub async fn python_pair(
    url: &str,
    args: &[String],
    config: DilationConfig,
) -> (super::PyPeer, Dilated) {
    let mut all = vec!["--url".to_string(), url.to_string()];
    all.extend_from_slice(args);
    let mut py = super::PyPeer::spawn("dilation_peer.py", &all);
    let code = py.expect("code").await["code"]
        .as_str()
        .unwrap()
        .to_string();
    let mut w = Wormhole::connect(WormholeConfig::new(APPID, url))
        .await
        .unwrap();
    w.set_code(&code).await.unwrap();
    let verifier = w.verifier().await.unwrap();
    assert_eq!(
        py.expect("verifier").await["verifier"],
        hex::encode(verifier)
    );
    (py, w.dilate(config))
}

/// Closes both ends of a Rust-Python pair and checks that both were happy.
pub async fn close_python_pair(mut py: super::PyPeer, d: Dilated) {
    py.send_line("close").await;
    assert_eq!(
        py.until("closed", Duration::from_secs(30)).await.0["result"],
        "happy"
    );
    assert_eq!(d.close().await, Ok(fowl::wormhole::Mood::Happy));
    assert_eq!(py.wait(Duration::from_secs(10)).await, Some(0));
}

/// Writes `data` and, at the same time, reads `expect` bytes from `sub` (independent directions);
/// half-closes after writing. Returns what was read.
pub async fn exchange(sub: Subchannel, data: Vec<u8>, expect: usize) -> Vec<u8> {
    let (mut r, mut w) = tokio::io::split(sub);
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
        w
    });
    let mut got = vec![0u8; expect];
    r.read_exact(&mut got).await.unwrap();
    let _ = writer.await.unwrap();
    got
}
