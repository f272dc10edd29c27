//! Durability: the Dilation connection is cut mid-transfer, is unavailable while data is written,
//! or its transit relay goes down; transfers complete intact, with Rust and Python peers. The
//! connection runs through a test-controlled proxy in front of a transit relay: ours between Rust
//! peers, the real Python one where a Python peer takes part (with the Python mailbox server).

mod common;

use std::time::Duration;

use common::dilation::{
    close_python_pair, connected, echo_server, pattern, python_pair, relay_only, rust_pair,
    send_and_read_echo, FOLLOWER, LEADER,
};
use common::{CutProxy, MailboxServer, RustServers, TransitRelay};
use fowl::dilation::{Dilated, DilationConfig, DilationEvent};
use fowl::wormhole::Mood;

const SIZE: usize = 16 << 20;
const LIMIT: Duration = Duration::from_secs(180);

/// A mailbox server and a transit relay: ours when both peers are ours, else Python's.
enum Servers {
    Rust(RustServers),
    Python(MailboxServer, TransitRelay),
}

impl Servers {
    fn start(python_peer: bool) -> Servers {
        common::init_logging();
        common::require_loopback_only();
        if python_peer {
            Servers::Python(MailboxServer::start(), TransitRelay::start())
        } else {
            Servers::Rust(RustServers::start())
        }
    }

    fn url(&self) -> String {
        match self {
            Servers::Rust(s) => s.url(),
            Servers::Python(m, _) => m.url(),
        }
    }

    fn relay_port(&self) -> u16 {
        match self {
            Servers::Rust(s) => s.relay.port,
            Servers::Python(_, r) => r.0.port,
        }
    }

    fn relay_hint(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.relay_port())
    }

    /// Stops the relay and closes its connections, as a crash would.
    fn kill_relay(&mut self) {
        match self {
            Servers::Rust(s) => s.relay.kill(),
            Servers::Python(_, r) => r.0.kill(),
        }
    }

    /// Starts the relay again on the same port.
    fn restart_relay(&mut self) {
        match self {
            Servers::Rust(s) => s.relay.restart(),
            Servers::Python(_, r) => r.0.restart(),
        }
    }
}

/// A mailbox server and a transit relay, reached through a cuttable proxy.
struct Rig {
    servers: Servers,
    proxy: CutProxy,
}

impl Rig {
    async fn start(python_peer: bool) -> Rig {
        let servers = Servers::start(python_peer);
        let proxy = CutProxy::start(servers.relay_port()).await;
        Rig { servers, proxy }
    }

    /// A Rust Leader and a Rust Follower, relay-only through the proxy (our servers).
    async fn rust_pair(&self) -> (Dilated, Dilated) {
        let hint = self.proxy.hint();
        rust_pair(
            &self.servers.url(),
            relay_only(LEADER, &hint),
            relay_only(FOLLOWER, &hint),
        )
        .await
    }

    /// The Python peer, relay-only through the proxy (Python's servers); we take `config`.
    async fn python_pair(&self, config: DilationConfig) -> (common::PyPeer, Dilated) {
        let args = vec![
            "--relay".to_string(),
            self.proxy.hint(),
            "--no-listen".into(),
        ];
        python_pair(&self.servers.url(), &args, config).await
    }
}

/// Echoes SIZE bytes through the peer's echo, cutting every proxied connection at 30 %; checks
/// the data and returns the longest pause in the echo after the cut.
async fn transfer_with_cut(opener: &Dilated, proxy: &CutProxy) -> Duration {
    let sub = opener.open("echo").await.unwrap();
    let data = pattern(SIZE, 5);
    let echoed = send_and_read_echo(sub, data.clone(), |got| {
        let cut = got >= SIZE * 3 / 10;
        if cut {
            proxy.cut();
        }
        cut
    })
    .await;
    assert_eq!(echoed.back.len(), data.len());
    assert!(
        echoed.back == data,
        "the echo differs from what was sent (lost or duplicated bytes)"
    );
    echoed
        .longest_gap_after_hook
        .expect("data flowed after the cut")
}

fn reconnected(events: &mut Dilated) -> impl std::future::Future<Output = Option<u32>> + '_ {
    events.wait_for(|e| match e {
        DilationEvent::Connected { generation, .. } if *generation > 0 => Some(*generation),
        _ => None,
    })
}

#[tokio::test]
async fn cut_mid_transfer_rust_leader_rust_follower() {
    let rig = Rig::start(false).await;
    tokio::time::timeout(LIMIT, async {
        let (mut a, b) = rig.rust_pair().await;
        let echo = echo_server(&b, "echo");
        let gap = transfer_with_cut(&a, &rig.proxy).await;
        assert!(
            gap < Duration::from_secs(1),
            "data resumed {gap:?} after the cut"
        );
        assert!(reconnected(&mut a).await.is_some());
        assert_eq!(
            echo.await.unwrap().0,
            SIZE,
            "the echo side saw every byte once"
        );
        assert_eq!(a.close().await, Ok(Mood::Happy));
        assert_eq!(b.close().await, Ok(Mood::Happy));
    })
    .await
    .unwrap();
}

async fn cut_with_python(rust_side: &str) -> Duration {
    let rig = Rig::start(true).await;
    let (py, mut d) = rig
        .python_pair(relay_only(rust_side, &rig.proxy.hint()))
        .await;
    let gap = transfer_with_cut(&d, &rig.proxy).await;
    assert!(reconnected(&mut d).await.is_some());
    close_python_pair(py, d).await;
    gap
}

#[tokio::test]
async fn cut_mid_transfer_rust_leader_python_follower() {
    let gap = tokio::time::timeout(LIMIT, cut_with_python(LEADER))
        .await
        .unwrap();
    assert!(
        gap < Duration::from_secs(1),
        "data resumed {gap:?} after the cut"
    );
}

#[tokio::test]
async fn cut_mid_transfer_python_leader_rust_follower() {
    // resumes once the Python Leader reconnects; no time bound of ours applies
    tokio::time::timeout(LIMIT, cut_with_python(FOLLOWER))
        .await
        .unwrap();
}

/// Writes while no connection can exist, then lets connections through again.
async fn write_while_offline(opener: &mut Dilated, proxy: &CutProxy) {
    connected(opener).await;
    let sub = opener.open("echo").await.unwrap();
    proxy.refuse(true);
    proxy.cut();
    let data = pattern(1 << 20, 9);
    let d2 = data.clone();
    let transfer = tokio::spawn(async move { send_and_read_echo(sub, d2, |_| false).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!transfer.is_finished(), "nothing can arrive while offline");
    proxy.refuse(false);
    let echoed = transfer.await.unwrap();
    assert!(
        echoed.back == data,
        "the data written while offline arrived intact"
    );
}

#[tokio::test]
async fn data_written_while_offline_rust_to_rust() {
    let rig = Rig::start(false).await;
    tokio::time::timeout(LIMIT, async {
        let (mut a, b) = rig.rust_pair().await;
        let _echo = echo_server(&b, "echo");
        write_while_offline(&mut a, &rig.proxy).await;
        assert_eq!(a.close().await, Ok(Mood::Happy));
        assert_eq!(b.close().await, Ok(Mood::Happy));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn data_written_while_offline_rust_leader_python_follower() {
    let rig = Rig::start(true).await;
    tokio::time::timeout(LIMIT, async {
        // Python dials each relay once per generation: new generations make it try again
        let config = DilationConfig {
            generation_timeout: Duration::from_secs(2),
            ..relay_only(LEADER, &rig.proxy.hint())
        };
        let (py, mut d) = rig.python_pair(config).await;
        write_while_offline(&mut d, &rig.proxy).await;
        close_python_pair(py, d).await;
    })
    .await
    .unwrap();
}

/// Stops the transit relay for 3 s in the middle of an echo of SIZE bytes, while the peers keep
/// running (their dials fail and are retried).
async fn relay_outage(opener: &Dilated, servers: &mut Servers) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let sub = opener.open("echo").await.unwrap();
    let data = pattern(SIZE, 11);
    let progress = std::sync::Arc::new(AtomicUsize::new(0));
    let transfer = {
        let (data, progress) = (data.clone(), progress.clone());
        tokio::spawn(async move {
            send_and_read_echo(sub, data, move |got| {
                progress.store(got, Ordering::Relaxed);
                false
            })
            .await
        })
    };
    while progress.load(Ordering::Relaxed) < SIZE / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    servers.kill_relay();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !transfer.is_finished(),
        "nothing can flow while the relay is down"
    );
    tokio::task::block_in_place(|| servers.restart_relay());
    let echoed = transfer.await.unwrap();
    assert!(echoed.back == data, "the echo differs from what was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_outage_rust_to_rust() {
    let mut servers = Servers::start(false);
    let hint = servers.relay_hint();
    tokio::time::timeout(LIMIT, async {
        let (a, b) = rust_pair(
            &servers.url(),
            relay_only(LEADER, &hint),
            relay_only(FOLLOWER, &hint),
        )
        .await;
        let _echo = echo_server(&b, "echo");
        relay_outage(&a, &mut servers).await;
        assert_eq!(a.close().await, Ok(Mood::Happy));
        assert_eq!(b.close().await, Ok(Mood::Happy));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_outage_rust_leader_python_follower() {
    let mut servers = Servers::start(true);
    let hint = servers.relay_hint();
    tokio::time::timeout(LIMIT, async {
        let args = vec!["--relay".to_string(), hint.clone(), "--no-listen".into()];
        let config = DilationConfig {
            generation_timeout: Duration::from_secs(3),
            ..relay_only(LEADER, &hint)
        };
        let (py, d) = python_pair(&servers.url(), &args, config).await;
        relay_outage(&d, &mut servers).await;
        close_python_pair(py, d).await;
    })
    .await
    .unwrap();
}
