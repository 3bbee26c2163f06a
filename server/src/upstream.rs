//! Talking to the upstream origin in `--origin` (reverse-proxy) mode.

use actix_web::http::header;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
pub fn hop_by_hop(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Send a request without a body. A pooled keep-alive connection that the
/// origin had already closed fails before one byte of the answer arrives
/// (`Disconnected`); nothing was processed, so the request goes once more,
/// on a fresh connection.
pub async fn send_bodiless(
    request: awc::ClientRequest,
) -> <awc::SendClientRequest as std::future::Future>::Output {
    use awc::error::{ConnectError, SendRequestError};
    let frozen = request.freeze().map_err(SendRequestError::from)?;
    match frozen.send().await {
        Err(SendRequestError::Connect(ConnectError::Disconnected)) => {
            log::debug!("origin closed a pooled connection; sending again");
            frozen.send().await
        }
        other => other,
    }
}
