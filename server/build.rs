//! Embeds every file of `sw/` (the service worker, client and page agent) in the
//! binary, so one file deploys. Tests, node_modules and package files stay out.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let sw = manifest_dir.join("../sw");
    // Cargo scans a directory given here recursively for changes.
    println!("cargo:rerun-if-changed=../sw");
    let mut files = Vec::new();
    collect(&sw, &sw, &mut files);
    files.sort();
    let mut out = String::from("/// (path under sw/, contents) of every embedded file.\npub static EMBEDDED: &[(&str, &[u8])] = &[\n");
    for rel in &files {
        let abs = sw.join(rel);
        writeln!(
            out,
            "    ({rel:?}, include_bytes!({:?})),",
            abs.display().to_string()
        )
        .expect("write to String");
    }
    out.push_str("];\n");
    let dest =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("embedded_sw.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}

fn collect(base: &Path, dir: &Path, files: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.')
            || name == "test"
            || name == "node_modules"
            || name.starts_with("package")
        {
            continue;
        }
        if path.is_dir() {
            collect(base, &path, files);
        } else if let Ok(rel) = path.strip_prefix(base) {
            files.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}
