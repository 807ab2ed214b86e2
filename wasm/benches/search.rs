//! Speed, memory and recall of the semantic-search index, f32 against int8.
//!
//!     cargo bench -p bedside-runtime --bench search
//!
//! 10,000 and 100,000 random unit vectors of 384 dimensions (MiniLM's size), seeded, so
//! every run searches the same data. For each size and storage: the time to add every
//! vector (normalisation and, for int8, quantisation included), queries per second at k = 10
//! (one thread, exact search over every document), the bytes the index holds and its saved
//! size, and recall@10 of int8 against f32 over the same random queries. Random vectors are
//! the hard case for recall: their cosines bunch around 0, so neighbours are separated by
//! tiny margins; real embeddings cluster. Prints a Markdown table and writes
//! `target/bench/search.json`. `BENCH_QUERIES` sets the queries per size (default 200).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Result;
use bedside_runtime::model::rng::SplitMix64;
use bedside_runtime::search::{recall_at_k, Index, Storage};

const DIM: usize = 384;
const SIZES: [usize; 2] = [10_000, 100_000];
const K: usize = 10;
const DEFAULT_QUERIES: usize = 200;
const SEED: u64 = 384;

struct Row {
    docs: usize,
    storage: &'static str,
    build_ms: f64,
    queries_per_s: f64,
    memory_bytes: usize,
    saved_bytes: usize,
    recall: f32,
}

fn unit_vectors(rng: &mut SplitMix64, n: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| {
            let v: Vec<f64> = (0..DIM).map(|_| rng.next_normal()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            v.iter().map(|x| (x / norm) as f32).collect()
        })
        .collect()
}

fn build(ids: &[String], vectors: &[Vec<f32>], storage: Storage) -> Result<(Index, f64)> {
    let start = Instant::now();
    let mut index = Index::new(DIM, storage)?;
    for (id, v) in ids.iter().zip(vectors) {
        index.add(id, v)?;
    }
    Ok((index, start.elapsed().as_secs_f64() * 1e3))
}

fn queries_per_second(index: &Index, queries: &[Vec<f32>]) -> Result<f64> {
    // One warm-up pass over a few queries brings the vectors into cache as a real session would.
    for q in queries.iter().take(3) {
        std::hint::black_box(index.top_k(q, K)?);
    }
    let start = Instant::now();
    for q in queries {
        std::hint::black_box(index.top_k(q, K)?);
    }
    Ok(queries.len() as f64 / start.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let n_queries = std::env::var("BENCH_QUERIES").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_QUERIES);
    let mut rng = SplitMix64::new(SEED);
    let queries = unit_vectors(&mut rng, n_queries);
    let mut rows = Vec::new();
    for docs in SIZES {
        let vectors = unit_vectors(&mut rng, docs);
        let ids: Vec<String> = (0..docs).map(|i| format!("doc-{i:06}")).collect();
        let (exact, f32_ms) = build(&ids, &vectors, Storage::F32)?;
        let (int8, int8_ms) = build(&ids, &vectors, Storage::Int8)?;
        drop(vectors);
        let recall = recall_at_k(&exact, &int8, &queries, K)?;
        for (index, storage, build_ms, recall) in [(&exact, "f32", f32_ms, 1.0), (&int8, "int8", int8_ms, recall)] {
            rows.push(Row {
                docs,
                storage,
                build_ms,
                queries_per_s: queries_per_second(index, &queries)?,
                memory_bytes: index.memory_bytes(),
                saved_bytes: index.to_bytes().len(),
                recall,
            });
        }
    }

    let machine = machine();
    println!("| docs | storage | build (ms) | queries/s (k=10) | ms/query | index memory (MB) | saved (MB) | recall@10 vs f32 |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.1} | {:.1} | {:.3} |",
            r.docs,
            r.storage,
            r.build_ms,
            r.queries_per_s,
            1e3 / r.queries_per_s,
            r.memory_bytes as f64 / 1e6,
            r.saved_bytes as f64 / 1e6,
            r.recall
        );
    }
    println!();
    println!("{DIM}-d random unit vectors, {n_queries} random queries per size, one thread, exact search.");
    println!("Machine: {machine}");

    let path = target_dir().join("bench");
    std::fs::create_dir_all(&path)?;
    let path = path.join("search.json");
    let json = serde_json::json!({
        "dim": DIM,
        "k": K,
        "queries": n_queries,
        "machine": machine,
        "rows": rows.iter().map(|r| serde_json::json!({
            "docs": r.docs,
            "storage": r.storage,
            "build_ms": r.build_ms,
            "queries_per_s": r.queries_per_s,
            "memory_bytes": r.memory_bytes,
            "saved_bytes": r.saved_bytes,
            "recall_at_10": r.recall,
        })).collect::<Vec<_>>(),
    });
    std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")?;
    println!("Wrote {}", path.display());
    Ok(())
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).join("target"),
    }
}

fn machine() -> String {
    let nproc = Command::new("nproc")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or("?".into(), |n| n.to_string()));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("nproc {nproc}, {cpu}")
}
