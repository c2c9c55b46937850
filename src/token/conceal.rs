//! Hiding the token from everything behind the layer once the upgrade is
//! authenticated: the inner services, their extractors, and any `Debug` or
//! tracing of the request.

use http::header::{AUTHORIZATION, COOKIE, SEC_WEBSOCKET_PROTOCOL};
use http::{HeaderMap, HeaderValue, Uri};

use super::source::SourceConfig;
use crate::protocol::BEARER_PROTOCOL_PREFIX;

/// Takes the tokens out of sight of everything behind the layer, once a
/// request has been authenticated: the inner services, their extractors,
/// and any `Debug` or tracing of the request.
///
/// - `Authorization` values are marked sensitive (`Debug` prints
///   `Sensitive`), and so are `Cookie` values when the cookie source is on;
/// - the `bearer.` entry is removed from every `Sec-WebSocket-Protocol`
///   value, the other entries kept in order (a value left empty goes). The
///   layer has already chosen the protocol to select, so axum's
///   `WebSocketUpgrade` no longer needs to see the entry;
/// - with the query source on, `access_token` parameters leave the URI.
pub(crate) fn conceal_tokens(config: &SourceConfig, headers: &mut HeaderMap, uri: &mut Uri) {
    for (name, value) in headers.iter_mut() {
        if name == AUTHORIZATION || (name == COOKIE && config.cookie.is_some()) {
            value.set_sensitive(true);
        }
    }
    let offered: Vec<HeaderValue> = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .cloned()
        .collect();
    if offered.iter().any(|value| without_bearer(value).is_some()) {
        headers.remove(SEC_WEBSOCKET_PROTOCOL);
        for value in offered {
            let kept = match without_bearer(&value) {
                None => Some(value),
                Some(rest) => rest,
            };
            if let Some(kept) = kept {
                headers.append(SEC_WEBSOCKET_PROTOCOL, kept);
            }
        }
    }
    if config.query {
        conceal_query(uri);
    }
}

/// `None` when `value` holds no `bearer.` entry; otherwise the value
/// without it, `Some(None)` when nothing else is left (or the value cannot
/// be read, which the layer has already refused).
fn without_bearer(value: &HeaderValue) -> Option<Option<HeaderValue>> {
    let Ok(list) = value.to_str() else {
        return Some(None);
    };
    let entries = || list.split(',').map(|entry| entry.trim_matches([' ', '\t']));
    if !entries().any(|entry| entry.starts_with(BEARER_PROTOCOL_PREFIX)) {
        return None;
    }
    let rest = entries()
        .filter(|entry| !entry.starts_with(BEARER_PROTOCOL_PREFIX))
        .collect::<Vec<_>>()
        .join(", ");
    Some(
        HeaderValue::try_from(rest)
            .ok()
            .filter(|rest| !rest.is_empty()),
    )
}

fn conceal_query(uri: &mut Uri) {
    let is_token =
        |pair: &&str| pair.split_once('=').map_or(*pair, |(key, _)| key) == "access_token";
    let Some(query) = uri.query() else {
        return;
    };
    if !query.split('&').any(|pair| is_token(&pair)) {
        return;
    }
    let kept = query
        .split('&')
        .filter(|pair| !is_token(pair))
        .collect::<Vec<_>>()
        .join("&");
    let path = uri.path().to_owned();
    let path_and_query = if kept.is_empty() {
        path.clone()
    } else {
        format!("{path}?{kept}")
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = http::uri::PathAndQuery::try_from(path_and_query).ok();
    // Rebuilding from a valid URI's own pieces cannot fail; if it did, the
    // path alone is still better than a URI holding the token.
    *uri = Uri::from_parts(parts)
        .or_else(|_| Uri::try_from(path))
        .unwrap_or_default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::source::tests::{all_sources, headers};

    #[test]
    fn concealing_removes_the_bearer_entry_and_hides_credentials() {
        let mut map = headers(&[
            ("authorization", "Bearer h.h.h"),
            ("sec-websocket-protocol", "wsauth.v1, bearer.s.s.s, chat"),
            ("sec-websocket-protocol", "bearer2"),
            ("cookie", "a=1; jwt=c.c.c"),
        ]);
        let mut uri: Uri = "/ws?x=1&access_token=q.q.q&y=2".parse().unwrap();
        conceal_tokens(&all_sources(), &mut map, &mut uri);
        let protocols: Vec<_> = map.get_all(SEC_WEBSOCKET_PROTOCOL).iter().collect();
        assert_eq!(protocols, ["wsauth.v1, chat", "bearer2"]);
        assert!(map[AUTHORIZATION].is_sensitive());
        assert!(map[COOKIE].is_sensitive());
        assert_eq!(uri, "/ws?x=1&y=2");
        let debug = format!("{map:?} {uri:?}");
        for token in ["h.h.h", "s.s.s", "c.c.c", "q.q.q"] {
            assert!(!debug.contains(token), "{debug}");
        }

        // A value left without entries goes; disabled sources stay as sent.
        let mut map = headers(&[
            ("sec-websocket-protocol", "bearer.s.s.s"),
            ("sec-websocket-protocol", "wsauth.v1"),
            ("cookie", "jwt=c.c.c"),
        ]);
        let mut uri: Uri = "/ws?access_token=q.q.q".parse().unwrap();
        conceal_tokens(&SourceConfig::default(), &mut map, &mut uri);
        let protocols: Vec<_> = map.get_all(SEC_WEBSOCKET_PROTOCOL).iter().collect();
        assert_eq!(protocols, ["wsauth.v1"]);
        assert!(!map[COOKIE].is_sensitive());
        assert_eq!(uri, "/ws?access_token=q.q.q");

        let mut map = headers(&[("sec-websocket-protocol", "bearer.s.s.s")]);
        let mut uri: Uri = "http://h/ws?access_token=q.q.q".parse().unwrap();
        conceal_tokens(&all_sources(), &mut map, &mut uri);
        assert!(map.get(SEC_WEBSOCKET_PROTOCOL).is_none());
        assert_eq!(uri, "http://h/ws");
    }
}
