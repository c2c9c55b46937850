//! Signing keys from a pinned HTTPS JWKS URL (feature `jwks`).
//!
//! Keys are cached by `(issuer, kid)`. A token whose `kid` is not cached is
//! refused at once (`unknown signing key`) and triggers a background
//! refresh, rate limited so a flood of made-up `kid`s cannot turn into a
//! flood of fetches; clients retry with backoff and find the new key. A
//! failed refresh keeps the keys already known (stale-if-error). The
//! token's own key hints (`jku`, `x5u`, `jwk`, `x5c`) are never followed:
//! only the configured URL is fetched.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio_rustls::rustls;

/// A JWKS document larger than this is refused.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Connect, TLS and response must complete within this.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a JWKS could not be fetched or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The URL is not `https://host[:port]/path`.
    #[error("the JWKS URL must be an https:// URL with a host")]
    Url,
    /// Connecting, the TLS handshake or the HTTP exchange failed.
    #[error("fetching the JWKS failed: {0}")]
    Fetch(String),
    /// The server answered with another status than 200.
    #[error("the JWKS server answered {0}")]
    Status(http::StatusCode),
    /// The document is not a JWK set (or is larger than 256 KiB).
    #[error("the JWKS document is invalid: {0}")]
    Document(String),
    /// The set holds no usable signing key (with a `kid`, not symmetric).
    #[error("the JWKS holds no usable signing key")]
    NoKeys,
}

#[derive(Clone)]
pub(crate) struct CachedKey {
    pub(crate) key: DecodingKey,
    /// The `alg` the JWK pins, if it names one.
    pub(crate) alg: Option<Algorithm>,
}

/// Keys fetched from one issuer's JWKS URL; cheap to clone.
///
/// ```no_run
/// # async fn f(tls: std::sync::Arc<tokio_rustls::rustls::ClientConfig>) -> Result<(), Box<dyn std::error::Error>> {
/// use axum_ws_auth::{JwtValidator, token::JwksSource};
/// use jsonwebtoken::{Algorithm, Validation};
///
/// let keys = JwksSource::builder("https://auth.example.com/.well-known/jwks.json", "https://auth.example.com")
///     .tls_config(tls)
///     .fetch()
///     .await?;
/// let validator = JwtValidator::jwks(keys, Validation::new(Algorithm::RS256))?
///     .with_audience(&["chat"]);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct JwksSource {
    inner: Arc<Inner>,
}

struct Inner {
    url: Uri,
    issuer: String,
    tls: Arc<rustls::ClientConfig>,
    min_refresh_interval: Duration,
    max_age: Duration,
    keys: RwLock<Arc<HashMap<(String, String), CachedKey>>>,
    fetched_at: Mutex<Instant>,
    last_attempt: Mutex<Option<Instant>>,
    refreshing: AtomicBool,
}

/// Configuration of a [`JwksSource`].
#[must_use]
pub struct JwksSourceBuilder {
    url: String,
    issuer: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    min_refresh_interval: Duration,
    max_age: Duration,
}

impl JwksSourceBuilder {
    /// TLS settings (trusted roots) for the JWKS host. Required.
    pub fn tls_config(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// At most one refresh triggered by an unknown `kid` per this interval
    /// (default 30 s).
    pub fn min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_refresh_interval = interval;
        self
    }

    /// Keys older than this are refreshed in the background on the next
    /// lookup (default 15 minutes); they stay in use until a refresh
    /// succeeds.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// Fetches the keys once; fails if they cannot be had, so a server does
    /// not start without them.
    pub async fn fetch(self) -> Result<JwksSource, JwksError> {
        let url: Uri = self.url.parse().map_err(|_| JwksError::Url)?;
        if url.scheme_str() != Some("https") || url.host().is_none() {
            return Err(JwksError::Url);
        }
        let tls = self
            .tls
            .ok_or_else(|| JwksError::Fetch("no TLS configuration".into()))?;
        let source = JwksSource {
            inner: Arc::new(Inner {
                url,
                issuer: self.issuer,
                tls,
                min_refresh_interval: self.min_refresh_interval,
                max_age: self.max_age,
                keys: RwLock::default(),
                fetched_at: Mutex::new(Instant::now()),
                last_attempt: Mutex::new(None),
                refreshing: AtomicBool::new(false),
            }),
        };
        source.refresh().await?;
        Ok(source)
    }
}

impl std::fmt::Debug for JwksSourceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksSourceBuilder")
            .field("url", &self.url)
            .field("issuer", &self.issuer)
            .field("min_refresh_interval", &self.min_refresh_interval)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl JwksSource {
    /// Keys for tokens issued by `issuer`, from the JWKS at `url`.
    pub fn builder(url: impl Into<String>, issuer: impl Into<String>) -> JwksSourceBuilder {
        JwksSourceBuilder {
            url: url.into(),
            issuer: issuer.into(),
            tls: None,
            min_refresh_interval: Duration::from_secs(30),
            max_age: Duration::from_secs(15 * 60),
        }
    }

    /// The issuer these keys belong to.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// How many keys are cached.
    pub fn key_count(&self) -> usize {
        self.read_keys().len()
    }

    /// Fetches the set now and replaces the cache; on failure the cache is
    /// kept as it was (stale-if-error). Returns the number of keys.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        *lock(&self.inner.last_attempt) = Some(Instant::now());
        let set = fetch(&self.inner.url, &self.inner.tls).await?;
        let keys: HashMap<_, _> = set
            .keys
            .iter()
            .filter_map(|jwk| {
                usable_key(jwk).map(|(kid, key)| ((self.inner.issuer.clone(), kid), key))
            })
            .collect();
        if keys.is_empty() {
            return Err(JwksError::NoKeys);
        }
        let count = keys.len();
        *self
            .inner
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        *lock(&self.inner.fetched_at) = Instant::now();
        tracing::info!(target: "axum_ws_auth", event = "jwks_refreshed", keys = count, "JWKS refreshed");
        Ok(count)
    }

    /// The cached key for `kid`; schedules a background refresh when the
    /// cache is old, or (rate limited) when `kid` is unknown.
    pub(crate) fn key(&self, kid: &str) -> Option<CachedKey> {
        let found = self
            .read_keys()
            .get(&(self.inner.issuer.clone(), kid.to_owned()))
            .cloned();
        let stale = lock(&self.inner.fetched_at).elapsed() >= self.inner.max_age;
        if found.is_none() || stale {
            self.refresh_in_background();
        }
        found
    }

    fn read_keys(&self) -> Arc<HashMap<(String, String), CachedKey>> {
        Arc::clone(
            &self
                .inner
                .keys
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    fn refresh_in_background(&self) {
        {
            let mut last = lock(&self.inner.last_attempt);
            if last.is_some_and(|at| at.elapsed() < self.inner.min_refresh_interval) {
                return;
            }
            if self.inner.refreshing.swap(true, Ordering::AcqRel) {
                return;
            }
            *last = Some(Instant::now());
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.refreshing.store(false, Ordering::Release);
            return;
        };
        let source = self.clone();
        runtime.spawn(async move {
            if let Err(error) = source.refresh().await {
                tracing::warn!(target: "axum_ws_auth", event = "jwks_refresh_failed", %error, "JWKS refresh failed; keeping the cached keys");
            }
            source.inner.refreshing.store(false, Ordering::Release);
        });
    }
}

impl std::fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksSource")
            .field("url", &self.inner.url)
            .field("issuer", &self.inner.issuer)
            .field("keys", &self.key_count())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A signing key with a `kid`; symmetric keys and encryption keys are
/// never taken from a JWKS.
fn usable_key(jwk: &Jwk) -> Option<(String, CachedKey)> {
    use jsonwebtoken::jwk::AlgorithmParameters;
    let kid = jwk.common.key_id.clone()?;
    if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_))
        || matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption))
    {
        return None;
    }
    let alg = match jwk.common.key_algorithm {
        // A pinned alg this crate cannot verify makes the key unusable.
        Some(alg) => Some(alg.to_string().parse::<Algorithm>().ok()?),
        None => None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((kid, CachedKey { key, alg }))
}

async fn fetch(url: &Uri, tls: &Arc<rustls::ClientConfig>) -> Result<JwkSet, JwksError> {
    tokio::time::timeout(FETCH_TIMEOUT, fetch_once(url, tls))
        .await
        .map_err(|_| JwksError::Fetch("timed out".into()))?
}

async fn fetch_once(url: &Uri, tls: &Arc<rustls::ClientConfig>) -> Result<JwkSet, JwksError> {
    let fetch_error = |e: &dyn std::fmt::Display| JwksError::Fetch(e.to_string());
    let host = url.host().ok_or(JwksError::Url)?;
    let port = url.port_u16().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| fetch_error(&e))?;
    let name =
        rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|_| JwksError::Url)?;
    let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| fetch_error(&e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fetch_error(&e))?;
    tokio::spawn(connection);
    let authority = url.authority().map(|a| a.as_str()).unwrap_or(host);
    let request = Request::get(url.path_and_query().map_or("/", |p| p.as_str()))
        .header(header::HOST, authority)
        .header(header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| fetch_error(&e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| fetch_error(&e))?;
    if response.status() != http::StatusCode::OK {
        return Err(JwksError::Status(response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| JwksError::Document(e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| JwksError::Document(e.to_string()))
}
