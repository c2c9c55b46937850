//! The `echo` example as a newcomer runs it: start the binary, take the
//! address and sample token it prints, connect, echo, ask for `claims`.

mod common;

use common::{ExampleProcess, next_json, next_message, send_text};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test]
async fn echo_example_serves_its_sample_token() {
    let mut example = ExampleProcess::start(
        "echo",
        &[
            ("WS_AUTH_ADDR", "127.0.0.1:0"),
            (
                "WS_AUTH_HS256_SECRET",
                "a secret for the example test, 32+ bytes",
            ),
            ("WS_AUTH_AUDIENCE", "example-test"),
        ],
    );
    let addr = example.line_after("listening on ");
    example.line_after("sample token");
    let token = example.line();

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

    // Any `aud` shape RFC 7519 allows: the example restates no registered claim.
    let listed = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({
            "sub": "listed",
            "exp": common::now() + 60,
            "aud": ["another-service", "example-test"],
        }),
        &jsonwebtoken::EncodingKey::from_secret(b"a secret for the example test, 32+ bytes"),
    )
    .unwrap();
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {listed}").parse().unwrap());
    let (mut client, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    send_text(&mut client, "claims").await;
    let claims = next_json(&mut client).await;
    assert_eq!(claims["aud"][1], "example-test");

    let refused = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await;
    assert!(refused.is_err());
}
