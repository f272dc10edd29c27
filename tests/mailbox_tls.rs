//! `wss://`: our mailbox server behind a TLS-terminating proxy with a private certificate, and
//! serving TLS itself (`fowl server --tls-cert --tls-key`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use fowl::wormhole::{Mood, Wormhole, WormholeConfig, WormholeError};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

/// Accepts TLS on a loopback port and splices each connection to `backend_port`.
async fn tls_proxy(backend_port: u16) -> (u16, Vec<u8>, tokio::task::JoinHandle<()>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_der = certified.cert.der().to_vec();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone().into()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut backend) = TcpStream::connect(("127.0.0.1", backend_port)).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut backend).await;
            });
        }
    });
    (port, cert_der, task)
}

/// Two wormholes on `url` trusting `cert` meet, agree on the key, and `message` goes through;
/// both close happily.
async fn session_trusting(url: &str, cert: Vec<u8>, message: &[u8]) {
    let mut config = WormholeConfig::new("appid", url);
    config.extra_root_certificates = vec![cert];
    let mut a = Wormhole::connect(config.clone()).await.unwrap();
    a.allocate_code(2);
    let code = a.allocated_code().await.unwrap();
    let mut b = Wormhole::connect(config).await.unwrap();
    b.set_code(&code).await.unwrap();
    assert_eq!(a.verifier().await.unwrap(), b.verifier().await.unwrap());
    a.send_message(message.to_vec());
    assert_eq!(b.recv_message().await.unwrap(), message);
    assert_eq!(a.close().await, Ok(Mood::Happy));
    assert_eq!(b.close().await, Ok(Mood::Happy));
}

#[tokio::test]
async fn wss_to_a_server_with_a_private_ca() {
    let servers = common::RustServers::start();
    let (port, cert, proxy) = tls_proxy(servers.mailbox.port).await;
    let url = format!("wss://localhost:{port}/v1");

    tokio::time::timeout(Duration::from_secs(60), async {
        // not trusted: a clear connection error naming the URL
        let err = Wormhole::connect(WormholeConfig::new("appid", &url))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, WormholeError::ServerConnection { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(&url), "{err}");

        session_trusting(&url, cert, b"over tls").await;
    })
    .await
    .unwrap();
    proxy.abort();
}

#[tokio::test]
async fn wss_served_by_our_mailbox_server_itself() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_pem, certified.cert.pem()).unwrap();
    std::fs::write(&key_pem, certified.signing_key.serialize_pem()).unwrap();
    let config = fowl::server::mailbox::MailboxConfig {
        tls: Some(fowl::server::mailbox::TlsFiles {
            cert: cert_pem,
            key: key_pem,
        }),
        ..Default::default()
    };
    let server =
        fowl::server::mailbox::serve(TcpListener::bind("127.0.0.1:0").await.unwrap(), config)
            .unwrap();
    assert!(server.url().starts_with("wss://"));
    let url = format!("wss://localhost:{}/v1", server.addr.port());
    tokio::time::timeout(Duration::from_secs(60), async {
        // plain ws:// to a TLS server gets nowhere
        let plain = format!("ws://127.0.0.1:{}/v1", server.addr.port());
        let mut config = WormholeConfig::new("appid", &plain);
        config.connect_timeout = Duration::from_secs(3);
        assert!(Wormhole::connect(config).await.is_err());

        session_trusting(&url, certified.cert.der().to_vec(), b"over our own tls").await;
    })
    .await
    .unwrap();
}
