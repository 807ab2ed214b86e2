//! What the CLI test files share: paths to fixtures, a fresh directory per test, and running
//! the `bedside` binary expecting success (stdout) or exit code 2 (stderr, never a panic).
#![allow(dead_code)] // each test file uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("models/fixtures").join(name)
}

/// A fresh directory named after the test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bedside-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn bedside(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bedside")).args(args).output().expect("running bedside")
}

pub fn ok(args: &[&str]) -> String {
    let out = bedside(args);
    assert!(out.status.success(), "bedside {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail with exit code 2; returns stderr.
pub fn fails(args: &[&str]) -> String {
    let out = bedside(args);
    assert_eq!(out.status.code(), Some(2), "bedside {args:?} should fail with 2");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    stderr
}
