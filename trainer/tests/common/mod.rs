//! Helpers the trainer's integration tests share: the tiny fixture checkpoint, fresh
//! temporary directories and small input files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The tiny random BERT saved as safetensors (models/fixtures/tiny-safetensors).
pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/tiny-safetensors")
}

/// An empty directory unique to this test process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bedside-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
