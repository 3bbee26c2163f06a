//! Resource manifests: size, piece size and the SHA-256 of every piece.
//!
//! A resource's id is the SHA-256 of `size (u64 BE) ‖ piece_size (u32 BE) ‖
//! piece hashes`, so a changed file is a new id and pieces of two versions can
//! never be mixed: every piece is addressed as `(id, index)`.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Smallest and largest piece sizes the server accepts on its command line.
pub const MIN_PIECE_SIZE: u32 = 16 * 1024;
pub const MAX_PIECE_SIZE: u32 = 4 * 1024 * 1024;

/// Headers of the origin's answer that the service worker replays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayHeaders {
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub cache_control: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    pub path: String,
    pub id: String,
    pub size: u64,
    pub piece_size: u32,
    pub pieces: Vec<String>,
    #[serde(flatten)]
    pub headers: ReplayHeaders,
}

/// Hashes a resource as its bytes stream past, one piece at a time.
pub struct ManifestBuilder {
    piece_size: u32,
    size: u64,
    current: Sha256,
    in_current: u32,
    pieces: Vec<[u8; 32]>,
}

impl ManifestBuilder {
    pub fn new(piece_size: u32) -> Self {
        assert!(piece_size > 0, "piece size is validated at startup");
        ManifestBuilder {
            piece_size,
            size: 0,
            current: Sha256::new(),
            in_current: 0,
            pieces: Vec::new(),
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = (self.piece_size - self.in_current) as usize;
            let take = room.min(data.len());
            self.current.update(&data[..take]);
            self.in_current += take as u32;
            self.size += take as u64;
            data = &data[take..];
            if self.in_current == self.piece_size {
                self.finish_piece();
            }
        }
    }

    fn finish_piece(&mut self) {
        let done = std::mem::replace(&mut self.current, Sha256::new());
        self.pieces.push(done.finalize().into());
        self.in_current = 0;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn finish(mut self, path: &str, headers: ReplayHeaders) -> Manifest {
        if self.in_current > 0 {
            self.finish_piece();
        }
        let id = resource_id(self.size, self.piece_size, &self.pieces);
        Manifest {
            path: path.to_string(),
            id,
            size: self.size,
            piece_size: self.piece_size,
            pieces: self.pieces.iter().map(|h| hex(h)).collect(),
            headers,
        }
    }
}

/// The content address of a resource (see the module docs).
pub fn resource_id(size: u64, piece_size: u32, pieces: &[[u8; 32]]) -> String {
    let mut h = Sha256::new();
    h.update(size.to_be_bytes());
    h.update(piece_size.to_be_bytes());
    for p in pieces {
        h.update(p);
    }
    hex(&h.finalize())
}

/// Lowercase hex, the spelling of every hash on the wire.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// True for a 64-character lowercase hex string, the shape of every id.
pub fn is_resource_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Why a response must not be shared between visitors, judged by its headers.
pub fn ineligible_reason(
    cache_control: Option<&str>,
    has_set_cookie: bool,
    vary: Option<&str>,
) -> Option<&'static str> {
    if let Some(cc) = cache_control {
        let cc = cc.to_ascii_lowercase();
        for directive in cc.split(',').map(|d| d.trim()) {
            let name = directive.split('=').next().unwrap_or("").trim();
            if name == "private" || name == "no-store" {
                return Some("the response is Cache-Control: private or no-store");
            }
        }
    }
    if has_set_cookie {
        return Some("the response sets a cookie");
    }
    if let Some(vary) = vary {
        if vary
            .split(',')
            .map(|v| v.trim())
            .any(|v| v == "*" || v.eq_ignore_ascii_case("cookie"))
        {
            return Some("the response varies by cookie");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(data: &[u8], piece: u32, chunk: usize) -> Manifest {
        let mut b = ManifestBuilder::new(piece);
        for c in data.chunks(chunk.max(1)) {
            b.update(c);
        }
        b.finish("/x", ReplayHeaders::default())
    }

    #[test]
    fn pieces_do_not_depend_on_how_bytes_arrive() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let a = build(&data, 16384, 1);
        let b = build(&data, 16384, 4096);
        let c = build(&data, 16384, 99_999);
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.pieces.len(), 7);
        assert_eq!(a.size, 100_000);
        let last = &data[6 * 16384..];
        assert_eq!(a.pieces[6], hex(&Sha256::digest(last)));
    }

    #[test]
    fn a_changed_byte_or_piece_size_is_a_new_id() {
        let mut data = vec![1u8; 50_000];
        let a = build(&data, 16384, 1000);
        data[49_999] = 2;
        let b = build(&data, 16384, 1000);
        assert_ne!(a.id, b.id);
        let c = build(&data, 32768, 1000);
        assert_ne!(b.id, c.id);
        assert!(is_resource_id(&a.id));
    }

    #[test]
    fn id_matches_the_documented_formula() {
        // Reference computed by hand: size 3, piece size 16384, one piece "abc".
        let m = build(b"abc", 16384, 3);
        let mut h = Sha256::new();
        h.update(3u64.to_be_bytes());
        h.update(16384u32.to_be_bytes());
        h.update(Sha256::digest(b"abc"));
        assert_eq!(m.id, hex(&h.finalize()));
        assert_eq!(
            m.pieces[0],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn eligibility_by_headers() {
        assert!(ineligible_reason(Some("public, max-age=60"), false, None).is_none());
        assert!(ineligible_reason(Some("Private"), false, None).is_some());
        assert!(ineligible_reason(Some("max-age=0, no-store"), false, None).is_some());
        assert!(ineligible_reason(None, true, None).is_some());
        assert!(ineligible_reason(None, false, Some("Accept-Encoding, Cookie")).is_some());
        assert!(ineligible_reason(None, false, Some("*")).is_some());
        assert!(ineligible_reason(None, false, Some("Accept-Encoding")).is_none());
    }
}
