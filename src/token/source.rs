//! Finding the token in an upgrade request.
//!
//! Sources are tried in a fixed order of precedence (header, subprotocol,
//! cookie, query, then the application's own extractor); the first one
//! present wins and the others are ignored, so a request never gets
//! authenticated by a token the client did not mean to use.

use std::borrow::Cow;
use std::sync::Arc;

use http::header::{AUTHORIZATION, COOKIE};
use http::request::Parts;
use http::{HeaderMap, Uri};

use super::InvalidRequest;
use super::offered::OfferedProtocols;

/// Where the token of a connection came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenSource {
    /// `Authorization: Bearer <jwt>`.
    Header,
    /// A `bearer.<jwt>` entry of `Sec-WebSocket-Protocol`.
    Subprotocol,
    /// A cookie of the configured name.
    Cookie,
    /// The `access_token` query parameter.
    Query,
    /// The application's own location, read by the extractor given to
    /// [`WsAuthLayerBuilder::token_from`](crate::WsAuthLayerBuilder::token_from).
    Custom,
}

impl TokenSource {
    /// A stable lowercase name, used in logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenSource::Header => "header",
            TokenSource::Subprotocol => "subprotocol",
            TokenSource::Cookie => "cookie",
            TokenSource::Query => "query",
            TokenSource::Custom => "custom",
        }
    }
}

/// The application's token extractor; see
/// [`WsAuthLayerBuilder::token_from`](crate::WsAuthLayerBuilder::token_from).
pub(crate) type CustomSource =
    Arc<dyn Fn(&Parts) -> Result<Option<String>, InvalidRequest> + Send + Sync>;

/// Which sources are enabled.
#[derive(Clone)]
pub(crate) struct SourceConfig {
    pub(crate) header: bool,
    pub(crate) subprotocol: bool,
    pub(crate) cookie: Option<String>,
    pub(crate) query: bool,
    pub(crate) custom: Option<CustomSource>,
}

impl SourceConfig {
    pub(crate) fn any_enabled(&self) -> bool {
        self.header
            || self.subprotocol
            || self.cookie.is_some()
            || self.query
            || self.custom.is_some()
    }
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConfig")
            .field("header", &self.header)
            .field("subprotocol", &self.subprotocol)
            .field("cookie", &self.cookie)
            .field("query", &self.query)
            .field("custom", &self.custom.is_some())
            .finish()
    }
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            header: true,
            subprotocol: true,
            cookie: None,
            query: false,
            custom: None,
        }
    }
}

/// A token and where it was found. Its `Debug` never shows the token.
pub(crate) struct FoundToken<'a> {
    pub(crate) source: TokenSource,
    pub(crate) token: Cow<'a, str>,
}

impl std::fmt::Debug for FoundToken<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FoundToken")
            .field("source", &self.source)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Finds the token of highest precedence among the enabled sources; the
/// application's extractor, if any, comes last.
pub(crate) fn find_token<'a>(
    config: &SourceConfig,
    parts: &'a Parts,
    offered: &OfferedProtocols<'a>,
) -> Result<Option<FoundToken<'a>>, InvalidRequest> {
    let (headers, uri) = (&parts.headers, &parts.uri);
    let found = |source, token| Ok(Some(FoundToken { source, token }));
    if config.header
        && let Some(token) = from_authorization(headers)?
    {
        return found(TokenSource::Header, Cow::Borrowed(token));
    }
    if config.subprotocol
        && let Some(token) = offered.bearer
    {
        return found(TokenSource::Subprotocol, Cow::Borrowed(token));
    }
    if let Some(name) = &config.cookie
        && let Some(token) = from_cookie(headers, name)?
    {
        return found(TokenSource::Cookie, Cow::Borrowed(token));
    }
    if config.query
        && let Some(token) = from_query(uri)?
    {
        return found(TokenSource::Query, token);
    }
    if let Some(extract) = &config.custom
        && let Some(token) = extract(parts)?
    {
        return found(TokenSource::Custom, Cow::Owned(token));
    }
    Ok(None)
}

/// `Authorization: Bearer <b64token>` (RFC 6750 section 2.1). Another
/// scheme means "no bearer token here"; a broken bearer header is an error.
fn from_authorization(headers: &HeaderMap) -> Result<Option<&str>, InvalidRequest> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(InvalidRequest::DuplicateAuthorization);
    }
    let value = value
        .to_str()
        .map_err(|_| InvalidRequest::MalformedAuthorization)?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = rest.trim_matches(' ');
    if is_b64token(token) {
        Ok(Some(token))
    } else {
        Err(InvalidRequest::MalformedAuthorization)
    }
}

fn from_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, InvalidRequest> {
    let mut token = None;
    let pairs = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|list| list.split(';'))
        .filter_map(|pair| pair.trim().split_once('='));
    for (key, value) in pairs {
        if key != name {
            continue;
        }
        if token.is_some() {
            return Err(InvalidRequest::DuplicateCookie);
        }
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        token = Some(value);
    }
    Ok(token.filter(|value| !value.is_empty()))
}

fn from_query(uri: &Uri) -> Result<Option<Cow<'_, str>>, InvalidRequest> {
    let mut token = None;
    for pair in uri.query().unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "access_token" {
            continue;
        }
        if token.is_some() {
            return Err(InvalidRequest::MalformedQuery);
        }
        let value = percent_decode(value).ok_or(InvalidRequest::MalformedQuery)?;
        if value.is_empty() {
            return Err(InvalidRequest::MalformedQuery);
        }
        token = Some(value);
    }
    Ok(token)
}

fn percent_decode(text: &str) -> Option<Cow<'_, str>> {
    if !text.contains('%') {
        return Some(Cow::Borrowed(text));
    }
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = tail.get(..2)?;
            let hex = std::str::from_utf8(hex).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok().map(Cow::Owned)
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::token) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn parts(map: &HeaderMap, uri: &str) -> Parts {
        let (mut parts, ()) = http::Request::builder()
            .uri(uri)
            .body(())
            .unwrap()
            .into_parts();
        parts.headers = map.clone();
        parts
    }

    fn find(
        config: &SourceConfig,
        map: &HeaderMap,
        uri: &str,
    ) -> Result<Option<(TokenSource, String)>, InvalidRequest> {
        let parts = parts(map, uri);
        let offered = OfferedProtocols::parse(&parts.headers)?;
        Ok(find_token(config, &parts, &offered)?.map(|f| (f.source, f.token.into_owned())))
    }

    pub(in crate::token) fn all_sources() -> SourceConfig {
        SourceConfig {
            header: true,
            subprotocol: true,
            cookie: Some("jwt".into()),
            query: true,
            custom: None,
        }
    }

    /// Reads `x-access-token`; two of them are an invalid request.
    fn x_access_token() -> CustomSource {
        Arc::new(|parts: &Parts| {
            let mut values = parts.headers.get_all("x-access-token").iter();
            match (values.next(), values.next()) {
                (None, _) => Ok(None),
                (Some(value), None) => Ok(value.to_str().ok().map(str::to_owned)),
                _ => Err(InvalidRequest::Custom),
            }
        })
    }

    #[test]
    fn the_applications_extractor_comes_last() {
        let config = SourceConfig {
            custom: Some(x_access_token()),
            ..all_sources()
        };
        let map = headers(&[("x-access-token", "x.x.x"), ("cookie", "jwt=c.c.c")]);
        assert_eq!(
            find(&config, &map, "/ws?access_token=q.q.q").unwrap(),
            Some((TokenSource::Cookie, "c.c.c".into()))
        );
        let only = headers(&[("x-access-token", "x.x.x")]);
        assert_eq!(
            find(&config, &only, "/ws").unwrap(),
            Some((TokenSource::Custom, "x.x.x".into()))
        );
        assert_eq!(
            find(&config, &only, "/ws?access_token=q.q.q").unwrap(),
            Some((TokenSource::Query, "q.q.q".into()))
        );
        assert_eq!(find(&config, &HeaderMap::new(), "/ws").unwrap(), None);
        let twice = headers(&[("x-access-token", "x.x.x"), ("x-access-token", "y.y.y")]);
        assert_eq!(
            find(&config, &twice, "/ws").unwrap_err(),
            InvalidRequest::Custom
        );
        // A source before it that has a token: the extractor is not asked.
        assert_eq!(
            find(&config, &twice, "/ws?access_token=q.q.q").unwrap(),
            Some((TokenSource::Query, "q.q.q".into()))
        );
        assert!(format!("{config:?}").contains("custom: true"));
    }

    #[test]
    fn precedence_is_header_subprotocol_cookie_query() {
        let config = all_sources();
        let every = headers(&[
            ("authorization", "Bearer h.h.h"),
            ("sec-websocket-protocol", "wsauth.v1, bearer.s.s.s"),
            ("cookie", "a=1; jwt=c.c.c"),
        ]);
        let uri = "/ws?access_token=q.q.q";
        assert_eq!(
            find(&config, &every, uri).unwrap(),
            Some((TokenSource::Header, "h.h.h".into()))
        );
        let no_header = headers(&[
            ("sec-websocket-protocol", "wsauth.v1, bearer.s.s.s"),
            ("cookie", "a=1; jwt=c.c.c"),
        ]);
        assert_eq!(
            find(&config, &no_header, uri).unwrap(),
            Some((TokenSource::Subprotocol, "s.s.s".into()))
        );
        let cookie_only = headers(&[("cookie", "a=1; jwt=c.c.c")]);
        assert_eq!(
            find(&config, &cookie_only, uri).unwrap(),
            Some((TokenSource::Cookie, "c.c.c".into()))
        );
        assert_eq!(
            find(&config, &HeaderMap::new(), uri).unwrap(),
            Some((TokenSource::Query, "q.q.q".into()))
        );
        assert_eq!(find(&config, &HeaderMap::new(), "/ws").unwrap(), None);
    }

    #[test]
    fn disabled_sources_are_not_read() {
        let config = SourceConfig::default();
        let map = headers(&[("cookie", "jwt=c.c.c")]);
        assert_eq!(find(&config, &map, "/ws?access_token=q.q.q").unwrap(), None);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_other_schemes_are_absent() {
        let config = SourceConfig::default();
        for value in ["bearer a.b.c", "BEARER a.b.c", "Bearer   a.b.c"] {
            let map = headers(&[("authorization", value)]);
            assert_eq!(
                find(&config, &map, "/").unwrap(),
                Some((TokenSource::Header, "a.b.c".into())),
                "{value}"
            );
        }
        let basic = headers(&[("authorization", "Basic dXNlcjpwYXNz")]);
        assert_eq!(find(&config, &basic, "/").unwrap(), None);
    }

    #[test]
    fn broken_requests_are_invalid_requests() {
        let config = all_sources();
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, InvalidRequest);
        let cases: &[Case<'_>] = &[
            (
                &[("authorization", "Bearer")],
                "/",
                InvalidRequest::MalformedAuthorization,
            ),
            (
                &[("authorization", "Bearer a b")],
                "/",
                InvalidRequest::MalformedAuthorization,
            ),
            (
                &[
                    ("authorization", "Bearer a.b.c"),
                    ("authorization", "Bearer a.b.c"),
                ],
                "/",
                InvalidRequest::DuplicateAuthorization,
            ),
            (
                &[("sec-websocket-protocol", "wsauth.v1, bearer.a, bearer.b")],
                "/",
                InvalidRequest::DuplicateBearerSubprotocol,
            ),
            (
                &[("sec-websocket-protocol", "wsauth.v1,, bearer.a")],
                "/",
                InvalidRequest::MalformedSubprotocols,
            ),
            (
                &[("sec-websocket-protocol", "wsauth.v1, bearer.")],
                "/",
                InvalidRequest::MalformedSubprotocols,
            ),
            (
                &[("sec-websocket-protocol", "wsauth v1")],
                "/",
                InvalidRequest::MalformedSubprotocols,
            ),
            (
                &[("cookie", "jwt=a.b.c"), ("cookie", "jwt=d.e.f")],
                "/",
                InvalidRequest::DuplicateCookie,
            ),
            (
                &[],
                "/ws?access_token=a&access_token=b",
                InvalidRequest::MalformedQuery,
            ),
            (&[], "/ws?access_token=%zz", InvalidRequest::MalformedQuery),
            (&[], "/ws?access_token=", InvalidRequest::MalformedQuery),
        ];
        for (pairs, uri, expected) in cases {
            assert_eq!(
                find(&config, &headers(pairs), uri).unwrap_err(),
                *expected,
                "{pairs:?} {uri}"
            );
        }
    }

    #[test]
    fn query_tokens_are_percent_decoded() {
        let config = all_sources();
        assert_eq!(
            find(&config, &HeaderMap::new(), "/ws?x=1&access_token=a%2Eb.c").unwrap(),
            Some((TokenSource::Query, "a.b.c".into()))
        );
    }

    #[test]
    fn debug_of_parsed_sources_shows_no_token() {
        let map = headers(&[("sec-websocket-protocol", "wsauth.v1, bearer.s.s.s")]);
        let offered = OfferedProtocols::parse(&map).unwrap();
        let parts = parts(&map, "/");
        let found = find_token(&all_sources(), &parts, &offered)
            .unwrap()
            .unwrap();
        let debug = format!("{offered:?} {found:?}");
        assert!(!debug.contains("s.s.s"), "{debug}");
        assert!(debug.contains("wsauth.v1") && debug.contains("Subprotocol"));
    }
}
