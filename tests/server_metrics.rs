//! `fowl server --metrics-listen`: a session through the mailbox server, a relay pair and refused
//! connections, then the Prometheus text scraped over HTTP shows each of them; the server's logs
//! (`--log-format json`) are JSON lines.

mod common;

use std::time::Duration;

use fowl::wormhole::{Mood, Wormhole, WormholeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// The value of the sample `name` (labels included, as printed), if present.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_connections_moods_relay_pairs_bytes_and_refusals() {
    let server = common::FowlServer::spawn(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--mailbox-max-per-address",
        "2",
        "--relay-max-per-address",
        "2",
        "--log-format",
        "json",
    ])
    .await;
    let (url, relay) = (server.url.clone(), common::port_of(&server.relay));
    let metrics = server.metrics.expect("the metrics port");
    tokio::time::timeout(Duration::from_secs(120), async {
        let before = get(metrics, "/metrics").await;
        assert!(before.starts_with("HTTP/1.1 200 OK"), "{before}");
        assert_eq!(sample(&before, "fowl_mailbox_accepted_total"), Some(0.0));

        // a happy session through the mailbox
        let config = WormholeConfig::new("lothar.com/rust-fowl-test", &url);
        let mut a = Wormhole::connect(config.clone()).await.unwrap();
        a.allocate_code(2);
        let code = a.allocated_code().await.unwrap();
        let mut b = Wormhole::connect(config).await.unwrap();
        b.set_code(&code).await.unwrap();
        a.send_message(b"hi".to_vec());
        assert_eq!(b.recv_message().await.unwrap(), b"hi");
        assert_eq!(a.close().await, Ok(Mood::Happy));
        assert_eq!(b.close().await, Ok(Mood::Happy));

        // a relay pair moving 1000 bytes each way
        let line = |side: &str| format!("please relay {:064x} for side {side}\n", 9);
        let mut x = TcpStream::connect(("127.0.0.1", relay)).await.unwrap();
        x.write_all(line("aaaaaaaaaaaaaaaa").as_bytes())
            .await
            .unwrap();
        let mut y = TcpStream::connect(("127.0.0.1", relay)).await.unwrap();
        y.write_all(line("bbbbbbbbbbbbbbbb").as_bytes())
            .await
            .unwrap();
        let mut ok = [0u8; 3];
        x.read_exact(&mut ok).await.unwrap();
        y.read_exact(&mut ok).await.unwrap();
        let mut got = vec![0u8; 1000];
        x.write_all(&[1; 1000]).await.unwrap();
        y.read_exact(&mut got).await.unwrap();
        y.write_all(&[2; 1000]).await.unwrap();
        x.read_exact(&mut got).await.unwrap();

        // a third connection from one address, to each server: refused
        let mut held = Vec::new();
        for port in [common::port_of(&url), relay] {
            for _ in 0..3 {
                held.push(common::connect_from([127, 0, 0, 5], port).await.unwrap());
            }
        }

        // the counts show in a scrape (the servers count as they go: looked at until they do,
        // for at most 10 s)
        let mut text = String::new();
        for _ in 0..200 {
            text = get(metrics, "/metrics").await;
            let refused = |s: &str| sample(&text, s).unwrap_or(0.0);
            if sample(&text, r#"fowl_mailbox_closes_total{mood="happy"}"#) == Some(2.0)
                && refused(r#"fowl_mailbox_refused_total{reason="per_address"}"#) >= 1.0
                && refused(r#"fowl_relay_refused_total{reason="per_address"}"#) >= 1.0
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            sample(&text, r#"fowl_mailbox_closes_total{mood="happy"}"#),
            Some(2.0),
            "{text}"
        );
        assert!(sample(&text, "fowl_mailbox_accepted_total").unwrap() >= 2.0);
        assert_eq!(sample(&text, "fowl_relay_pairs_total"), Some(1.0), "{text}");
        assert_eq!(
            sample(&text, "fowl_relay_bytes_total"),
            Some(2000.0),
            "{text}"
        );
        assert!(
            sample(&text, "fowl_relay_connections").unwrap() >= 2.0,
            "{text}"
        );
        assert!(
            sample(&text, r#"fowl_mailbox_refused_total{reason="per_address"}"#).unwrap() >= 1.0
        );
        assert!(sample(&text, r#"fowl_relay_refused_total{reason="per_address"}"#).unwrap() >= 1.0);
        assert!(
            text.contains("# TYPE fowl_mailbox_connections gauge"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        // anything else is not found
        assert!(get(metrics, "/").await.starts_with("HTTP/1.1 404"));
        drop(held);
    })
    .await
    .unwrap();
    let logs = server.stop().await;
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["level"] == "WARN"
            && l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("refused"))),
        "{logs}"
    );
}
