//! One connection attempt: TCP (and TLS) under the connect timeout, then
//! the HTTP upgrade under the handshake timeout.

use std::time::SystemTime;

use http::HeaderValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use super::config::{Config, Outcome};
use super::timing::parse_http_date;
use super::{ClientError, TokenPlacement};
use crate::protocol::BEARER_PROTOCOL_PREFIX;

pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub(super) type Socket = WebSocketStream<Box<dyn Io>>;

/// An open connection.
pub(super) struct Connected {
    pub(super) socket: Socket,
    /// The subprotocol the server selected.
    pub(super) protocol: Option<String>,
    /// The upgrade response's `Date`, in seconds since the epoch, and the
    /// local wall-clock time the upgrade request was sent: the server
    /// stamped the response after that.
    pub(super) server_date: Option<(u64, SystemTime)>,
}

/// Connects with an already trimmed and checked `token`.
pub(super) async fn connect(config: &Config, token: &str) -> Result<Connected, Outcome> {
    let fatal = |message: String| Outcome::stop_on(ClientError::Config(message));
    let retry = Outcome::retry_on;
    let mut request = config
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| fatal(format!("invalid url: {e}")))?;
    let mut protocols = config.protocols.join(", ");
    match config.placement {
        TokenPlacement::Header => {
            let value = HeaderValue::try_from(format!("Bearer {token}"))
                .map_err(|_| retry(ClientError::UnusableToken("not valid in a header")))?;
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value);
        }
        TokenPlacement::Subprotocol => {
            if !protocols.is_empty() {
                protocols.push_str(", ");
            }
            protocols.push_str(BEARER_PROTOCOL_PREFIX);
            protocols.push_str(token);
        }
    }
    if !protocols.is_empty() {
        let value = HeaderValue::try_from(protocols)
            .map_err(|_| retry(ClientError::UnusableToken("not valid in a header")))?;
        request
            .headers_mut()
            .insert(http::header::SEC_WEBSOCKET_PROTOCOL, value);
    }

    let uri = request.uri().clone();
    let secure = uri.scheme_str() == Some("wss");
    let host = uri.host().unwrap_or_default().to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tls = match (secure, &config.tls) {
        (false, _) => None,
        (true, Some(tls)) => Some(tls.clone()),
        (true, None) => return Err(fatal("wss:// needs AuthClientBuilder::tls_config".into())),
    };
    let io = timeout(config.connect_timeout, async {
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| retry(ClientError::Connect(e.to_string())))?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = tls else {
            return Ok(Box::new(tcp) as Box<dyn Io>);
        };
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| fatal(format!("invalid server name: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| retry(ClientError::Connect(format!("TLS handshake: {e}"))))?;
        Ok(Box::new(stream) as Box<dyn Io>)
    })
    .await
    .map_err(|_| retry(ClientError::ConnectTimeout(config.connect_timeout)))??;

    let sent = (config.wall_clock)();
    let handshake = timeout(
        config.handshake_timeout,
        tokio_tungstenite::client_async(request, io),
    )
    .await
    .map_err(|_| retry(ClientError::HandshakeTimeout(config.handshake_timeout)))?;
    match handshake {
        Ok((socket, response)) => {
            let header = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v: &HeaderValue| v.to_str().ok())
            };
            Ok(Connected {
                protocol: header(http::header::SEC_WEBSOCKET_PROTOCOL).map(str::to_owned),
                server_date: header(http::header::DATE)
                    .and_then(parse_http_date)
                    .map(|date| (date, sent)),
                socket,
            })
        }
        // A 400 says the request itself is wrong: trying again cannot help.
        Err(tungstenite::Error::Http(response))
            if response.status() == http::StatusCode::BAD_REQUEST =>
        {
            Err(Outcome::stop_on(ClientError::Refused(400)))
        }
        Err(tungstenite::Error::Http(response)) => {
            Err(retry(ClientError::Refused(response.status().as_u16())))
        }
        Err(error) => Err(retry(ClientError::Handshake(error.to_string()))),
    }
}
