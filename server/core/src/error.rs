//! The one error type of the core. Each variant has a stable code that the
//! HTTP layer sends as `{"error": CODE}`; the status lives in the server.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoreError {
    #[error("token is unknown or expired")]
    InvalidToken,
    #[error("peer {0} is not in this server")]
    UnknownPeer(String),
    #[error("peer {0} belongs to another swarm")]
    OtherSwarm(String),
    #[error("the server holds its maximum of {0} peers")]
    ServerFull(usize),
    #[error("swarm {0} does not exist")]
    UnknownSwarm(String),
    #[error("bad path: {0}")]
    BadPath(&'static str),
    #[error("{0}")]
    BadRequest(&'static str),
    #[error("a peer may not signal itself")]
    SelfSignal,
    #[error("{0}")]
    BadSignal(&'static str),
    #[error("at most {0} resource ids in have")]
    TooManyIds(usize),
    #[error("identifier collision; retry")]
    Collision,
}

impl CoreError {
    /// Stable machine-readable code (see docs/protocol.md).
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::InvalidToken => "invalid_token",
            CoreError::UnknownPeer(_) => "unknown_peer",
            CoreError::OtherSwarm(_) => "other_swarm",
            CoreError::ServerFull(_) => "server_full",
            CoreError::UnknownSwarm(_) => "unknown_swarm",
            CoreError::BadPath(_) => "bad_path",
            CoreError::BadRequest(_)
            | CoreError::SelfSignal
            | CoreError::BadSignal(_)
            | CoreError::TooManyIds(_) => "bad_request",
            CoreError::Collision => "collision",
        }
    }
}
