//! Silent network faults in the lab (`common::lab`): network namespaces as hosts `s` (our mailbox
//! server and relay), `a` and `b` (the peers' fowld) on a bridge, a paced stream from `a` to `b`
//! flowing when the fault starts. Each scenario must end with the stream intact (nothing lost,
//! nothing duplicated), moving again within a generous bound after the fault is gone, or, for
//! the load scenarios, without any reconnection. Every scenario prints a `LAB ...` figures line
//! to stderr (appended to `$FOWL_LAB_REPORT` when set).
//!
//! Needs root and iproute2's `ip`, `tc` and `bridge` (otherwise each test says why and passes); the Python scenarios
//! need the reference virtualenv (`scripts/test.sh` installs it). Run alone with
//! `cargo test --test lab -- --nocapture` (as root; inside `in-loopback-netns` as the suite is).

mod common;

use std::future::Future;
use std::time::Duration;

use common::lab::{Daemon, Expect, Host, Peers, Role, Session, StreamSpec};

/// The bound of a whole scenario, so that nothing can hang.
const TEST_LIMIT: Duration = Duration::from_secs(300);
const MB: u64 = 1_000_000;
/// The stream flows once this much reached the sink (a second at the default 2 MB/s).
const FLOWING: u64 = 2 * MB;

/// Runs a scenario within `TEST_LIMIT` (dropping it on expiry tears its lab down).
async fn bounded(scenario: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_LIMIT, scenario)
        .await
        .expect("the scenario finished within its bound");
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The `path` of every `dilation-connected` our daemon reported so far.
fn paths(d: &mut Daemon) -> Vec<String> {
    d.f().poll();
    d.f()
        .seen
        .iter()
        .filter(|v| v["kind"] == "dilation-connected")
        .map(|v| v["path"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The link of host `a` down for `outage` while the stream flows: its veth loses its carrier,
/// so host `a`'s kernel sees the link go (it drops its own packets and keeps retrying).
async fn carrier_lost(scenario: &str, peers: Peers, outage: Duration, seed: u64) {
    let Some(mut s) = Session::start(scenario, peers, false).await else {
        return;
    };
    let spec = StreamSpec {
        seed,
        ..StreamSpec::default()
    };
    s.start_stream(spec, FLOWING).await;
    s.fault_begins();
    s.lab.link_down(Host::A);
    s.hold(outage).await;
    s.lab.link_up(Host::A);
    s.fault_ends();
    s.finish(Expect::Recovers).await;
}

/// The link of host `a` silently down for `outage` while the stream flows: its bridge port stops
/// forwarding, both ends keep their carrier, packets vanish, no reset ever comes (a closed lid,
/// a Wi-Fi that died, a NAT that forgot).
async fn link_silent(scenario: &str, peers: Peers, outage: Duration, seed: u64) {
    let Some(mut s) = Session::start(scenario, peers, false).await else {
        return;
    };
    let spec = StreamSpec {
        seed,
        ..StreamSpec::default()
    };
    s.start_stream(spec, FLOWING).await;
    s.fault_begins();
    s.lab.blackhole(Host::A);
    s.hold(outage).await;
    s.lab.restore(Host::A);
    s.fault_ends();
    let outcome = s.finish(Expect::Recovers).await;
    // our side found the silence itself, in about the liveness interval (10 s by default; the
    // bound leaves room for a loaded machine's late timers)
    let silent: Vec<f64> = outcome
        .detected
        .iter()
        .filter_map(|d| {
            d.strip_prefix("a:silent:")
                .or_else(|| d.strip_prefix("b:silent:"))
        })
        .filter_map(|s| s.parse().ok())
        .collect();
    assert!(
        !silent.is_empty() && silent.iter().all(|s| (10.0..=15.0).contains(s)),
        "{scenario}: silence declared by our daemons: {:?}",
        outcome.detected
    );
}

/// Relay only (no direct hints on either side): the relay killed for `outage`, then restarted
/// on its address.
async fn relay_down(scenario: &str, peers: Peers, outage: Duration, seed: u64) {
    let Some(mut s) = Session::start(scenario, peers, true).await else {
        return;
    };
    let spec = StreamSpec {
        seed,
        ..StreamSpec::default()
    };
    s.start_stream(spec, FLOWING).await;
    assert_eq!(paths(&mut s.a), ["relay"], "relay only");
    s.fault_begins();
    s.lab.stop_relay();
    s.hold(outage).await;
    s.lab.start_relay();
    s.fault_ends();
    s.finish(Expect::Recovers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_1_link_silently_down_20s() {
    bounded(link_silent("link_silent_20s", Peers::RustRust, secs(20), 1)).await;
}

/// The same 20 s, but host `a` sees its link go (carrier lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_1b_carrier_lost_20s() {
    bounded(carrier_lost(
        "carrier_lost_20s",
        Peers::RustRust,
        secs(20),
        11,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_2_link_silently_down_60s() {
    bounded(link_silent("link_silent_60s", Peers::RustRust, secs(60), 2)).await;
}

/// Host `a` is renumbered (DHCP-like) while the stream flows: its old connections are dead
/// without a word, and the peers must find each other at the new address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_3_address_change() {
    bounded(async {
        let Some(mut s) = Session::start("address_change", Peers::RustRust, false).await else {
            return;
        };
        let spec = StreamSpec {
            seed: 3,
            ..StreamSpec::default()
        };
        s.start_stream(spec, FLOWING).await;
        s.fault_begins();
        s.lab
            .replace_address(Host::A, Host::A.address(), "198.18.0.12");
        s.fault_ends();
        s.finish(Expect::Recovers).await;
    })
    .await;
}

/// fowld of host `a` frozen (SIGSTOP) for 20 s, then continued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_4_fowld_stopped_20s() {
    bounded(async {
        let Some(mut s) = Session::start("fowld_stopped_20s", Peers::RustRust, false).await else {
            return;
        };
        let spec = StreamSpec {
            seed: 4,
            ..StreamSpec::default()
        };
        s.start_stream(spec, FLOWING).await;
        s.fault_begins();
        s.lab.pause(&s.a);
        s.hold(secs(20)).await;
        s.lab.resume(&s.a);
        s.fault_ends();
        s.finish(Expect::Recovers).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_5_relay_only_relay_down_10s() {
    bounded(relay_down(
        "relay_only_relay_down_10s",
        Peers::RustRust,
        secs(10),
        5,
    ))
    .await;
}

/// The mailbox server dies and the link of `a` goes down together; the link comes back after
/// 10 s, the mailbox server (fresh state) 5 s later. Resumption counts from the mailbox's return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_6_mailbox_and_link_down() {
    bounded(async {
        let Some(mut s) = Session::start("mailbox_and_link_down", Peers::RustRust, false).await
        else {
            return;
        };
        let spec = StreamSpec {
            seed: 6,
            ..StreamSpec::default()
        };
        s.start_stream(spec, FLOWING).await;
        s.fault_begins();
        s.lab.stop_mailbox();
        s.lab.blackhole(Host::A);
        s.hold(secs(10)).await;
        s.lab.restore(Host::A);
        s.hold(secs(5)).await;
        s.lab.start_mailbox();
        s.fault_ends();
        s.finish(Expect::Recovers).await;
    })
    .await;
}

/// A consumer reading 4 MB/s behind an 8 MB/s sender: backpressure all the way, and no
/// reconnection (a busy connection is not a dead one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_7_slow_consumer_no_reconnect() {
    bounded(async {
        let Some(mut s) = Session::start("slow_consumer", Peers::RustRust, false).await else {
            return;
        };
        let spec = StreamSpec {
            seed: 7,
            rate: 8 * MB,
            send_for: Some(secs(6)),
            consumer_rate: Some(4 * MB),
            ..StreamSpec::default()
        };
        s.start_stream(spec, FLOWING).await;
        s.finish(Expect::NoReconnect).await;
    })
    .await;
}

/// Both peers' links limited to 16 Mbit/s (token bucket: excess packets dropped) under a
/// 4 MB/s sender: congestion, and no reconnection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_8_rate_limited_link_no_reconnect() {
    bounded(async {
        let Some(mut s) = Session::start("rate_limited_link", Peers::RustRust, false).await else {
            return;
        };
        s.lab.rate_limit(Host::A, "16mbit");
        s.lab.rate_limit(Host::B, "16mbit");
        let spec = StreamSpec {
            seed: 8,
            rate: 4 * MB,
            send_for: Some(secs(10)),
            ..StreamSpec::default()
        };
        s.start_stream(spec, FLOWING).await;
        s.finish(Expect::NoReconnect).await;
    })
    .await;
}

// Python fowld 26.8 in host `b`, ours in host `a`, each role order.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_9_python_link_silently_down_20s_rust_leader() {
    let peers = Peers::RustPython(Role::Leader);
    bounded(link_silent("python_link_silent_20s", peers, secs(20), 91)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_9_python_link_silently_down_20s_rust_follower() {
    let peers = Peers::RustPython(Role::Follower);
    bounded(link_silent("python_link_silent_20s", peers, secs(20), 92)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_9_python_relay_only_relay_down_10s_rust_leader() {
    let peers = Peers::RustPython(Role::Leader);
    bounded(relay_down("python_relay_down_10s", peers, secs(10), 93)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_9_python_relay_only_relay_down_10s_rust_follower() {
    let peers = Peers::RustPython(Role::Follower);
    bounded(relay_down("python_relay_down_10s", peers, secs(10), 94)).await;
}
