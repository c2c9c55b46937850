//! `wss://` end to end: the `wss` example behind axum-server and rustls,
//! with a certificate generated for this test, a rustls client that renews
//! over TLS, Prometheus `/metrics`, and graceful shutdown on SIGINT.

mod common;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct Tls {
    connector: TlsConnector,
    addr: String,
}

impl Tls {
    async fn connect(&self) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(&self.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        self.connector.connect(name, tcp).await.unwrap()
    }
}

#[tokio::test]
async fn wss_example_authenticates_renews_reports_and_shuts_down() {
    let mut example = WssExample::start("tls");
    let addr = example.addr.to_string();
    let port = example.addr.port();
    let tls = Tls {
        connector: tls_connector(&example.cert, &[]),
        addr,
    };

    // Authenticated over TLS, then renewed in-band.
    let mut request = format!("wss://localhost:{port}/ws")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token("alice", 600)).parse().unwrap(),
    );
    let (mut client, _) = tokio_tungstenite::client_async(request, tls.connect().await)
        .await
        .unwrap();
    client_send(&mut client, "over tls").await;
    assert_eq!(next(&mut client).await, WsMessage::Text("over tls".into()));
    let renewal = json!({"type": "auth.renew", "token": token("alice", 900), "id": "t"});
    client_send(&mut client, &renewal.to_string()).await;
    let renewed: serde_json::Value = match next(&mut client).await {
        WsMessage::Text(text) => serde_json::from_str(text.as_str()).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(renewed["type"], "auth.renewed");

    // Unauthenticated upgrades are refused over TLS too.
    let request = format!("wss://localhost:{port}/ws")
        .into_client_request()
        .unwrap();
    assert!(
        tokio_tungstenite::client_async(request, tls.connect().await)
            .await
            .is_err()
    );

    // Prometheus counters over HTTPS.
    let mut stream = tls.connect().await;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.ok();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains(r#"ws_auth_renewals_total{result="accepted",error="none"} 1"#),
        "{body}"
    );
    assert!(body.contains("ws_auth_connections_active 1"), "{body}");
    assert!(
        body.contains(r#"ws_auth_upgrades_refused_total{status="401",error="none"} 1"#),
        "{body}"
    );

    // SIGINT: the open socket gets 1001 and the process exits cleanly.
    let pid = example.process.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    loop {
        match next(&mut client).await {
            WsMessage::Close(Some(frame)) => {
                assert_eq!(
                    (u16::from(frame.code), frame.reason.as_str()),
                    (1001, "server shutting down")
                );
                break;
            }
            WsMessage::Close(None) => panic!("close without a code"),
            _ => continue,
        }
    }
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        futures_util::StreamExt::next(&mut client),
    )
    .await;
    assert_eq!(example.process.line_after("stopped"), "");
    let status = example.process.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

async fn client_send<S>(client: &mut tokio_tungstenite::WebSocketStream<S>, text: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    futures_util::SinkExt::send(client, WsMessage::Text(text.into()))
        .await
        .unwrap();
}

async fn next<S>(client: &mut tokio_tungstenite::WebSocketStream<S>) -> WsMessage
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        futures_util::StreamExt::next(client),
    )
    .await
    .expect("no frame within 10 s")
    .expect("stream ended")
    .expect("websocket error")
}
