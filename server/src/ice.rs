//! The ICE servers a peer is given in its join answer.
//!
//! This is the one place the join answer's `ice_servers` come from. Today it
//! lists the `ice_servers` URLs of the config (none by default: on loopback
//! and a LAN, host candidates connect without help); STUN and TURN servers
//! with their credentials belong here too.

use serde::Serialize;

use crate::config::Config;

/// One entry of `RTCConfiguration.iceServers`, as the browser takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The `ice_servers` of a join answer.
pub fn for_join(config: &Config) -> Vec<IceServer> {
    config
        .ice_servers
        .iter()
        .map(|url| IceServer {
            urls: vec![url.clone()],
            username: None,
            credential: None,
        })
        .collect()
}
