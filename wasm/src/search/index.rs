//! `Index`: documents' embeddings in memory, searched by cosine.
//!
//! Every vector is L2-normalised when it is added (the embedding model usually did it
//! already, but a caller's vector may not be), so a cosine is one dot product. Vectors are
//! kept as f32, or as int8 codes with one symmetric scale per vector (`x ≈ code · scale`,
//! `scale = max|x| / 127`): 4·dim bytes per document become dim + 4. An int8 index quantises
//! the query the same way and takes exact i32 dot products: a quarter of the bytes to stream
//! and integer multiply-adds, which SIMD units do 16 or 32 at a time (5× f32's speed with
//! AVX2; about f32's speed with the baseline x86-64 and scalar wasm builds). Recall@10
//! against f32 is about 0.98 on random 384-d vectors (`benches/search.rs`).
//!
//! Search is exact (brute force over every document), which is what a browser tab holding
//! a few hundred thousand notes needs; results are ordered by score, then by id, so the same
//! index and query give the same list on every machine. f32 dot products use a fixed number
//! of partial sums added in a fixed order, and int8 ones are exact integers: the wasm and
//! native builds round identically.
//!
//! `to_bytes`/`from_bytes` use a small versioned binary format closed by a SHA-256:
//!
//! ```text
//! "BSIX"  u32 version  u8 storage (0 = f32, 1 = int8)  3 zero bytes  u32 dim  u32 count
//! count × (u32 id length, id UTF-8 bytes)
//! f32:  count × dim f32              int8: count f32 scales, then count × dim i8 codes
//! SHA-256 of everything above (32 bytes)
//! ```
//!
//! All integers and floats are little-endian. Loading checks the magic, the version, the
//! checksum, then every length against the bytes that are left: crafted or damaged bytes give
//! [`Error::BadIndex`], never a panic or a huge allocation.

use ahash::AHashMap;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// First bytes of a saved index.
pub const INDEX_MAGIC: &[u8; 4] = b"BSIX";
/// The format `to_bytes` writes and `from_bytes` reads.
pub const INDEX_FORMAT_VERSION: u32 = 1;
/// Larger than any BERT hidden size (BERT-large: 1024) by far; bounds a crafted header.
pub const MAX_DIM: usize = 65_536;
/// Ids are names (file names, note ids), not documents; bounds a crafted id length.
pub const MAX_ID_BYTES: usize = 4_096;
/// Symmetric int8 range: codes in -127..=127, so +x and -x round to opposite codes.
const INT8_LEVELS: f32 = 127.0;
/// Partial sums per dot product: enough for the compiler to use 8-wide SIMD, and a fixed
/// summation order, so every build rounds the same way.
const LANES: usize = 8;
const HEADER_BYTES: usize = 20;
const CHECKSUM_BYTES: usize = 32;

/// How an index keeps its vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// 4 bytes per dimension.
    F32,
    /// 1 byte per dimension plus a 4-byte scale per vector.
    Int8,
}

impl Storage {
    fn tag(self) -> u8 {
        match self {
            Storage::F32 => 0,
            Storage::Int8 => 1,
        }
    }
}

/// A search result: a document id and its cosine with the query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub id: String,
    pub score: f32,
}

#[derive(Debug, Clone)]
enum Vectors {
    F32(Vec<f32>),
    /// Row `i` is `codes[i·dim .. (i+1)·dim] · scales[i]`.
    Int8 {
        codes: Vec<i8>,
        scales: Vec<f32>,
    },
}

/// An in-memory embedding index. Row `i` holds the document `ids[i]`.
#[derive(Debug, Clone)]
pub struct Index {
    dim: usize,
    ids: Vec<String>,
    rows: AHashMap<String, usize>,
    vectors: Vectors,
}

impl Index {
    /// An empty index for `dim`-dimensional vectors.
    pub fn new(dim: usize, storage: Storage) -> Result<Self> {
        if dim == 0 || dim > MAX_DIM {
            return Err(Error::InvalidArgument {
                field: "dim".into(),
                message: format!("{dim} dimensions; an index holds 1 to {MAX_DIM}"),
            });
        }
        let vectors = match storage {
            Storage::F32 => Vectors::F32(Vec::new()),
            Storage::Int8 => Vectors::Int8 { codes: Vec::new(), scales: Vec::new() },
        };
        Ok(Self { dim, ids: Vec::new(), rows: AHashMap::new(), vectors })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn storage(&self) -> Storage {
        match self.vectors {
            Vectors::F32(_) => Storage::F32,
            Vectors::Int8 { .. } => Storage::Int8,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Document ids in row order (the order of [`Index::project`]'s coordinates).
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    pub fn contains(&self, id: &str) -> bool {
        self.rows.contains_key(id)
    }

    /// Bytes held for vectors, scales and ids (hash-map bookkeeping not counted).
    pub fn memory_bytes(&self) -> usize {
        let vectors = match &self.vectors {
            Vectors::F32(v) => v.len() * 4,
            Vectors::Int8 { codes, scales } => codes.len() + scales.len() * 4,
        };
        // Each id is stored twice (row order and lookup); a String is 24 bytes plus its text.
        let ids: usize = self.ids.iter().map(|id| 2 * (std::mem::size_of::<String>() + id.len())).sum();
        vectors + ids
    }

    /// Adds one document. Its vector is normalised to length 1 (and quantised for int8).
    pub fn add(&mut self, id: &str, vector: &[f32]) -> Result<()> {
        self.check_new_id(id)?;
        let unit = self.unit_vector(vector, || format!("vector for id {id:?}"))?;
        self.push(id.to_string(), &unit);
        Ok(())
    }

    /// Adds many documents, all or none: every id and vector is checked before the first is added.
    pub fn add_batch(&mut self, docs: &[(String, Vec<f32>)]) -> Result<()> {
        self.check_new_ids(docs.iter().map(|(id, _)| id.as_str()))?;
        let mut units = Vec::with_capacity(docs.len());
        for (id, vector) in docs {
            units.push(self.unit_vector(vector, || format!("vector for id {id:?}"))?);
        }
        for ((id, _), unit) in docs.iter().zip(units) {
            self.push(id.clone(), &unit);
        }
        Ok(())
    }

    /// Checks that `ids` could all be added: well-formed, not in the index, no repeats.
    pub fn check_new_ids<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Result<()> {
        let mut seen: ahash::AHashSet<&str> = ahash::AHashSet::new();
        for id in ids {
            self.check_new_id(id)?;
            if !seen.insert(id) {
                return Err(Error::DuplicateId { id: id.to_string() });
            }
        }
        Ok(())
    }

    fn check_new_id(&self, id: &str) -> Result<()> {
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Err(Error::InvalidArgument {
                field: "id".into(),
                message: format!("an id has 1 to {MAX_ID_BYTES} bytes, got {}", id.len()),
            });
        }
        if self.rows.contains_key(id) {
            return Err(Error::DuplicateId { id: id.to_string() });
        }
        Ok(())
    }

    /// Removes a document; `false` if the id was not in the index. The last row takes the
    /// removed row's place, so removal costs one vector copy.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(row) = self.rows.remove(id) else { return false };
        let last = self.ids.len() - 1;
        self.ids.swap_remove(row);
        let dim = self.dim;
        match &mut self.vectors {
            Vectors::F32(v) => swap_remove_row(v, row, last, dim),
            Vectors::Int8 { codes, scales } => {
                swap_remove_row(codes, row, last, dim);
                scales.swap_remove(row);
            }
        }
        if row != last {
            if let Some(slot) = self.rows.get_mut(&self.ids[row]) {
                *slot = row;
            }
        }
        true
    }

    /// The stored (normalised, for int8 dequantised) vector of `id`.
    pub fn vector(&self, id: &str) -> Option<Vec<f32>> {
        self.rows.get(id).map(|&row| self.row(row))
    }

    fn row(&self, row: usize) -> Vec<f32> {
        let span = row * self.dim..(row + 1) * self.dim;
        match &self.vectors {
            Vectors::F32(v) => v[span].to_vec(),
            Vectors::Int8 { codes, scales } => codes[span].iter().map(|&c| f32::from(c) * scales[row]).collect(),
        }
    }

    /// Every vector, row-major (`len × dim`), dequantised.
    pub fn to_f32_rows(&self) -> Vec<f32> {
        match &self.vectors {
            Vectors::F32(v) => v.clone(),
            Vectors::Int8 { .. } => (0..self.len()).flat_map(|row| self.row(row)).collect(),
        }
    }

    /// The same documents stored as int8 (a copy; an int8 index is cloned as is).
    pub fn quantized(&self) -> Index {
        let Vectors::F32(v) = &self.vectors else { return self.clone() };
        let mut codes = Vec::with_capacity(v.len());
        let mut scales = Vec::with_capacity(self.len());
        for row in v.chunks_exact(self.dim) {
            scales.push(quantize_into(row, &mut codes));
        }
        Index {
            dim: self.dim,
            ids: self.ids.clone(),
            rows: self.rows.clone(),
            vectors: Vectors::Int8 { codes, scales },
        }
    }

    /// The `k` documents most similar to `query` (cosine), best first; equal scores are
    /// ordered by id. Fewer when the index holds fewer; none for an empty index or `k = 0`.
    pub fn top_k(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        let unit = self.unit_vector(query, || "query".to_string())?;
        let k = k.min(self.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        let mut scored: Vec<(f32, usize)> = self.scores(&unit).into_iter().zip(0..).collect();
        let order =
            |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then_with(|| self.ids[a.1].cmp(&self.ids[b.1]));
        if k < scored.len() {
            scored.select_nth_unstable_by(k - 1, order);
            scored.truncate(k);
        }
        scored.sort_unstable_by(order);
        Ok(scored.into_iter().map(|(score, row)| Hit { id: self.ids[row].clone(), score }).collect())
    }

    /// Cosine of a unit-length query with every row, in row order.
    fn scores(&self, unit: &[f32]) -> Vec<f32> {
        match &self.vectors {
            Vectors::F32(v) => v.chunks_exact(self.dim).map(|row| dot_f32(unit, row)).collect(),
            Vectors::Int8 { codes, scales } => {
                let mut query = Vec::with_capacity(self.dim);
                let q_scale = quantize_into(unit, &mut query);
                int8_scores(&query, q_scale, codes, scales)
            }
        }
    }

    /// A 2-D map of the collection (PCA), one point per document in [`Index::ids`] order.
    pub fn project(&self) -> Result<super::project::Projection> {
        super::project::pca_2d(&self.to_f32_rows(), self.dim)
    }

    /// Checks a vector's length and values; returns it scaled to length 1.
    fn unit_vector(&self, vector: &[f32], what: impl Fn() -> String) -> Result<Vec<f32>> {
        if vector.len() != self.dim {
            return Err(Error::DimensionMismatch { what: what(), expected: self.dim, got: vector.len() });
        }
        if let Some(i) = vector.iter().position(|x| !x.is_finite()) {
            return Err(Error::InvalidVector {
                what: what(),
                message: format!("component {i} is not a finite number"),
            });
        }
        // f64: a sum of squares of tiny or huge f32 components neither underflows nor overflows.
        let norm = vector.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
        if norm == 0.0 {
            return Err(Error::InvalidVector { what: what(), message: "all components are zero: no direction".into() });
        }
        Ok(vector.iter().map(|&x| (f64::from(x) / norm) as f32).collect())
    }

    fn push(&mut self, id: String, unit: &[f32]) {
        match &mut self.vectors {
            Vectors::F32(v) => v.extend_from_slice(unit),
            Vectors::Int8 { codes, scales } => scales.push(quantize_into(unit, codes)),
        }
        self.rows.insert(id.clone(), self.ids.len());
        self.ids.push(id);
    }

    /// The index as bytes (see the module documentation for the layout).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.memory_bytes() + CHECKSUM_BYTES);
        out.extend_from_slice(INDEX_MAGIC);
        out.extend_from_slice(&INDEX_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&[self.storage().tag(), 0, 0, 0]);
        // invariant: dim ≤ MAX_DIM and ids are < 2^32 (a wasm32 address space cannot hold more).
        out.extend_from_slice(&(self.dim as u32).to_le_bytes());
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        for id in &self.ids {
            out.extend_from_slice(&(id.len() as u32).to_le_bytes());
            out.extend_from_slice(id.as_bytes());
        }
        match &self.vectors {
            Vectors::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Vectors::Int8 { codes, scales } => {
                scales.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
                out.extend(codes.iter().map(|&c| c as u8));
            }
        }
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out
    }

    /// Reads bytes written by [`Index::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < HEADER_BYTES + CHECKSUM_BYTES {
            return Err(Error::BadIndex(format!(
                "{} bytes; even an empty index has {}",
                bytes.len(),
                HEADER_BYTES + CHECKSUM_BYTES
            )));
        }
        let mut r = Reader { bytes: &bytes[..bytes.len() - CHECKSUM_BYTES], at: 0 };
        if r.take(4, "magic")? != INDEX_MAGIC {
            return Err(Error::BadIndex("wrong magic (expected \"BSIX\"): not a saved Bedside index".into()));
        }
        let version = r.u32("version")?;
        if version != INDEX_FORMAT_VERSION {
            return Err(Error::IndexVersion { found: version, supported: INDEX_FORMAT_VERSION });
        }
        let stored = &bytes[bytes.len() - CHECKSUM_BYTES..];
        if Sha256::digest(r.bytes).as_slice() != stored {
            return Err(Error::BadIndex("checksum mismatch: the bytes are damaged or truncated".into()));
        }
        // A valid checksum proves nothing about intent: check every field of a crafted file too.
        let storage = match r.take(4, "storage")? {
            [0, 0, 0, 0] => Storage::F32,
            [1, 0, 0, 0] => Storage::Int8,
            other => return Err(Error::BadIndex(format!("unknown storage tag {other:?}"))),
        };
        let dim = r.u32("dim")? as usize;
        if dim == 0 || dim > MAX_DIM {
            return Err(Error::BadIndex(format!("dimension {dim} is outside 1..={MAX_DIM}")));
        }
        let count = r.u32("count")? as usize;
        // Each id takes at least 5 bytes: a count beyond what is left is a lie, not an allocation.
        if count > r.left() / 5 {
            return Err(Error::BadIndex(format!("{count} documents cannot fit in {} bytes", r.left())));
        }
        let mut index = Index::new(dim, storage).map_err(|e| Error::BadIndex(e.to_string()))?;
        index.ids.reserve(count);
        for n in 0..count {
            let len = r.u32("id length")? as usize;
            if len == 0 || len > MAX_ID_BYTES {
                return Err(Error::BadIndex(format!("id {n} has length {len}, outside 1..={MAX_ID_BYTES}")));
            }
            let id = std::str::from_utf8(r.take(len, "id")?)
                .map_err(|_| Error::BadIndex(format!("id {n} is not valid UTF-8")))?
                .to_string();
            if index.rows.insert(id.clone(), n).is_some() {
                return Err(Error::BadIndex(format!("id {id:?} appears twice")));
            }
            index.ids.push(id);
        }
        let values =
            count.checked_mul(dim).ok_or_else(|| Error::BadIndex(format!("{count} × {dim} values overflow")))?;
        match &mut index.vectors {
            Vectors::F32(v) => {
                let raw = r.take_array(values, 4, "vectors")?;
                v.extend(raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    return Err(Error::BadIndex(format!("vector {} holds a non-finite value", i / dim)));
                }
            }
            Vectors::Int8 { codes, scales } => {
                let raw = r.take_array(count, 4, "scales")?;
                scales.extend(raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
                if let Some(i) = scales.iter().position(|s| !s.is_finite() || *s < 0.0) {
                    return Err(Error::BadIndex(format!("vector {i} has scale {}", scales[i])));
                }
                codes.extend(r.take(values, "codes")?.iter().map(|&b| b as i8));
            }
        }
        if r.left() != 0 {
            return Err(Error::BadIndex(format!("{} unexpected bytes after the vectors", r.left())));
        }
        Ok(index)
    }
}

/// Mean share of the exact top `k` that the approximate index also returns, over `queries`:
/// recall@k of an int8 index against the f32 index it was made from.
pub fn recall_at_k(exact: &Index, approx: &Index, queries: &[Vec<f32>], k: usize) -> Result<f32> {
    if queries.is_empty() || k == 0 {
        return Err(Error::InvalidArgument {
            field: "queries".into(),
            message: "recall needs queries and k ≥ 1".into(),
        });
    }
    let mut found = 0usize;
    let mut wanted = 0usize;
    for query in queries {
        let truth = exact.top_k(query, k)?;
        let got = approx.top_k(query, k)?;
        wanted += truth.len();
        found += truth.iter().filter(|t| got.iter().any(|g| g.id == t.id)).count();
    }
    Ok(if wanted == 0 { 1.0 } else { found as f32 / wanted as f32 })
}

/// Appends `unit`'s int8 codes to `codes` and returns the scale.
fn quantize_into(unit: &[f32], codes: &mut Vec<i8>) -> f32 {
    let max = unit.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max == 0.0 {
        codes.extend(std::iter::repeat_n(0, unit.len()));
        return 0.0;
    }
    let scale = max / INT8_LEVELS;
    // invariant: |x / scale| ≤ 127, so the cast cannot saturate.
    codes.extend(unit.iter().map(|&x| (x / scale).round().clamp(-INT8_LEVELS, INT8_LEVELS) as i8));
    scale
}

fn swap_remove_row<T: Copy>(v: &mut Vec<T>, row: usize, last: usize, dim: usize) {
    if row != last {
        v.copy_within(last * dim..(last + 1) * dim, row * dim);
    }
    v.truncate(last * dim);
}

fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    reduce(acc) + tail
}

/// Cosines of an int8 query with every int8 row. Integer sums are exact, so the AVX2 build
/// of the same loop (picked at run time; about 5× faster than the baseline x86-64 one, which
/// has to widen bytes with SSE2) returns bit-identical scores.
fn int8_scores(query: &[i8], q_scale: f32, codes: &[i8], scales: &[f32]) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked on the line above.
        return unsafe { int8_scores_avx2(query, q_scale, codes, scales) };
    }
    int8_scores_portable(query, q_scale, codes, scales)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn int8_scores_avx2(query: &[i8], q_scale: f32, codes: &[i8], scales: &[f32]) -> Vec<f32> {
    int8_scores_portable(query, q_scale, codes, scales)
}

// Plain index loops, not iterator chains, here and in `dot_i8_i8`: LLVM inlines them into
// the AVX2 copy before vectorising, where the closures of an iterator chain stayed baseline code.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn int8_scores_portable(query: &[i8], q_scale: f32, codes: &[i8], scales: &[f32]) -> Vec<f32> {
    let dim = query.len();
    let rows = scales.len().min(codes.len() / dim.max(1));
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        out.push(dot_i8_i8(query, &codes[row * dim..(row + 1) * dim]) as f32 * (q_scale * scales[row]));
    }
    out
}

/// Exact in i32 (|sum| ≤ 127² · MAX_DIM < 2³¹), so the order of the additions does not matter
/// and the compiler may vectorise freely.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn dot_i8_i8(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut sum = 0i32;
    for i in 0..n {
        sum += i32::from(a[i]) * i32::from(b[i]);
    }
    sum
}

/// Pairwise, in a fixed order.
fn reduce(acc: [f32; LANES]) -> f32 {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// Bounds-checked little-endian reads; every failure names the field.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8]> {
        if n > self.left() {
            return Err(Error::BadIndex(format!("{field}: needs {n} bytes, {} left", self.left())));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn take_array(&mut self, count: usize, size: usize, field: &str) -> Result<&'a [u8]> {
        let n = count.checked_mul(size).ok_or_else(|| Error::BadIndex(format!("{field}: size overflows")))?;
        self.take(n, field)
    }

    fn u32(&mut self, field: &str) -> Result<u32> {
        let b = self.take(4, field)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_codes_round_trip_within_half_a_step() {
        let unit = [0.6f32, -0.8, 0.0];
        let mut codes = Vec::new();
        let scale = quantize_into(&unit, &mut codes);
        assert_eq!(codes, vec![95, -127, 0]);
        for (x, &c) in unit.iter().zip(&codes) {
            assert!((x - f32::from(c) * scale).abs() <= scale / 2.0);
        }
    }

    #[test]
    fn dot_products_handle_a_tail() {
        let a: Vec<f32> = (0..11).map(|i| i as f32).collect();
        let expected: f32 = a.iter().map(|x| x * x).sum();
        assert_eq!(dot_f32(&a, &a), expected);
        let codes: Vec<i8> = (0..11).map(|i| i as i8).collect();
        assert_eq!(dot_i8_i8(&codes, &codes) as f32, expected);
    }

    #[test]
    fn remove_moves_the_last_row() {
        let mut index = Index::new(2, Storage::F32).unwrap();
        index.add("a", &[1.0, 0.0]).unwrap();
        index.add("b", &[0.0, 1.0]).unwrap();
        index.add("c", &[1.0, 1.0]).unwrap();
        assert!(index.remove("a"));
        assert!(!index.remove("a"));
        assert_eq!(index.ids(), ["c", "b"]);
        assert_eq!(index.vector("b").unwrap(), vec![0.0, 1.0]);
        assert_eq!(index.top_k(&[1.0, 0.0], 1).unwrap()[0].id, "c");
    }
}
