//! A bounded reader of the GGUF container that bundles use.
//!
//! Hand-written rather than candle's `gguf_file::Content::read`, which trusts the header of
//! the file it reads: `general.alignment = 0` divides by zero, every element of a metadata
//! array becomes a boxed `Value` (a 50 MB array took 3.7 GB), and duplicate or overlapping
//! tensors are accepted, so 3,000 table entries pointing at one 1 MiB blob became 3 GB of
//! tensors. This reader borrows every string and metadata value from the input (no copy, no
//! per-element allocation), caps every count against [`Limits`] and the bytes that remain,
//! and checks that tensors are distinct, aligned, disjoint and inside the file before any of
//! them is built. Writing stays with candle (`gguf_file::write`): our own output is trusted.

use std::collections::HashSet;

use candle_core::quantized::GgmlDType;

use crate::error::{Error, Result};

/// Caps on a bundle's header, besides "no more than the bytes that are there". Documented in
/// models/BUNDLE.md.
pub struct Limits;

impl Limits {
    /// Metadata entries. A bundle writes six.
    pub const METADATA_ENTRIES: u64 = 1024;
    /// Tensors. BERT-large with a head has ~400.
    pub const TENSORS: u64 = 16_384;
    /// Bytes of a metadata key or a tensor name.
    pub const NAME_BYTES: u64 = 1024;
    /// Bytes of the header (metadata and tensor table), tokenizer included. The largest
    /// tokenizer.json of a BERT-family model we know is under 4 MiB.
    pub const HEADER_BYTES: u64 = 128 << 20;
    /// Dimensions of a tensor.
    pub const DIMS: u32 = 4;
    /// Nesting of metadata arrays (an array of arrays is depth 2).
    pub const ARRAY_DEPTH: u32 = 4;
    /// Elements of one metadata array. Bedside writes no arrays; GGUF tokenizer arrays of
    /// large vocabularies hold ~250k.
    pub const ARRAY_ELEMENTS: u64 = 1 << 20;
    /// The largest `general.alignment` accepted.
    pub const ALIGNMENT: u32 = 1 << 16;
}

/// Where tensor data starts when `general.alignment` is absent (the GGUF default).
pub const DEFAULT_ALIGNMENT: u32 = 32;
const KEY_ALIGNMENT: &str = "general.alignment";

// GGUF metadata value types.
const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

/// One metadata entry, borrowed from the file: `raw` is the value's encoding after its type
/// tag, which is what the checksum hashes.
#[derive(Debug, Clone, Copy)]
pub struct MetaEntry<'a> {
    pub key: &'a str,
    pub kind: u32,
    pub raw: &'a [u8],
}

impl<'a> MetaEntry<'a> {
    pub fn as_str(&self) -> Option<&'a str> {
        if self.kind != T_STRING {
            return None;
        }
        std::str::from_utf8(self.raw.get(8..)?).ok()
    }

    pub fn as_u32(&self) -> Option<u32> {
        if self.kind != T_U32 {
            return None;
        }
        Some(u32::from_le_bytes(self.raw.try_into().ok()?))
    }
}

/// One tensor-table entry, checked: its bytes lie inside the file's data section.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: GgmlDType,
    /// GGUF order (innermost first) reversed into candle's (outermost first).
    pub dims: Vec<usize>,
    /// Relative to the start of the data section.
    pub offset: u64,
    pub size: usize,
}

/// A GGUF file's header, checked.
pub struct Header<'a> {
    /// Metadata in file order; keys are unique.
    pub metadata: Vec<MetaEntry<'a>>,
    /// Tensors in file order; names are unique and their byte ranges disjoint.
    pub tensors: Vec<TensorEntry>,
    /// Where the data section starts in the file.
    pub data_offset: usize,
}

impl<'a> Header<'a> {
    pub fn get(&self, key: &str) -> Option<&MetaEntry<'a>> {
        self.metadata.iter().find(|m| m.key == key)
    }

    /// The bytes of one tensor (already checked to lie inside the file).
    pub fn tensor_bytes<'b>(&self, bytes: &'b [u8], t: &TensorEntry) -> &'b [u8] {
        let start = self.data_offset + t.offset as usize;
        &bytes[start..start + t.size]
    }
}

fn bad(message: String) -> Error {
    Error::BadBundle(message)
}

fn truncated(message: String) -> Error {
    Error::TruncatedBundle(message)
}

/// A cursor over the input that never reads past its end.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let left = (self.bytes.len() - self.at) as u64;
        if n > left {
            return Err(truncated(format!("{} needs {n} bytes at byte {}, {left} remain", what(), self.at)));
        }
        let start = self.at;
        self.at += n as usize;
        Ok(&self.bytes[start..self.at])
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }

    /// A GGUF string: u64 length, then UTF-8 bytes, at most `max` of them.
    fn string(&mut self, max: u64, what: &dyn Fn() -> String) -> Result<&'a str> {
        let len = self.u64(what)?;
        if len > max {
            return Err(bad(format!("{} is {len} bytes long, more than the limit of {max}", what())));
        }
        let raw = self.take(len, what)?;
        std::str::from_utf8(raw).map_err(|_| bad(format!("{} is not UTF-8", what())))
    }

    /// Skips one value of type `kind`, arrays included, without allocating per element.
    fn skip_value(&mut self, kind: u32, depth: u32, what: &dyn Fn() -> String) -> Result<()> {
        match kind {
            T_U8 | T_I8 | T_BOOL => self.take(1, what).map(drop),
            T_U16 | T_I16 => self.take(2, what).map(drop),
            T_U32 | T_I32 | T_F32 => self.take(4, what).map(drop),
            T_U64 | T_I64 | T_F64 => self.take(8, what).map(drop),
            T_STRING => {
                let len = self.u64(what)?;
                self.take(len, what).map(drop)
            }
            T_ARRAY => {
                if depth >= Limits::ARRAY_DEPTH {
                    return Err(bad(format!("{} nests arrays deeper than {}", what(), Limits::ARRAY_DEPTH)));
                }
                let element = self.u32(what)?;
                let count = self.u64(what)?;
                if count > Limits::ARRAY_ELEMENTS {
                    return Err(bad(format!(
                        "{} is an array of {count} elements (the limit is {})",
                        what(),
                        Limits::ARRAY_ELEMENTS
                    )));
                }
                match fixed_size(element) {
                    // Fixed-size elements: one bounds check for the whole array.
                    Some(size) => {
                        let total = count
                            .checked_mul(size)
                            .ok_or_else(|| bad(format!("{} declares {count} elements", what())))?;
                        self.take(total, what).map(drop)
                    }
                    None => {
                        // Each element takes at least 8 bytes (a length or a count), so the
                        // loop is bounded by the bytes that remain.
                        let left = (self.bytes.len() - self.at) as u64;
                        if count > left / 8 {
                            return Err(truncated(format!(
                                "{} declares {count} elements, more than its {left} remaining bytes can hold",
                                what()
                            )));
                        }
                        for _ in 0..count {
                            self.skip_value(element, depth + 1, what)?;
                        }
                        Ok(())
                    }
                }
            }
            other => Err(bad(format!("{} has unknown value type {other}", what()))),
        }
    }
}

fn fixed_size(kind: u32) -> Option<u64> {
    match kind {
        T_U8 | T_I8 | T_BOOL => Some(1),
        T_U16 | T_I16 => Some(2),
        T_U32 | T_I32 | T_F32 => Some(4),
        T_U64 | T_I64 | T_F64 => Some(8),
        _ => None,
    }
}

/// The storage types a bundle may hold (GGML type ids). Anything else is refused by id, so no
/// block layout the runtime never multiplies is ever built from a file.
fn dtype_of(id: u32) -> Option<GgmlDType> {
    match id {
        0 => Some(GgmlDType::F32),
        1 => Some(GgmlDType::F16),
        2 => Some(GgmlDType::Q4_0),
        8 => Some(GgmlDType::Q8_0),
        _ => None,
    }
}

/// Reads and checks a GGUF header (versions 2 and 3; version 1 used 32-bit lengths and no
/// Bedside bundle was ever written in it). `on_metadata` sees the metadata before the tensor
/// table is read, so the bundle layout version is checked first.
pub fn read_header<'a>(
    bytes: &'a [u8],
    on_metadata: impl FnOnce(&[MetaEntry<'a>]) -> Result<()>,
) -> Result<Header<'a>> {
    let mut c = Cursor { bytes, at: 0 };
    let magic = c.take(4, &|| "the magic number".into())?;
    if magic != b"GGUF" {
        return Err(Error::WrongMagic);
    }
    let version = c.u32(&|| "the GGUF version".into())?;
    if !(2..=3).contains(&version) {
        return Err(bad(format!("GGUF version {version} (bundles are GGUF 2 or 3)")));
    }
    let tensor_count = c.u64(&|| "the tensor count".into())?;
    let metadata_count = c.u64(&|| "the metadata count".into())?;
    if metadata_count > Limits::METADATA_ENTRIES {
        return Err(bad(format!(
            "{metadata_count} metadata entries, more than the limit of {}",
            Limits::METADATA_ENTRIES
        )));
    }
    if tensor_count > Limits::TENSORS {
        return Err(bad(format!("{tensor_count} tensors, more than the limit of {}", Limits::TENSORS)));
    }

    let mut metadata: Vec<MetaEntry<'a>> = Vec::with_capacity(metadata_count as usize);
    let mut keys = HashSet::new();
    for i in 0..metadata_count {
        let key = c.string(Limits::NAME_BYTES, &|| format!("metadata key {i}"))?;
        if !keys.insert(key) {
            return Err(bad(format!("metadata key `{key}` appears twice")));
        }
        let what = || format!("metadata `{key}`");
        let kind = c.u32(&what)?;
        let start = c.at;
        c.skip_value(kind, 0, &what)?;
        metadata.push(MetaEntry { key, kind, raw: &bytes[start..c.at] });
        if c.at as u64 > Limits::HEADER_BYTES {
            return Err(bad(format!("the header is longer than the limit of {} bytes", Limits::HEADER_BYTES)));
        }
    }
    on_metadata(&metadata)?;

    let alignment = match metadata.iter().find(|m| m.key == KEY_ALIGNMENT) {
        None => DEFAULT_ALIGNMENT,
        Some(m) => m.as_u32().ok_or_else(|| bad(format!("`{KEY_ALIGNMENT}` is not a u32")))?,
    };
    if !alignment.is_power_of_two() || alignment > Limits::ALIGNMENT {
        return Err(bad(format!(
            "`{KEY_ALIGNMENT}` is {alignment}; it must be a power of two no larger than {}",
            Limits::ALIGNMENT
        )));
    }

    let mut tensors = Vec::with_capacity(tensor_count as usize);
    let mut names = HashSet::new();
    for i in 0..tensor_count {
        let name = c.string(Limits::NAME_BYTES, &|| format!("tensor name {i}"))?;
        if !names.insert(name) {
            return Err(bad(format!("tensor `{name}` appears twice in the tensor table")));
        }
        let what = || format!("tensor `{name}`");
        let n_dims = c.u32(&what)?;
        if n_dims == 0 || n_dims > Limits::DIMS {
            return Err(bad(format!("tensor `{name}` has {n_dims} dimensions (1 to {} allowed)", Limits::DIMS)));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = c.u64(&what)?;
            dims.push(usize::try_from(d).map_err(|_| bad(format!("tensor `{name}` has a dimension of {d}")))?);
        }
        dims.reverse();
        let type_id = c.u32(&what)?;
        let dtype = dtype_of(type_id).ok_or_else(|| {
            bad(format!("tensor `{name}` has storage type {type_id} (f32, f16, q8_0 and q4_0 are read)"))
        })?;
        let offset = c.u64(&what)?;
        if offset % alignment as u64 != 0 {
            return Err(bad(format!("tensor `{name}` starts at offset {offset}, not a multiple of {alignment}")));
        }
        let size = byte_size(&dims, dtype)
            .ok_or_else(|| bad(format!("tensor `{name}` has an impossible shape {dims:?} for {dtype:?}")))?;
        tensors.push(TensorEntry { name: name.to_string(), dtype, dims, offset, size });
        if c.at as u64 > Limits::HEADER_BYTES {
            return Err(bad(format!("the header is longer than the limit of {} bytes", Limits::HEADER_BYTES)));
        }
    }

    let data_offset = c.at.div_ceil(alignment as usize) * alignment as usize;
    let data_len = bytes.len().saturating_sub(data_offset) as u64;
    if data_offset > bytes.len() && !tensors.is_empty() {
        return Err(truncated(format!("the file ends before its data section at byte {data_offset}")));
    }
    // Disjoint and inside the file: sorted by offset, each ends before the next begins, so
    // their sum can never exceed the file and no blob is read twice.
    let mut order: Vec<&TensorEntry> = tensors.iter().collect();
    order.sort_by_key(|t| t.offset);
    let mut previous: Option<(&str, u64)> = None;
    for t in order {
        let end = t.offset.checked_add(t.size as u64).filter(|&e| e <= data_len).ok_or_else(|| {
            truncated(format!(
                "tensor `{}` ends past the file ({} bytes at data offset {}, {data_len} data bytes)",
                t.name, t.size, t.offset
            ))
        })?;
        if let Some((other, other_end)) = previous {
            if t.offset < other_end {
                return Err(bad(format!("tensors `{other}` and `{}` overlap", t.name)));
            }
        }
        previous = Some((t.name.as_str(), end));
    }
    Ok(Header { metadata, tensors, data_offset })
}

/// Bytes of a tensor of `dims` in `dtype`, or None when the product overflows or the rows
/// are not whole blocks.
fn byte_size(dims: &[usize], dtype: GgmlDType) -> Option<usize> {
    let elements = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d))?;
    let block = dtype.block_size();
    if dims.iter().any(|&d| d == 0) || !elements.is_multiple_of(block) {
        return None;
    }
    (elements / block).checked_mul(dtype.type_size())
}

/// The index of the first value of `bytes` (a tensor in `dtype`) that is NaN or infinite, read
/// from the bit patterns (all-ones exponent) so no float is formed; for q8_0/q4_0 that is the
/// first value of the block whose f16 scale is not finite. A NaN weight turns every output into
/// NaN, and infinite scales overflow the integer kernels, so such bundles are refused at load.
pub fn first_non_finite(dtype: GgmlDType, bytes: &[u8]) -> Option<usize> {
    let f16_non_finite = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]) & 0x7c00 == 0x7c00;
    match dtype {
        GgmlDType::F32 => bytes
            .chunks_exact(4)
            .position(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0x7f80_0000 == 0x7f80_0000),
        GgmlDType::F16 => bytes.chunks_exact(2).position(f16_non_finite),
        _ => bytes
            .chunks_exact(dtype.type_size())
            .position(|block| f16_non_finite(block))
            .map(|block| block * dtype.block_size()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_found_by_their_bits() {
        let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        assert_eq!(first_non_finite(GgmlDType::F32, &f32s(&[1.0, -3.4e38, 0.0])), None);
        assert_eq!(first_non_finite(GgmlDType::F32, &f32s(&[1.0, 2.0, f32::NAN])), Some(2));
        assert_eq!(first_non_finite(GgmlDType::F32, &f32s(&[f32::NEG_INFINITY])), Some(0));
        let f16s = |v: &[f32]| v.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect::<Vec<u8>>();
        assert_eq!(first_non_finite(GgmlDType::F16, &f16s(&[1.0, 65504.0])), None);
        assert_eq!(first_non_finite(GgmlDType::F16, &f16s(&[1.0, 1e6])), Some(1));
        // q8_0: 34-byte blocks, an f16 scale then 32 codes; codes are never non-finite.
        let mut q8 = vec![0u8; 3 * 34];
        q8[34..36].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
        q8[36..66].fill(0xff);
        assert_eq!(first_non_finite(GgmlDType::Q8_0, &q8), None);
        q8[68..70].copy_from_slice(&half::f16::INFINITY.to_le_bytes());
        assert_eq!(first_non_finite(GgmlDType::Q8_0, &q8), Some(64));
    }

    /// A GGUF v3 file from parts: metadata as (key, type, raw value), tensors as (name, dims
    /// in GGUF order, type id, offset), then `data`.
    fn gguf(metadata: &[(&str, u32, Vec<u8>)], tensors: &[(&str, Vec<u64>, u32, u64)], data: &[u8]) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend((tensors.len() as u64).to_le_bytes());
        b.extend((metadata.len() as u64).to_le_bytes());
        for (k, t, v) in metadata {
            b.extend((k.len() as u64).to_le_bytes());
            b.extend(k.as_bytes());
            b.extend(t.to_le_bytes());
            b.extend(v);
        }
        for (n, dims, t, off) in tensors {
            b.extend((n.len() as u64).to_le_bytes());
            b.extend(n.as_bytes());
            b.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                b.extend(d.to_le_bytes());
            }
            b.extend(t.to_le_bytes());
            b.extend(off.to_le_bytes());
        }
        while b.len() % 32 != 0 {
            b.push(0);
        }
        b.extend(data);
        b
    }

    fn string(s: &str) -> Vec<u8> {
        let mut v = (s.len() as u64).to_le_bytes().to_vec();
        v.extend(s.as_bytes());
        v
    }

    fn read(bytes: &[u8]) -> Result<Header<'_>> {
        read_header(bytes, |_| Ok(()))
    }

    fn message(r: Result<Header<'_>>) -> String {
        match r {
            Ok(_) => panic!("a crafted header was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_well_formed_header_reads_with_borrowed_values() {
        let bytes = gguf(
            &[("general.name", T_STRING, string("tiny")), ("n", T_U32, 7u32.to_le_bytes().to_vec())],
            &[("a", vec![4, 2], 0, 0), ("b", vec![8], 0, 32)],
            &[0u8; 64],
        );
        let h = read(&bytes).unwrap();
        assert_eq!(h.get("general.name").unwrap().as_str(), Some("tiny"));
        assert_eq!(h.get("n").unwrap().as_u32(), Some(7));
        assert_eq!(h.tensors[0].dims, vec![2, 4]);
        assert_eq!(h.tensors[0].size, 32);
        assert_eq!(h.tensor_bytes(&bytes, &h.tensors[1]).len(), 32);
    }

    #[test]
    fn alignment_zero_and_non_powers_of_two_are_refused() {
        for a in [0u32, 3, 48, 1 << 20] {
            let bytes = gguf(&[(KEY_ALIGNMENT, T_U32, a.to_le_bytes().to_vec())], &[], &[]);
            assert!(message(read(&bytes)).contains("general.alignment"), "alignment {a}");
        }
    }

    #[test]
    fn duplicate_overlapping_and_outside_tensors_are_refused() {
        let dup = gguf(&[], &[("a", vec![8], 0, 0), ("a", vec![8], 0, 32)], &[0u8; 64]);
        assert!(message(read(&dup)).contains("appears twice"));
        // 3,000 entries pointing at one blob: refused at the second, without building any.
        let names: Vec<String> = (0..3000).map(|i| format!("t{i}")).collect();
        let table: Vec<(&str, Vec<u64>, u32, u64)> = names.iter().map(|n| (n.as_str(), vec![64], 0, 0)).collect();
        let shared = gguf(&[], &table, &[0u8; 256]);
        assert!(message(read(&shared)).contains("overlap"));
        let outside = gguf(&[], &[("a", vec![1 << 20], 0, 0)], &[0u8; 64]);
        assert!(message(read(&outside)).contains("ends past the file"));
        let huge = gguf(&[], &[("a", vec![u64::MAX / 2, 4], 0, 0)], &[0u8; 64]);
        assert!(message(read(&huge)).contains("impossible shape"));
        let misaligned = gguf(&[], &[("a", vec![4], 0, 4)], &[0u8; 64]);
        assert!(message(read(&misaligned)).contains("not a multiple"));
    }

    #[test]
    fn counts_and_lengths_are_bounded_by_the_limits_and_the_file() {
        // A metadata array that claims more elements than the file holds.
        let mut arr = T_STRING.to_le_bytes().to_vec();
        arr.extend(u64::MAX.to_le_bytes());
        let bytes = gguf(&[("x", T_ARRAY, arr)], &[], &[]);
        assert!(message(read(&bytes)).contains("elements"));
        // A u8 array at the element limit is skipped without a per-element allocation; a
        // 50 MB one is refused by its count.
        let array = |n: u64| {
            let mut a = T_U8.to_le_bytes().to_vec();
            a.extend(n.to_le_bytes());
            a.resize(a.len() + n as usize, 7);
            gguf(&[("x", T_ARRAY, a)], &[], &[])
        };
        assert_eq!(read(&array(Limits::ARRAY_ELEMENTS)).unwrap().metadata.len(), 1);
        assert!(message(read(&array(50_000_000))).contains("array of 50000000 elements"));
        // Counts beyond the limits are refused before anything is read.
        let mut many = b"GGUF".to_vec();
        many.extend(3u32.to_le_bytes());
        many.extend(0u64.to_le_bytes());
        many.extend(u64::MAX.to_le_bytes());
        assert!(message(read(&many)).contains("metadata entries"));
        // A key that claims to be longer than the limit.
        let mut long = b"GGUF".to_vec();
        long.extend(3u32.to_le_bytes());
        long.extend(0u64.to_le_bytes());
        long.extend(1u64.to_le_bytes());
        long.extend(u64::MAX.to_le_bytes());
        assert!(message(read(&long)).contains("limit"));
        // Duplicate keys.
        let dup = gguf(&[("k", T_U8, vec![1]), ("k", T_U8, vec![2])], &[], &[]);
        assert!(message(read(&dup)).contains("twice"));
        // Nested arrays beyond the depth limit.
        let mut nested = Vec::new();
        for _ in 0..=Limits::ARRAY_DEPTH {
            nested.extend(T_ARRAY.to_le_bytes());
            nested.extend(1u64.to_le_bytes());
        }
        nested.extend(T_U8.to_le_bytes());
        nested.extend(0u64.to_le_bytes());
        let bytes = gguf(&[("x", T_ARRAY, nested)], &[], &[]);
        assert!(message(read(&bytes)).contains("deeper"));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = gguf(
            &[("general.name", T_STRING, string("tiny")), ("n", T_U32, 7u32.to_le_bytes().to_vec())],
            &[("a", vec![4, 2], 0, 0), ("b", vec![8], 0, 32)],
            &[0u8; 64],
        );
        assert!(read(&bytes).is_ok());
        for len in 0..bytes.len() {
            let _ = read(&bytes[..len]).err().expect("a truncated header must not read");
        }
    }
}
