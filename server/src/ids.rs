//! Fresh random identifiers: public peer ids and secret tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use whis_core::hub::NewIds;

pub fn new_ids() -> NewIds {
    let mut id = [0u8; 9];
    rand::rng().fill_bytes(&mut id);
    NewIds {
        peer_id: format!("p{}", URL_SAFE_NO_PAD.encode(id)),
        token: secret(),
    }
}

/// 256 random bits, base64url (43 characters).
pub fn secret() -> String {
    let mut t = [0u8; 32];
    rand::rng().fill_bytes(&mut t);
    URL_SAFE_NO_PAD.encode(t)
}
