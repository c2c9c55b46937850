//! The `Sec-WebSocket-Protocol` list a client offered: the `bearer.` entry
//! that carries its token, and the real protocols the layer selects from
//! (RFC 6455 section 4.2.2; the wire contract's subprotocol rules).

use std::sync::Arc;

use http::header::SEC_WEBSOCKET_PROTOCOL;
use http::{HeaderMap, HeaderValue};

use super::InvalidRequest;
use crate::protocol::BEARER_PROTOCOL_PREFIX;

/// The parsed `Sec-WebSocket-Protocol` list. Its `Debug` never shows the
/// token.
#[derive(Default)]
pub(crate) struct OfferedProtocols<'a> {
    /// The token of the single `bearer.` entry, if any.
    pub(crate) bearer: Option<&'a str>,
    /// Every other entry, in the client's order.
    pub(crate) protocols: Vec<&'a str>,
}

impl<'a> OfferedProtocols<'a> {
    pub(crate) fn parse(headers: &'a HeaderMap) -> Result<Self, InvalidRequest> {
        let mut offered = OfferedProtocols::default();
        for value in headers.get_all(SEC_WEBSOCKET_PROTOCOL) {
            let list = value
                .to_str()
                .map_err(|_| InvalidRequest::MalformedSubprotocols)?;
            for entry in list.split(',').map(|entry| entry.trim_matches([' ', '\t'])) {
                if entry.is_empty() || !entry.bytes().all(is_tchar) {
                    return Err(InvalidRequest::MalformedSubprotocols);
                }
                match entry.strip_prefix(BEARER_PROTOCOL_PREFIX) {
                    Some(_) if offered.bearer.is_some() => {
                        return Err(InvalidRequest::DuplicateBearerSubprotocol);
                    }
                    Some("") => return Err(InvalidRequest::MalformedSubprotocols),
                    Some(token) => offered.bearer = Some(token),
                    None => offered.protocols.push(entry),
                }
            }
        }
        Ok(offered)
    }

    /// Picks the first of the server's `supported` protocols the client
    /// offered. A client that offered anything must get an answer (Chromium
    /// fails the connection otherwise), so no match is an error; a client
    /// that offered nothing gets no `Sec-WebSocket-Protocol` back.
    pub(crate) fn select(
        &self,
        supported: &[Arc<HeaderValue>],
    ) -> Result<Option<Arc<HeaderValue>>, InvalidRequest> {
        if self.bearer.is_none() && self.protocols.is_empty() {
            return Ok(None);
        }
        supported
            .iter()
            .find(|candidate| {
                self.protocols
                    .iter()
                    .any(|p| p.as_bytes() == candidate.as_bytes())
            })
            .cloned()
            .map(Some)
            .ok_or(InvalidRequest::NoAcceptableSubprotocol)
    }
}

impl std::fmt::Debug for OfferedProtocols<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfferedProtocols")
            .field("bearer", &self.bearer.map(|_| "<redacted>"))
            .field("protocols", &self.protocols)
            .finish()
    }
}

/// RFC 7230 `tchar`.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::source::tests::headers;

    #[test]
    fn selection_follows_server_preference_and_never_picks_bearer() {
        let supported = [
            Arc::new(HeaderValue::from_static("graphql-transport-ws")),
            Arc::new(HeaderValue::from_static("wsauth.v1")),
        ];
        let select = |list: &str| {
            let map = headers(&[("sec-websocket-protocol", list)]);
            let selected = OfferedProtocols::parse(&map)?.select(&supported)?;
            Ok::<_, InvalidRequest>(selected.map(|protocol| protocol.to_str().unwrap().to_owned()))
        };
        assert_eq!(
            select("wsauth.v1, bearer.x, graphql-transport-ws")
                .unwrap()
                .unwrap(),
            "graphql-transport-ws"
        );
        assert_eq!(select("bearer.x, wsauth.v1").unwrap().unwrap(), "wsauth.v1");
        assert_eq!(
            select("bearer.x").unwrap_err(),
            InvalidRequest::NoAcceptableSubprotocol
        );
        assert_eq!(
            select("soap, bearer.x").unwrap_err(),
            InvalidRequest::NoAcceptableSubprotocol
        );
        assert_eq!(
            OfferedProtocols::parse(&HeaderMap::new())
                .unwrap()
                .select(&supported)
                .unwrap(),
            None
        );
    }
}
