//! Request paths that are safe to map onto a directory or an origin.
//!
//! A [`SitePath`] is absolute, percent-decoded exactly once, valid UTF-8, and
//! has no `.`/`..` segment, backslash, NUL, control character or leftover `%`
//! (so double-encoded traversal such as `%252e%252e` is refused, not decoded
//! again somewhere else).

use crate::CoreError;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SitePath(String);

impl SitePath {
    /// Parse a raw (possibly percent-encoded) path such as `/img/a%20b.jpg`.
    pub fn parse(raw: &str) -> Result<SitePath, CoreError> {
        if raw.len() > 2048 {
            return Err(CoreError::BadPath("path is too long"));
        }
        if !raw.starts_with('/') {
            return Err(CoreError::BadPath("path must start with /"));
        }
        if raw.contains('?') || raw.contains('#') {
            return Err(CoreError::BadPath(
                "path must not carry a query or fragment",
            ));
        }
        let decoded = percent_decode(raw)?;
        if decoded.contains('%') {
            return Err(CoreError::BadPath(
                "path has a malformed or double percent escape",
            ));
        }
        if decoded
            .chars()
            .any(|c| c == '\\' || c == '\0' || c.is_control())
        {
            return Err(CoreError::BadPath("path has a forbidden character"));
        }
        for segment in decoded.split('/').skip(1) {
            if segment == ".." || segment == "." {
                return Err(CoreError::BadPath("path must not contain . or .. segments"));
            }
        }
        if decoded.contains("//") {
            return Err(CoreError::BadPath("path has an empty segment"));
        }
        Ok(SitePath(decoded))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Segments without the leading empty one; the last may be empty for `/dir/`.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').skip(1).filter(|s| !s.is_empty())
    }

    pub fn is_dir(&self) -> bool {
        self.0.ends_with('/')
    }

    /// Paths that belong to Whis itself and are never shared or proxied.
    pub fn is_whis_internal(&self) -> bool {
        self.0 == "/whis-sw.js" || self.0 == "/whis" || self.0.starts_with("/whis/")
    }
}

/// Decode `%XX` escapes once. `percent_decode_str` passes a malformed
/// escape through unchanged, so it shows as a leftover `%` and is refused by
/// the caller together with double encoding.
fn percent_decode(raw: &str) -> Result<String, CoreError> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| CoreError::BadPath("path is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        let p = SitePath::parse("/img/a%20b.jpg").expect("valid path");
        assert_eq!(p.as_str(), "/img/a b.jpg");
        assert_eq!(p.segments().collect::<Vec<_>>(), ["img", "a b.jpg"]);
        assert!(SitePath::parse("/").expect("root").is_dir());
    }

    #[test]
    fn refuses_traversal_in_every_spelling() {
        for bad in [
            "/../etc/passwd",
            "/img/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E%2Fetc%2Fpasswd",
            "/img/%252e%252e/x",
            "/img/..%5c..%5cwin.ini",
            "/a/./b",
            "img/a.jpg",
            "/a%00b",
            "/a%zz",
            "/a%2",
            "/a?b=1",
            "/a//b",
            "/%ff%fe",
        ] {
            assert!(SitePath::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn knows_whis_internal_paths() {
        for p in ["/whis-sw.js", "/whis/client.js", "/whis"] {
            assert!(SitePath::parse(p).expect("valid").is_whis_internal());
        }
        assert!(!SitePath::parse("/whisper.jpg")
            .expect("valid")
            .is_whis_internal());
    }
}
