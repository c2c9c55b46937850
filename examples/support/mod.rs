//! What the examples share and a real application replaces: environment
//! parsing, tracing setup and a stand-in token issuer.
//!
//! Included by each example with `#[path = "support/mod.rs"] mod support;`
//! (a subdirectory, so cargo does not build it as an example of its own).
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

/// Development secret used (and announced) when `WS_AUTH_HS256_SECRET` is unset.
pub(crate) const DEV_SECRET: &str = "development secret, replace me: 32+ bytes";

/// Logs of this crate at `info`, or what `RUST_LOG` says.
pub(crate) fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "axum_ws_auth=info".into()),
        )
        .init();
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM.
pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        () = terminate => {}
    }
}

/// The variable `name` parsed, or `default` when it is unset.
pub(crate) fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|_| format!("{name}={value:?} is not a valid value")),
        Err(_) => Ok(default),
    }
}

/// A whole number of seconds from the variable `name`.
pub(crate) fn env_secs(name: &str, default: u64) -> Result<Duration, String> {
    env_or(name, default).map(Duration::from_secs)
}

/// The settings every example reads.
#[derive(Debug, Clone)]
pub(crate) struct Env {
    /// `WS_AUTH_ADDR`.
    pub(crate) addr: String,
    /// `WS_AUTH_HS256_SECRET` (at least 32 bytes; [`DEV_SECRET`] when unset).
    pub(crate) secret: String,
    /// `WS_AUTH_AUDIENCE`.
    pub(crate) audience: String,
    /// `WS_AUTH_TOKEN_TTL_SECS`: lifetime of the tokens the example mints.
    pub(crate) token_ttl: Duration,
    /// `WS_AUTH_NOTIFY_BEFORE_SECS`.
    pub(crate) notify_before: Duration,
    /// `WS_AUTH_LEEWAY_SECS`.
    pub(crate) leeway: Duration,
}

/// Per-example defaults for [`Env::load`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Defaults {
    pub(crate) addr: &'static str,
    pub(crate) audience: &'static str,
    pub(crate) token_ttl_secs: u64,
    pub(crate) notify_before_secs: u64,
    pub(crate) leeway_secs: u64,
}

impl Env {
    /// Reads the environment; a malformed value is an error, an unset one
    /// takes its default.
    pub(crate) fn load(defaults: Defaults) -> Result<Self, String> {
        let secret = std::env::var("WS_AUTH_HS256_SECRET").unwrap_or_else(|_| {
            eprintln!("WS_AUTH_HS256_SECRET is unset: using the development secret");
            DEV_SECRET.to_owned()
        });
        Ok(Self {
            addr: env_or("WS_AUTH_ADDR", defaults.addr.to_owned())?,
            secret,
            audience: env_or("WS_AUTH_AUDIENCE", defaults.audience.to_owned())?,
            token_ttl: env_secs("WS_AUTH_TOKEN_TTL_SECS", defaults.token_ttl_secs)?,
            notify_before: env_secs("WS_AUTH_NOTIFY_BEFORE_SECS", defaults.notify_before_secs)?,
            leeway: env_secs("WS_AUTH_LEEWAY_SECS", defaults.leeway_secs)?,
        })
    }

    /// The issuer of the example's tokens, signing with this secret.
    pub(crate) fn minter(&self) -> Minter {
        Minter {
            key: EncodingKey::from_secret(self.secret.as_bytes()),
            audience: self.audience.clone(),
            ttl: self.token_ttl,
        }
    }
}

/// Mints HS256 tokens: a stand-in for the identity provider of a real
/// deployment, which is where tokens come from there.
#[derive(Clone)]
pub(crate) struct Minter {
    key: EncodingKey,
    audience: String,
    ttl: Duration,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Minter {
    /// A token for `sub` valid for the configured lifetime, with `sub`,
    /// `aud`, `iat`, `exp` and the fields of `extra` (an object) as claims.
    pub(crate) fn mint(
        &self,
        sub: &str,
        extra: Value,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.mint_for(sub, self.ttl, extra)
    }

    /// A token endpoint's answer: the token as `text/plain`, never cached,
    /// or 500 if it cannot be signed.
    pub(crate) fn token_response(&self, sub: &str, extra: Value) -> axum::response::Response {
        use axum::http::{StatusCode, header};
        use axum::response::IntoResponse;
        match self.mint(sub, extra) {
            Ok(jwt) => ([(header::CACHE_CONTROL, "no-store")], jwt).into_response(),
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }

    /// Like [`mint`](Self::mint), valid for `ttl`.
    pub(crate) fn mint_for(
        &self,
        sub: &str,
        ttl: Duration,
        extra: Value,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|now| now.as_secs())
            .unwrap_or_default();
        let mut claims = json!({
            "sub": sub,
            "aud": self.audience,
            "iat": iat,
            "exp": iat + ttl.as_secs(),
        });
        if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
            claims.extend(extra);
        }
        jsonwebtoken::encode(&Header::default(), &claims, &self.key)
    }
}

/// The demo page and the copyable browser client (`wsauth-client.js`) next
/// to it, as the browser and chat examples serve them.
pub(crate) fn page_routes<S>(page: &'static str) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    use axum::http::header::CONTENT_TYPE;
    use axum::response::Html;
    use axum::routing::get;

    const CLIENT: &str = include_str!("../browser/wsauth-client.js");
    axum::Router::new()
        .route("/", get(move || async move { Html(page) }))
        .route(
            "/wsauth-client.js",
            get(|| async { ([(CONTENT_TYPE, "text/javascript; charset=utf-8")], CLIENT) }),
        )
}
