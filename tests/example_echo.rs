//! The `echo` example as a newcomer runs it: start the binary, take the
//! address and sample token it prints, connect, echo, ask for `claims`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{next_json, next_message, send_text};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn example_binary() -> std::path::PathBuf {
    // tests live in target/<profile>/deps; examples in target/<profile>/examples.
    let deps = std::env::current_exe().unwrap();
    deps.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("echo")
}

#[tokio::test]
async fn echo_example_serves_its_sample_token() {
    let mut child = Command::new(example_binary())
        .env("WS_AUTH_ADDR", "127.0.0.1:0")
        .env(
            "WS_AUTH_HS256_SECRET",
            "a secret for the example test, 32+ bytes",
        )
        .env("WS_AUTH_AUDIENCE", "example-test")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the echo example is built by cargo test");
    let stdout = child.stdout.take().unwrap();
    let _guard = KillOnDrop(child);
    let mut lines = BufReader::new(stdout).lines();
    let listening = lines.next().unwrap().unwrap();
    let addr = listening
        .strip_prefix("listening on ")
        .expect(&listening)
        .to_owned();
    assert!(lines.next().unwrap().unwrap().starts_with("sample token"));
    let token = lines.next().unwrap().unwrap();

    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("wsauth.v1, bearer.{token}").parse().unwrap(),
    );
    let (mut client, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "wsauth.v1");
    send_text(&mut client, "hello").await;
    assert_eq!(
        next_message(&mut client).await,
        WsMessage::Text("hello".into())
    );
    send_text(&mut client, "claims").await;
    let claims = next_json(&mut client).await;
    assert_eq!(claims["sub"], "demo");
    assert_eq!(claims["aud"], "example-test");

    let refused = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await;
    assert!(refused.is_err());
}
