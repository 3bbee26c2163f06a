//! Signed peer tokens.
//!
//! A token names its peer, role, swarm and scope and carries an HMAC-SHA256
//! over them under the server's secret. The process that issued it knows it
//! already; another process with the same secret (this server after a
//! restart, or another node of a cluster) can take the peer back from the
//! token alone, so a restart costs visitors nothing but a reconnect.
//!
//! Shape (every part base64url or plain id characters, so it fits a query):
//! `w1.BOOT.ROLE.PEER.SWARM.SCOPE.MAC`, where `BOOT` names the issuing
//! process, `ROLE` is `v` or `w`, `SCOPE` is the swarm's scope in base64url
//! and `MAC` is base64url(HMAC-SHA256(secret, everything before its dot)).
//! No part can hold a dot, so a token splits one way only.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::event::Role;

const VERSION: &str = "w1";
/// Longest token accepted: a scope is at most 256 bytes.
pub const MAX_TOKEN_LEN: usize = 640;
/// Longest boot, peer or swarm id inside a token.
const MAX_ID_LEN: usize = 64;

/// What a token says about its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The process that issued it.
    pub boot: String,
    pub role: Role,
    pub peer_id: String,
    pub swarm_id: String,
    pub scope: String,
}

/// The secret that signs and checks tokens, and this process's boot id.
#[derive(Clone)]
pub struct TokenKey {
    mac: Hmac<Sha256>,
    boot: String,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("TokenKey")
            .field("boot", &self.boot)
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    /// `secret`: any bytes (the operator's `--cluster-secret`, or fresh random
    /// bytes); `boot`: a fresh id of this process, made of id characters.
    pub fn new(secret: &[u8], boot: &str) -> TokenKey {
        assert!(
            is_id(boot),
            "boot ids are made by the server from id characters"
        );
        TokenKey {
            mac: Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length"),
            boot: boot.to_string(),
        }
    }

    pub fn boot(&self) -> &str {
        &self.boot
    }

    /// A token for a peer of this process.
    pub fn sign(&self, role: Role, peer_id: &str, swarm_id: &str, scope: &str) -> String {
        let body = format!(
            "{VERSION}.{}.{}.{peer_id}.{swarm_id}.{}",
            self.boot,
            role_char(role),
            URL_SAFE_NO_PAD.encode(scope)
        );
        let mut mac = self.mac.clone();
        mac.update(body.as_bytes());
        format!(
            "{body}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    /// The claims of a token signed with this secret (by any process), or
    /// `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let (body, mac_text) = token.rsplit_once('.')?;
        let parts: Vec<&str> = body.split('.').collect();
        let [version, boot, role, peer_id, swarm_id, scope] = parts[..] else {
            return None;
        };
        if version != VERSION || ![boot, peer_id, swarm_id].iter().all(|p| is_id(p)) {
            return None;
        }
        let tag = URL_SAFE_NO_PAD.decode(mac_text).ok()?;
        let mut mac = self.mac.clone();
        mac.update(body.as_bytes());
        mac.verify_slice(&tag).ok()?;
        let role = match role {
            "v" => Role::Visitor,
            "w" => Role::Worker,
            _ => return None,
        };
        let scope = String::from_utf8(URL_SAFE_NO_PAD.decode(scope).ok()?).ok()?;
        Some(Claims {
            boot: boot.to_string(),
            role,
            peer_id: peer_id.to_string(),
            swarm_id: swarm_id.to_string(),
            scope,
        })
    }
}

fn role_char(role: Role) -> char {
    match role {
        Role::Visitor => 'v',
        Role::Worker => 'w',
    }
}

/// Peer, swarm and boot ids: 1 to 64 base64url characters.
fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_another_process_with_the_secret_reads_it() {
        let a = TokenKey::new(b"operator secret", "bootA");
        let t = a.sign(Role::Visitor, "pAbC-_1", "s3", "/blog/");
        assert!(t.len() <= MAX_TOKEN_LEN);
        let b = TokenKey::new(b"operator secret", "bootB");
        let claims = b.verify(&t).expect("same secret");
        assert_eq!(
            claims,
            Claims {
                boot: "bootA".into(),
                role: Role::Visitor,
                peer_id: "pAbC-_1".into(),
                swarm_id: "s3".into(),
                scope: "/blog/".into(),
            }
        );
        let longest = a.sign(
            Role::Worker,
            &"p".repeat(64),
            &"s".repeat(64),
            &"/".repeat(256),
        );
        assert!(longest.len() <= MAX_TOKEN_LEN, "{}", longest.len());
        assert_eq!(b.verify(&longest).map(|c| c.role), Some(Role::Worker));
    }

    #[test]
    fn forged_altered_and_foreign_tokens_are_refused() {
        let key = TokenKey::new(b"secret", "boot1");
        let t = key.sign(Role::Visitor, "p1", "s1", "/");
        assert!(TokenKey::new(b"other", "boot2").verify(&t).is_none());
        // Any one part changed, the MAC no longer matches.
        let parts: Vec<&str> = t.split('.').collect();
        for i in 0..parts.len() {
            let mut p = parts.clone();
            let changed = format!("{}x", p[i]);
            p[i] = &changed;
            assert!(key.verify(&p.join(".")).is_none(), "part {i} changed");
        }
        for bad in [
            "",
            "w1",
            "....",
            "w1.b.v.p.s.Lw",
            &"x".repeat(MAX_TOKEN_LEN + 1),
            "w1.b.v.p!.s.Lw.AAAA",
            "w1.b.x.p.s.Lw.AAAA",
        ] {
            assert!(key.verify(bad).is_none(), "{bad:?}");
        }
        assert!(!format!("{key:?}").contains("secret"));
    }
}
