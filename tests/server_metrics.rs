//! `fowl server --metrics-listen`: a session through the mailbox server, a relay pair and refused
//! connections, then the Prometheus text scraped over HTTP shows each of them; the server's logs
//! (`--log-format json`) are JSON lines.

use std::process::Stdio;
use std::time::Duration;

use fowl::wormhole::{Mood, Wormhole, WormholeConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

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

async fn connect_from(from: [u8; 4], port: u16) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    socket.connect(([127, 0, 0, 1], port).into()).await.unwrap()
}

#[tokio::test]
async fn metrics_count_connections_moods_relay_pairs_bytes_and_refusals() {
    let mut server = Command::new(env!("CARGO_BIN_EXE_fowl"))
        .args(["server", "--mailbox-listen", "127.0.0.1:0"])
        .args([
            "--relay-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--mailbox-max-per-address",
            "2",
            "--relay-max-per-address",
            "2",
        ])
        .args(["--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn fowl server");
    let mut lines = tokio::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let mut stderr = server.stderr.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let (mut url, mut relay, mut metrics) = (String::new(), 0u16, 0u16);
    let port_of = |s: &str| -> u16 {
        let s = s.trim_end_matches("/metrics").trim_end_matches("/v1");
        s.rsplit(':').next().unwrap().parse().unwrap()
    };
    tokio::time::timeout(Duration::from_secs(120), async {
        while url.is_empty() || relay == 0 || metrics == 0 {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("fowl server exited");
            if let Some(u) = line.strip_prefix("mailbox server listening on ") {
                url = u.to_string();
            } else if let Some(h) = line.strip_prefix("transit relay listening on ") {
                relay = port_of(h);
            } else if let Some(m) = line.strip_prefix("metrics listening on ") {
                metrics = port_of(m);
            }
        }
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
        for port in [port_of(&url), relay] {
            for _ in 0..3 {
                held.push(connect_from([127, 0, 0, 5], port).await);
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
    server.kill().await.unwrap();
    let logs = logs.await.unwrap();
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
