//! The `chat` example end to end: three tokio-tungstenite clients in two
//! rooms against the compiled binary, with three-second tokens. alice
//! renews across several expiries and keeps chatting; bob is kicked by the
//! admin route (4403); carol renews without the writer role and is refused.
//! Broadcasts reach their own room only; Ctrl-C closes the rest with 1001.
//! Then the example's page in headless Chromium (`tests/browser/chat.mjs`),
//! skipped with one `SKIPPED` line without chromium, node and npm (a failure
//! under `CI=true`), like `tests/browser_client.rs`.

#[path = "common/browser.rs"]
mod browser_tools;
mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ExampleProcess;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const ADMIN: &str = "admin token for the chat example test";

/// `POST path` over a fresh connection; (status, body).
async fn post(addr: SocketAddr, path: &str, bearer: Option<&str>) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = bearer.map_or_else(String::new, |b| format!("Authorization: Bearer {b}\r\n"));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

#[derive(Debug, PartialEq)]
enum Event {
    App(Value),
    Renewed,
    Rejected(Value),
    Closed(u16),
}

/// A client driven by its own task, as a real one is: it answers every
/// `auth.expiring` with a fresh token from `/token` for its user and
/// (changeable) roles, and reports what it sees.
struct Chatter {
    say: mpsc::UnboundedSender<String>,
    events: mpsc::UnboundedReceiver<Event>,
    roles: Arc<Mutex<String>>,
}

impl Chatter {
    async fn join(addr: SocketAddr, user: &str, roles: &str, room: &str) -> Self {
        let (_, token) = post(addr, &format!("/token?user={user}&roles={roles}"), None).await;
        let auth = format!("Bearer {token}");
        let request = common::request(addr, &format!("/ws/{room}"), &[("authorization", &auth)]);
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let (say, mut said) = mpsc::unbounded_channel::<String>();
        let (report, events) = mpsc::unbounded_channel();
        let roles = Arc::new(Mutex::new(roles.to_owned()));
        let (user, renew_roles) = (user.to_owned(), Arc::clone(&roles));
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    Some(text) = said.recv() => {
                        let _ = ws.send(WsMessage::Text(text.into())).await;
                        continue;
                    }
                    message = ws.next() => message,
                };
                let Some(Ok(message)) = message else { break };
                let event = match message {
                    WsMessage::Close(frame) => Event::Closed(frame.map_or(1005, |f| f.code.into())),
                    WsMessage::Text(text) => {
                        let value: Value = serde_json::from_str(text.as_str()).unwrap();
                        match value["type"].as_str() {
                            Some("auth.expiring") => {
                                let roles = renew_roles.lock().unwrap().clone();
                                let path = format!("/token?user={user}&roles={roles}");
                                let (_, token) = post(addr, &path, None).await;
                                let renew = json!({"type": "auth.renew", "token": token});
                                let _ = ws.send(WsMessage::Text(renew.to_string().into())).await;
                                continue;
                            }
                            Some("auth.renewed") => Event::Renewed,
                            Some("auth.renew_rejected") => Event::Rejected(value),
                            _ => Event::App(value),
                        }
                    }
                    _ => continue,
                };
                let _ = report.send(event);
            }
        });
        Self { say, events, roles }
    }

    fn say(&self, text: &str) {
        self.say.send(text.to_owned()).unwrap();
    }

    /// The next event other than a renewal; counts renewals on the way.
    async fn next(&mut self, renewals: &mut u32) -> Event {
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), self.events.recv())
                .await
                .expect("no event within 10 s")
                .expect("client task ended");
            match event {
                Event::Renewed => *renewals += 1,
                other => return other,
            }
        }
    }

    /// Asserts nothing but renewals arrive for `wait`.
    async fn quiet(&mut self, wait: Duration) -> u32 {
        let mut renewals = 0;
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(event) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            assert_eq!(event, Some(Event::Renewed), "unexpected event");
            renewals += 1;
        }
        renewals
    }
}

fn said(from: &str, text: &str) -> Event {
    Event::App(json!({"from": from, "text": text}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_example_rooms_renewal_kick_and_roles() {
    let mut example = ExampleProcess::start(
        "chat",
        &[
            ("WS_AUTH_ADDR", "127.0.0.1:0"),
            (
                "WS_AUTH_HS256_SECRET",
                "a secret for the chat example test, 32+ bytes",
            ),
            ("WS_AUTH_TOKEN_TTL_SECS", "3"),
            ("WS_AUTH_NOTIFY_BEFORE_SECS", "1"),
            ("WS_AUTH_LEEWAY_SECS", "0"),
            ("WS_AUTH_ADMIN_TOKEN", ADMIN),
        ],
    );
    let addr: SocketAddr = example
        .line_after("listening on http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();

    let mut alice = Chatter::join(addr, "alice", "writer", "a").await;
    let mut bob = Chatter::join(addr, "bob", "writer", "a").await;
    let mut carol = Chatter::join(addr, "carol", "writer", "b").await;
    let (mut alice_renewals, mut ignored) = (0, 0);

    // Room a hears alice; room b does not.
    alice.say("hello a");
    assert_eq!(
        alice.next(&mut alice_renewals).await,
        said("alice", "hello a")
    );
    assert_eq!(bob.next(&mut ignored).await, said("alice", "hello a"));
    carol.say("hello b");
    assert_eq!(carol.next(&mut ignored).await, said("carol", "hello b"));

    // The admin route: refused without its token, then kicks bob with 4403.
    assert_eq!(post(addr, "/admin/kick/bob", None).await.0, 401);
    assert_eq!(post(addr, "/admin/kick/bob", Some("wrong")).await.0, 401);
    let (status, body) = post(addr, "/admin/kick/bob", Some(ADMIN)).await;
    assert_eq!((status, body.as_str()), (200, r#"{"closed":1}"#));
    assert_eq!(bob.next(&mut ignored).await, Event::Closed(4403));

    // carol's next token lacks `writer`: once it is in, she is read-only.
    *carol.roles.lock().unwrap() = String::new();
    let mut carol_renewals = 0;
    assert_eq!(
        carol.next(&mut carol_renewals).await,
        Event::App(json!({"roles": []}))
    );
    assert!(carol_renewals >= 1);
    carol.say("still here?");
    assert_eq!(
        carol.next(&mut ignored).await,
        Event::App(json!({"error": "read-only"}))
    );

    // alice keeps chatting across several expiries on one connection.
    for n in 0..8 {
        let text = format!("a{n}");
        alice.say(&text);
        assert_eq!(alice.next(&mut alice_renewals).await, said("alice", &text));
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert!(alice_renewals >= 3, "alice renewed {alice_renewals} times");
    // Nothing of room a reached carol, nor of room b alice.
    carol.quiet(Duration::from_millis(300)).await;
    alice.quiet(Duration::from_millis(300)).await;

    // Graceful shutdown: Ctrl-C closes every socket with 1001, then exits.
    let pid = example.child.id().to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(signalled.success());
    assert_eq!(alice.next(&mut ignored).await, Event::Closed(1001));
    assert_eq!(carol.next(&mut ignored).await, Event::Closed(1001));
    assert_eq!(example.line_after("stopped"), "");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = example.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the example did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn chat_example_page_in_chromium() {
    const TEST: &str = "example_chat::chat_example_page_in_chromium";
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let driver = root.join("tests/browser");
    let Some((node, chromium)) = browser_tools::tools(TEST, true) else {
        return;
    };
    if !browser_tools::playwright(TEST, &driver) {
        return;
    }
    let mut server = ExampleProcess::start(
        "chat",
        &[
            ("WS_AUTH_ADDR", "127.0.0.1:0"),
            ("WS_AUTH_TOKEN_TTL_SECS", "4"),
            ("WS_AUTH_NOTIFY_BEFORE_SECS", "2"),
            ("WS_AUTH_LEEWAY_SECS", "0"),
            ("WS_AUTH_ADMIN_TOKEN", ADMIN),
        ],
    );
    let url = server.line_after("listening on ");
    let output = std::process::Command::new(node)
        .arg(driver.join("chat.mjs"))
        .args([url.as_str(), ADMIN, "3"])
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "browser run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(result["kick"], json!({"closed": 1}), "{result}");
    assert_eq!(result["dave"]["closed"], 4403, "{result}");
    assert!(
        result["alice"]["renewals"].as_u64().unwrap() >= 3,
        "{result}"
    );
    assert_eq!(result["alice"]["state"], "open", "{result}");
    assert_eq!(result["errors"], json!([]), "{result}");
    assert!(
        !result.to_string().contains("eyJ"),
        "a token reached the page"
    );
}
