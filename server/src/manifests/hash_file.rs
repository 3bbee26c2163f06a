//! Hashing a file of the static root into a manifest, off the async threads.

use std::io::Read;
use std::path::PathBuf;

use whis_core::manifest::{Manifest, ManifestBuilder, ReplayHeaders};

/// Read `fs_path` once, piece by piece. Fails if the file's size is no
/// longer `expected` (it changed while it was hashed).
pub async fn hash_file(
    fs_path: PathBuf,
    site_path: String,
    expected: u64,
    piece_size: u32,
    headers: ReplayHeaders,
) -> std::io::Result<Manifest> {
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&fs_path)?;
        let mut builder = ManifestBuilder::new(piece_size);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            builder.update(&buf[..n]);
        }
        if builder.size() != expected {
            return Err(std::io::Error::other("file changed while it was hashed"));
        }
        Ok(builder.finish(&site_path, headers))
    })
    .await
    .map_err(|e| std::io::Error::other(format!("hashing task: {e}")))?
}
