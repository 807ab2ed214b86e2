//! Semantic search: the index against brute force, int8 recall, saved bytes (and damaged
//! ones), bad ids and vectors, removal, the PCA map, and texts embedded with a fixture model.

mod common;

use bedside_runtime::model::rng::SplitMix64;
use bedside_runtime::search::{self, pca_2d, recall_at_k, Index, Storage};
use bedside_runtime::Model;
use common::*;
use sha2::{Digest, Sha256};

/// Required recall@10 of an int8 index against its f32 original (random 384-d unit vectors).
const MIN_INT8_RECALL_AT_10: f32 = 0.95;
/// f32 cosines against an f64 brute force.
const MAX_SCORE_ERR_F32: f32 = 1e-5;
/// Damaged copies of a saved index that must all be refused with a typed error.
const BYTE_FLIPS: usize = 200;

fn random_vectors(rng: &mut SplitMix64, n: usize, dim: usize, scale: bool) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| {
            // Non-unit lengths unless asked: the index must normalise on its own.
            let s = if scale { 0.1 + 10.0 * rng.next_f64() } else { 1.0 };
            let v: Vec<f64> = (0..dim).map(|_| rng.next_normal()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            v.iter().map(|x| (s * x / norm) as f32).collect()
        })
        .collect()
}

fn build(vectors: &[Vec<f32>], storage: Storage) -> Index {
    let mut index = Index::new(vectors[0].len(), storage).unwrap();
    for (i, v) in vectors.iter().enumerate() {
        index.add(&format!("doc{i:05}"), v).unwrap();
    }
    index
}

/// Exact cosine in f64, best first, ties by id.
fn brute_force(vectors: &[Vec<f32>], query: &[f32], k: usize) -> Vec<(String, f64)> {
    let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    let mut all: Vec<(String, f64)> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let dot: f64 = v.iter().zip(query).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
            (format!("doc{i:05}"), dot / (norm(v) * norm(query)))
        })
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

#[test]
fn top_k_matches_brute_force() {
    let mut rng = SplitMix64::new(1);
    let docs = random_vectors(&mut rng, 500, 48, true);
    let index = build(&docs, Storage::F32);
    for query in random_vectors(&mut rng, 20, 48, true) {
        let got = index.top_k(&query, 10).unwrap();
        let want = brute_force(&docs, &query, 10);
        let got_ids: Vec<&str> = got.iter().map(|h| h.id.as_str()).collect();
        let want_ids: Vec<&str> = want.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(got_ids, want_ids);
        for (h, (_, s)) in got.iter().zip(&want) {
            assert!((h.score - *s as f32).abs() <= MAX_SCORE_ERR_F32, "score {} vs {s}", h.score);
        }
    }
    assert_eq!(index.top_k(&docs[0], 0).unwrap(), vec![]);
    assert_eq!(index.top_k(&docs[0], 10_000).unwrap().len(), 500);
    assert_eq!(index.top_k(&docs[7], 1).unwrap()[0].id, "doc00007");
}

#[test]
fn equal_scores_are_ordered_by_id() {
    let mut index = Index::new(3, Storage::Int8).unwrap();
    for id in ["b", "c", "a", "d"] {
        index.add(id, &[1.0, 2.0, 2.0]).unwrap();
    }
    let ids: Vec<String> = index.top_k(&[1.0, 2.0, 2.0], 3).unwrap().into_iter().map(|h| h.id).collect();
    assert_eq!(ids, ["a", "b", "c"]);
}

#[test]
fn empty_index_returns_no_hits() {
    let index = Index::new(4, Storage::F32).unwrap();
    assert!(index.top_k(&[1.0, 0.0, 0.0, 0.0], 5).unwrap().is_empty());
    assert_eq!(index.project().unwrap_err().code(), "empty_corpus");
}

#[test]
fn int8_recall_at_10_on_384_dimensions() {
    let mut rng = SplitMix64::new(2);
    let docs = random_vectors(&mut rng, 2_000, 384, false);
    let exact = build(&docs, Storage::F32);
    let int8 = build(&docs, Storage::Int8);
    let queries = random_vectors(&mut rng, 100, 384, false);
    let recall = recall_at_k(&exact, &int8, &queries, 10).unwrap();
    println!("int8 recall@10 = {recall:.4}; memory f32 {} B, int8 {} B", exact.memory_bytes(), int8.memory_bytes());
    assert!(recall >= MIN_INT8_RECALL_AT_10, "recall@10 {recall} < {MIN_INT8_RECALL_AT_10}");
    // Quantising an f32 index gives the same codes as adding to an int8 one.
    let converted = exact.quantized();
    assert_eq!(converted.to_bytes(), int8.to_bytes());
    // Vectors: 1 byte + 4/384 per dimension instead of 4.
    let ids = exact.memory_bytes() - 2_000 * 384 * 4;
    assert_eq!(int8.memory_bytes() - ids, 2_000 * (384 + 4));
}

#[test]
fn save_and_load_round_trip() {
    let mut rng = SplitMix64::new(3);
    let docs = random_vectors(&mut rng, 50, 16, true);
    for storage in [Storage::F32, Storage::Int8] {
        let mut index = build(&docs, storage);
        index.remove("doc00003");
        index.add("ünïcode id ✓", &docs[3]).unwrap();
        let bytes = index.to_bytes();
        let loaded = Index::from_bytes(&bytes).unwrap();
        assert_eq!(loaded.storage(), storage);
        assert_eq!(loaded.ids(), index.ids());
        assert_eq!(loaded.to_bytes(), bytes);
        let query = &docs[10];
        assert_eq!(loaded.top_k(query, 7).unwrap(), index.top_k(query, 7).unwrap());
        assert_eq!(loaded.vector("ünïcode id ✓"), index.vector("ünïcode id ✓"));
    }
    let empty = Index::new(5, Storage::F32).unwrap();
    let loaded = Index::from_bytes(&empty.to_bytes()).unwrap();
    assert_eq!((loaded.len(), loaded.dim()), (0, 5));
}

fn load_code(bytes: &[u8]) -> &'static str {
    Index::from_bytes(bytes).expect_err("loading should fail").code()
}

#[test]
fn bad_bytes_are_typed_errors() {
    let mut rng = SplitMix64::new(4);
    let docs = random_vectors(&mut rng, 20, 8, true);
    let bytes = build(&docs, Storage::Int8).to_bytes();
    assert_eq!(load_code(&[]), "bad_index");
    assert_eq!(load_code(b"BSIX"), "bad_index");
    assert_eq!(load_code(&bytes[..bytes.len() - 1]), "bad_index");
    let mut other = bytes.clone();
    other[0] = b'X';
    assert_eq!(load_code(&other), "bad_index");
    let mut newer = bytes.clone();
    newer[4] = 2;
    assert_eq!(load_code(&newer), "index_version");
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(load_code(&longer), "bad_index");

    for flip in 0..BYTE_FLIPS {
        let mut damaged = bytes.clone();
        let at = rng.below(damaged.len());
        damaged[at] ^= 1 << (flip % 8);
        let code = load_code(&damaged);
        assert!(code == "bad_index" || code == "index_version", "flip at {at}: {code}");
    }
}

/// Bytes whose checksum is right but whose fields lie: `body` without the checksum.
fn sealed(body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    out.extend_from_slice(&Sha256::digest(body));
    out
}

fn header(storage: u8, dim: u32, count: u32) -> Vec<u8> {
    let mut h = b"BSIX".to_vec();
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&[storage, 0, 0, 0]);
    h.extend_from_slice(&dim.to_le_bytes());
    h.extend_from_slice(&count.to_le_bytes());
    h
}

#[test]
fn crafted_bytes_with_a_valid_checksum_are_refused() {
    let expect = |body: Vec<u8>, needle: &str| {
        let err = Index::from_bytes(&sealed(&body)).expect_err("crafted bytes should fail");
        assert_eq!(err.code(), "bad_index");
        assert!(err.to_string().contains(needle), "{err} should mention {needle:?}");
    };
    expect(header(0, 0, 0), "dimension 0");
    expect(header(0, 1 << 30, 0), "dimension");
    expect(header(7, 4, 0), "storage tag");
    expect(header(0, 4, u32::MAX), "cannot fit");
    let mut huge_id = header(0, 1, 1);
    huge_id.extend_from_slice(&u32::MAX.to_le_bytes());
    huge_id.push(b'a');
    expect(huge_id, "id 0 has length");
    let mut short = header(0, 2, 1);
    short.extend_from_slice(&1u32.to_le_bytes());
    short.push(b'a');
    short.extend_from_slice(&1f32.to_le_bytes());
    expect(short, "vectors");
    let mut nan = header(0, 1, 1);
    nan.extend_from_slice(&1u32.to_le_bytes());
    nan.push(b'a');
    nan.extend_from_slice(&f32::NAN.to_le_bytes());
    expect(nan, "non-finite");
    let mut twice = header(1, 1, 2);
    for _ in 0..2 {
        twice.extend_from_slice(&1u32.to_le_bytes());
        twice.push(b'a');
    }
    twice.extend_from_slice(&[0; 10]);
    expect(twice, "appears twice");
    let mut bad_utf8 = header(0, 1, 1);
    bad_utf8.extend_from_slice(&1u32.to_le_bytes());
    bad_utf8.push(0xFF);
    bad_utf8.extend_from_slice(&1f32.to_le_bytes());
    expect(bad_utf8, "UTF-8");
}

#[test]
fn duplicate_ids_are_refused_and_nothing_is_added() {
    let mut index = Index::new(2, Storage::F32).unwrap();
    index.add("a", &[1.0, 0.0]).unwrap();
    let err = index.add("a", &[0.0, 1.0]).unwrap_err();
    assert_eq!(err.code(), "duplicate_id");
    assert!(err.to_string().contains("\"a\""));
    let batch = vec![("b".to_string(), vec![1.0, 1.0]), ("b".to_string(), vec![1.0, 2.0])];
    assert_eq!(index.add_batch(&batch).unwrap_err().code(), "duplicate_id");
    let batch = vec![("c".to_string(), vec![1.0, 1.0]), ("d".to_string(), vec![0.0, 0.0])];
    assert_eq!(index.add_batch(&batch).unwrap_err().code(), "invalid_vector");
    assert_eq!(index.len(), 1, "a failed batch adds nothing");
    assert_eq!(index.add("", &[1.0, 0.0]).unwrap_err().code(), "invalid_argument");
    assert_eq!(Index::new(0, Storage::F32).unwrap_err().code(), "invalid_argument");
}

#[test]
fn dimension_mismatch_and_bad_values() {
    let mut index = Index::new(3, Storage::Int8).unwrap();
    let err = index.add("a", &[1.0, 0.0]).unwrap_err();
    assert_eq!(err.code(), "dimension_mismatch");
    assert!(err.to_string().contains("has 2 dimensions"), "{err}");
    index.add("a", &[1.0, 0.0, 0.0]).unwrap();
    assert_eq!(index.top_k(&[1.0; 4], 1).unwrap_err().code(), "dimension_mismatch");
    assert_eq!(index.add("b", &[f32::NAN, 0.0, 0.0]).unwrap_err().code(), "invalid_vector");
    assert_eq!(index.add("b", &[f32::INFINITY, 0.0, 0.0]).unwrap_err().code(), "invalid_vector");
    assert_eq!(index.add("b", &[0.0; 3]).unwrap_err().code(), "invalid_vector");
    assert_eq!(index.top_k(&[0.0; 3], 1).unwrap_err().code(), "invalid_vector");
    // Tiny and huge components still normalise (the norm is taken in f64).
    index.add("tiny", &[1e-30, 1e-30, 0.0]).unwrap();
    index.add("huge", &[3e38, 3e38, 3e38]).unwrap();
    assert!((index.top_k(&[1.0, 1.0, 0.0], 1).unwrap()[0].score - 1.0).abs() < 1e-2);
}

#[test]
fn removed_documents_are_never_returned() {
    let mut rng = SplitMix64::new(5);
    let docs = random_vectors(&mut rng, 200, 32, true);
    for storage in [Storage::F32, Storage::Int8] {
        let mut index = build(&docs, storage);
        for i in (0..200).step_by(3) {
            assert!(index.remove(&format!("doc{i:05}")));
        }
        assert_eq!(index.len(), 200 - 67);
        for (i, query) in docs.iter().enumerate() {
            let hits = index.top_k(query, 200).unwrap();
            assert_eq!(hits.len(), index.len());
            assert!(hits.iter().all(|h| h.id[3..].parse::<usize>().unwrap() % 3 != 0));
            if i % 3 != 0 {
                assert_eq!(hits[0].id, format!("doc{i:05}"), "a kept document finds itself");
            }
        }
        index.add("doc00000", &docs[0]).unwrap();
        assert_eq!(index.top_k(&docs[0], 1).unwrap()[0].id, "doc00000");
    }
}

#[test]
fn pca_of_points_on_a_line_has_one_axis() {
    let dim = 10;
    let direction: Vec<f32> = (0..dim).map(|j| (j as f32 - 4.5) / 10.0).collect();
    let ts: Vec<f32> = (0..40).map(|i| i as f32 * 0.25 - 3.0).collect();
    let rows: Vec<f32> = ts.iter().flat_map(|&t| direction.iter().map(move |&d| 1.0 + t * d)).collect();
    let p = pca_2d(&rows, dim).unwrap();
    let len2: f64 = direction.iter().map(|&d| f64::from(d).powi(2)).sum();
    let mean_t = ts.iter().map(|&t| f64::from(t)).sum::<f64>() / ts.len() as f64;
    let var_t = ts.iter().map(|&t| (f64::from(t) - mean_t).powi(2)).sum::<f64>() / ts.len() as f64;
    assert!((p.variance[0] - var_t * len2).abs() < 1e-4 * var_t, "{:?} vs {}", p.variance, var_t * len2);
    assert_eq!(p.variance[1], 0.0);
    // The first coordinate is t along the line (up to sign); the second is 0.
    let sign = (p.coords[39][0] - p.coords[0][0]).signum();
    for (c, &t) in p.coords.iter().zip(&ts) {
        let want = sign as f64 * (f64::from(t) - mean_t) * len2.sqrt();
        assert!((f64::from(c[0]) - want).abs() < 1e-4, "{} vs {want}", c[0]);
        assert_eq!(c[1], 0.0);
    }
    assert!((p.total_variance - p.variance[0]).abs() < 1e-4 * p.total_variance);
}

#[test]
fn pca_of_points_on_a_plane_recovers_the_variance_order() {
    let dim = 20;
    let mut rng = SplitMix64::new(6);
    // Orthonormal u, w in 20-D; the spread along w is three times that along u.
    let u: Vec<f64> = (0..dim).map(|j| if j < 4 { 0.5 } else { 0.0 }).collect();
    let w: Vec<f64> = (0..dim).map(|j| if (4..8).contains(&j) { -0.5 } else { 0.0 }).collect();
    let mut rows = Vec::new();
    for _ in 0..500 {
        let (a, b) = (rng.next_normal(), 3.0 * rng.next_normal());
        rows.extend((0..dim).map(|j| (a * u[j] + b * w[j] + 0.5) as f32));
    }
    let p = pca_2d(&rows, dim).unwrap();
    assert!(p.variance[0] > 6.0 && p.variance[0] < 12.0, "{:?}", p.variance);
    assert!(p.variance[1] > 0.7 && p.variance[1] < 1.4, "{:?}", p.variance);
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    assert!(dot(&p.axes[0], &w).abs() > 0.999, "first axis is w");
    assert!(dot(&p.axes[1], &u).abs() > 0.999, "second axis is u");
    assert!(((p.variance[0] + p.variance[1]) - p.total_variance).abs() < 1e-6 * p.total_variance);
    // Same points, same map.
    assert_eq!(pca_2d(&rows, dim).unwrap().coords, p.coords);
}

#[test]
fn index_project_gives_a_point_per_document() {
    let mut rng = SplitMix64::new(7);
    let docs = random_vectors(&mut rng, 300, 64, true);
    let index = build(&docs, Storage::Int8);
    let p = index.project().unwrap();
    assert_eq!(p.coords.len(), 300);
    assert!(p.variance[0] >= p.variance[1] && p.variance[1] > 0.0);
    assert!(p.coords.iter().all(|c| c[0].is_finite() && c[1].is_finite()));
}

#[test]
fn texts_embedded_with_a_model_find_themselves() {
    let model = Model::from_checkpoint_dir(&fixture("tiny-safetensors")).unwrap();
    let texts = [
        "patient denies chest pain.",
        "no fever or cough",
        "metformin 500 mg twice daily",
        "shortness of breath on exertion",
        "blood pressure 150/90",
    ];
    let ids = ["n1", "n2", "n3", "n4", "n5"];
    let mut index = search::index_for(&model, Storage::F32).unwrap();
    let mut reports = Vec::new();
    search::add_texts(&mut index, &model, &ids, &texts, |done, total| {
        reports.push((done, total));
        Ok(())
    })
    .unwrap();
    assert_eq!(reports, [(5, 5)]);
    for (id, text) in ids.iter().zip(texts) {
        let hits = search::search_text(&index, &model, text, 3).unwrap();
        assert_eq!(hits[0].id, *id);
        assert!((hits[0].score - 1.0).abs() < 1e-4, "{}", hits[0].score);
    }
    let code = |r: bedside_runtime::Result<()>| r.unwrap_err().code();
    let ok = |_: usize, _: usize| Ok(());
    assert_eq!(code(search::add_texts(&mut index, &model, &["n1"], &["again"], ok)), "duplicate_id");
    assert_eq!(code(search::add_texts(&mut index, &model, &["x", "y"], &["text", " "], ok)), "empty_text");
    assert_eq!(code(search::add_texts(&mut index, &model, &["x"], &[], ok)), "invalid_argument");
    let mut wrong = Index::new(7, Storage::F32).unwrap();
    assert_eq!(code(search::add_texts(&mut wrong, &model, &["x"], &["text"], ok)), "dimension_mismatch");
    assert_eq!(index.len(), 5, "failed adds change nothing");
    assert_eq!(search::search_text(&index, &model, "   ", 3).unwrap_err().code(), "empty_text");
}
