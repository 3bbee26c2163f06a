//! The shareable files under a static root, for hashing ahead of the first
//! visitor.

use std::path::{Path, PathBuf};

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use whis_core::path::SitePath;

/// What `SitePath::parse` would otherwise read as syntax in a file name.
const SYNTAX: &AsciiSet = &CONTROLS.add(b'%').add(b'?').add(b'#');

/// Every regular file of at least `min_size` bytes under `root` (hidden
/// names skipped), as the site path a visitor would request.
pub fn shareable_files(root: &Path, min_size: u64) -> Vec<SitePath> {
    let mut out = Vec::new();
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let site = format!("{prefix}/{name}");
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push((entry.path(), site));
            } else if kind.is_file() && entry.metadata().is_ok_and(|m| m.len() >= min_size) {
                let encoded = utf8_percent_encode(&site, SYNTAX).to_string();
                if let Ok(path) = SitePath::parse(&encoded) {
                    out.push(path);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_url_syntax_become_their_own_paths() {
        let root = std::env::temp_dir().join(format!("whis-walk-{}", std::process::id()));
        std::fs::create_dir_all(root.join("img/.hidden")).expect("mkdir");
        for name in [
            "img/what?.jpg",
            "img/#1.jpg",
            "img/50%.jpg",
            "img/small.txt",
            "img/.hidden/x.jpg",
        ] {
            let size = if name.ends_with(".txt") { 10 } else { 100 };
            std::fs::write(root.join(name), vec![0u8; size]).expect("write");
        }
        let mut found: Vec<String> = shareable_files(&root, 50)
            .iter()
            .map(|p| p.as_str().to_string())
            .collect();
        found.sort();
        // A literal `%` in a name is refused like a double encoding, as a
        // visitor's request for it would be.
        assert_eq!(found, ["/img/#1.jpg", "/img/what?.jpg"]);
        let _ = std::fs::remove_dir_all(&root);
    }
}
