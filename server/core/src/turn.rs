//! Short-lived TURN credentials, the scheme coturn checks with
//! `use-auth-secret` + `static-auth-secret` (the "TURN REST API"): the
//! username is `<expiry, unix seconds>:<peer id>` and the password is
//! `base64(HMAC-SHA1(secret, username))`. coturn recomputes the password from
//! the username and its copy of the secret and refuses a username whose
//! expiry has passed, so whis never talks to coturn and a leaked credential
//! dies on its own. Time is an argument: the caller reads the clock.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// How long a credential handed out by `join` stays valid: a day, longer than
/// any visit (coturn checks the expiry on each allocation and refresh).
pub const CREDENTIAL_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredential {
    pub username: String,
    pub credential: String,
}

/// The credential for `peer_id`, valid until `expires_unix` (seconds).
pub fn credential(secret: &[u8], expires_unix: u64, peer_id: &str) -> TurnCredential {
    let username = format!("{expires_unix}:{peer_id}");
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC accepts a key of any length");
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    TurnCredential {
        username,
        credential,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_as_openssl_computes_it() {
        // echo -n '1700000000:p1' | openssl dgst -sha1 -hmac north -binary | base64
        let c = credential(b"north", 1_700_000_000, "p1");
        assert_eq!(c.username, "1700000000:p1");
        assert_eq!(c.credential, "qmV1Ez2SwzrylXCPMqxg9P1hY0Y=");
        // python3: base64(hmac.new(b'shared-secret', b'1735689600:pA1b2C3d4', sha1))
        let c = credential(b"shared-secret", 1_735_689_600, "pA1b2C3d4");
        assert_eq!(c.credential, "IQDEoGZIgtlPXy9NESZGRpFkgbs=");
    }

    #[test]
    fn the_hmac_is_rfc2202s_hmac_sha1() {
        // RFC 2202 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut mac = Hmac::<Sha1>::new_from_slice(b"Jefe").expect("any key length");
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    #[test]
    fn another_secret_expiry_or_peer_gives_another_password() {
        let base = credential(b"s", 100, "p");
        assert_ne!(base.credential, credential(b"t", 100, "p").credential);
        assert_ne!(base.credential, credential(b"s", 101, "p").credential);
        assert_ne!(base.credential, credential(b"s", 100, "q").credential);
    }
}
