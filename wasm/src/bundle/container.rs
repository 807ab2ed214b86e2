//! The bundle container: a GGUF v2 file (the format llama.cpp and candle read) holding the
//! weights, the tokenizer JSON, the manifest JSON and a SHA-256 checksum of all three.
//!
//! Written and read through candle's `gguf_file`, which bounds string, array and tensor
//! sizes in crafted files. The checksum covers the manifest, the tokenizer, the tensor
//! table and the tensor data; it is checked before any tensor is built. Spec: models/BUNDLE.md.

use std::io::Cursor;
use std::sync::Arc;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::k_quants::{BlockQ4_0, BlockQ8_0, GgmlType};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::Device;
use sha2::{Digest, Sha256};

use super::gguf::{self, Header, TensorEntry};
use super::manifest::{Manifest, Quantization, FORMAT_VERSION};
use crate::error::{Error, Result};
use crate::model::{Weight, Weights};

pub const KEY_NAME: &str = "general.name";
pub const KEY_FORMAT_VERSION: &str = "bedside.format_version";
pub const KEY_MANIFEST: &str = "bedside.manifest";
pub const KEY_TOKENIZER: &str = "bedside.tokenizer";
pub const KEY_CHECKSUM: &str = "bedside.checksum";
const CHECKSUM_PREFIX: &str = "sha256:";
const GGUF_MAGIC: &[u8; 4] = b"GGUF";
/// Domain separators, so a bundle checksum never equals a hash of some other byte string.
const CHECKSUM_DOMAIN_V1: &[u8] = b"bedside-bundle-v1\0";
const CHECKSUM_DOMAIN_V3: &[u8] = b"bedside-bundle-v3\0";

/// A bundle's parts, as read from bytes.
pub struct Bundle {
    pub manifest: Manifest,
    pub tokenizer_json: String,
    pub weights: Weights,
    pub checksum: String,
    /// `general.name`; verified by the checksum only where `coverage` says so.
    pub name: String,
    pub coverage: ChecksumCoverage,
}

/// Tensors that stay f32 whatever the quantization: 1-D parameters, the position and
/// token-type tables (small, and every token reads them) and the classifier.
fn keeps_f32(name: &str, dims: &[usize]) -> bool {
    dims.len() != 2
        || name.starts_with("embeddings.position_embeddings")
        || name.starts_with("embeddings.token_type_embeddings")
        || name.starts_with("classifier.")
}

/// In q4_0 bundles these stay q8_0. Measured on all-MiniLM-L6-v2 against sentence-
/// transformers (24 sentences, tests/minilm.rs): all-q4_0 min cosine 0.959; with attention
/// values, attention output projections and the last layer at q8_0, 0.979 for +1.6 MB (the
/// bundle is 17% of f32).
fn q4_keeps_q8(name: &str, last_layer: &str) -> bool {
    name.contains("attention.self.value.") || name.contains("attention.output.dense.") || name.starts_with(last_layer)
}

fn storage_type(name: &str, dims: &[usize], quant: Quantization, last_layer: &str) -> GgmlDType {
    if keeps_f32(name, dims) {
        return GgmlDType::F32;
    }
    let wanted = match quant {
        Quantization::F32 => GgmlDType::F32,
        Quantization::F16 => GgmlDType::F16,
        Quantization::Q8_0 => GgmlDType::Q8_0,
        Quantization::Q4_0 if q4_keeps_q8(name, last_layer) => GgmlDType::Q8_0,
        Quantization::Q4_0 => GgmlDType::Q4_0,
    };
    // Block formats need rows that are whole blocks (32 values); odd widths fall back to f16.
    let row = dims[dims.len() - 1];
    if row.is_multiple_of(wanted.block_size()) {
        wanted
    } else {
        GgmlDType::F16
    }
}

/// What a bundle's checksum covers, by layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumCoverage {
    /// Layouts 1 and 2: manifest, tokenizer, tensor table and tensor data. `general.name`
    /// and any other metadata key could be changed without the checksum noticing.
    ManifestTokenizerTensors,
    /// Layout 3 on: every metadata key and value but the checksum itself, the tensor table
    /// and the tensor data.
    AllMetadataAndTensors,
}

impl ChecksumCoverage {
    pub fn of_version(version: u32) -> Self {
        if version >= 3 {
            ChecksumCoverage::AllMetadataAndTensors
        } else {
            ChecksumCoverage::ManifestTokenizerTensors
        }
    }
}

fn checksum(header: &Header<'_>, bytes: &[u8], coverage: ChecksumCoverage) -> Result<String> {
    let mut h = Sha256::new();
    match coverage {
        ChecksumCoverage::ManifestTokenizerTensors => {
            h.update(CHECKSUM_DOMAIN_V1);
            for key in [KEY_MANIFEST, KEY_TOKENIZER] {
                let part = metadata_string(header, key)?.as_bytes();
                h.update((part.len() as u64).to_le_bytes());
                h.update(part);
            }
        }
        ChecksumCoverage::AllMetadataAndTensors => {
            h.update(CHECKSUM_DOMAIN_V3);
            // Sorted by key: the order a writer happens to use is not meaningful.
            let mut entries: Vec<_> = header.metadata.iter().filter(|m| m.key != KEY_CHECKSUM).collect();
            entries.sort_by_key(|m| m.key);
            h.update((entries.len() as u64).to_le_bytes());
            for m in entries {
                h.update((m.key.len() as u64).to_le_bytes());
                h.update(m.key.as_bytes());
                h.update(m.kind.to_le_bytes());
                h.update((m.raw.len() as u64).to_le_bytes());
                h.update(m.raw);
            }
        }
    }
    let mut table: Vec<&TensorEntry> = header.tensors.iter().collect();
    table.sort_by(|a, b| a.name.cmp(&b.name));
    for info in table {
        h.update((info.name.len() as u64).to_le_bytes());
        h.update(info.name.as_bytes());
        h.update(format!("{:?}", info.dtype).as_bytes());
        // Outermost first, as candle's shape (which layouts 1 and 2 hashed) has them.
        for d in &info.dims {
            h.update((*d as u64).to_le_bytes());
        }
        h.update(info.offset.to_le_bytes());
    }
    h.update(bytes.get(header.data_offset..).unwrap_or_default());
    Ok(hex_checksum(&h.finalize()))
}

fn hex_checksum(digest: &[u8]) -> String {
    let mut out = String::with_capacity(CHECKSUM_PREFIX.len() + 64);
    out.push_str(CHECKSUM_PREFIX);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Serialises a model into bundle bytes: the tensors named in `names` (canonical names,
/// usually `Weights::used_names` after loading the model), stored as the manifest's
/// quantization asks.
pub fn write(manifest: &Manifest, tokenizer_json: &str, weights: &Weights, names: &[String]) -> Result<Vec<u8>> {
    manifest.validate()?;
    // Whatever layout the manifest was read from, it is written in this one.
    let manifest = &Manifest { format_version: FORMAT_VERSION, ..manifest.clone() };
    let manifest_json = serde_json::to_string(manifest).map_err(|e| Error::manifest("manifest", e.to_string()))?;
    let mut tensors: Vec<(String, Arc<QTensor>)> = Vec::new();
    let last_layer = format!("encoder.layer.{}.", manifest.config.num_hidden_layers.saturating_sub(1));
    for name in names {
        let weight = weights.get_any(name)?;
        let dtype = storage_type(name, weight.dims(), manifest.quantization, &last_layer);
        let qtensor = match weight {
            // Re-exporting at the same type keeps the stored blocks bit for bit.
            Weight::Quantized(q) if q.dtype() == dtype => q.clone(),
            other => {
                let values = compact(&other.to_f32()?)?;
                Arc::new(match dtype {
                    GgmlDType::Q4_0 => super::quantize::q4_0(&values)?,
                    _ => QTensor::quantize(&values, dtype)?,
                })
            }
        };
        tensors.push((name.clone(), qtensor));
    }
    assemble(FORMAT_VERSION, &manifest.base_model, &manifest_json, tokenizer_json, &tensors)
}

/// The GGUF bytes of a bundle in layout `format_version`, checksum patched in.
fn assemble(
    format_version: u32,
    base_model: &str,
    manifest_json: &str,
    tokenizer_json: &str,
    tensors: &[(String, Arc<QTensor>)],
) -> Result<Vec<u8>> {
    let name = Value::String(base_model.to_string());
    let arch = Value::String("bert".into());
    let version = Value::U32(format_version);
    let manifest_value = Value::String(manifest_json.to_string());
    let tokenizer_value = Value::String(tokenizer_json.to_string());
    // Fixed-length placeholder: the real checksum is patched in place once the data exist.
    let placeholder = format!("{CHECKSUM_PREFIX}{}", "0".repeat(64));
    let checksum_value = Value::String(placeholder.clone());
    // The layout version first, so a reader meets it before anything else it must interpret.
    let metadata: Vec<(&str, &Value)> = vec![
        (KEY_FORMAT_VERSION, &version),
        ("general.architecture", &arch),
        (KEY_NAME, &name),
        (KEY_MANIFEST, &manifest_value),
        (KEY_TOKENIZER, &tokenizer_value),
        (KEY_CHECKSUM, &checksum_value),
    ];
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t.as_ref())).collect();
    let mut cursor = Cursor::new(Vec::new());
    gguf_file::write(&mut cursor, &metadata, &tensor_refs)?;
    let mut bytes = cursor.into_inner();

    let header = gguf::read_header(&bytes, |_| Ok(()))?;
    let sum = checksum(&header, &bytes, ChecksumCoverage::of_version(format_version))?;
    let header_end = header.data_offset;
    let at = find(&bytes[..header_end], placeholder.as_bytes())
        .ok_or_else(|| Error::BadBundle("internal: checksum placeholder not found".into()))?;
    bytes[at..at + sum.len()].copy_from_slice(sum.as_bytes());
    Ok(bytes)
}

/// A copy with its own storage. `QTensor::quantize` reads the whole backing buffer, so a
/// view (a narrowed head, a slice of a fused matrix) must not reach it.
fn compact(t: &candle_core::Tensor) -> Result<candle_core::Tensor> {
    let values = t.flatten_all()?.to_vec1::<f32>()?;
    Ok(candle_core::Tensor::from_vec(values, t.dims(), &Device::Cpu)?)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn metadata_string<'a>(header: &Header<'a>, key: &str) -> Result<&'a str> {
    header
        .get(key)
        .ok_or_else(|| Error::manifest(key, "missing"))?
        .as_str()
        .ok_or_else(|| Error::manifest(key, "is not a UTF-8 string"))
}

/// Parses and verifies bundle bytes.
pub fn read(bytes: &[u8]) -> Result<Bundle> {
    read_pinned(bytes, None)
}

/// As [`read`], and refuses any bundle whose checksum is not `pin` (integrity pinning, like
/// Subresource Integrity): checked after the checksum is verified, before any tensor is built.
pub fn read_pinned(bytes: &[u8], pin: Option<&Pin>) -> Result<Bundle> {
    if bytes.len() < GGUF_MAGIC.len() {
        return Err(Error::TruncatedBundle(format!("{} bytes is too short for a bundle", bytes.len())));
    }
    if &bytes[..4] != GGUF_MAGIC {
        return Err(Error::WrongMagic);
    }
    let mut version = 0;
    // The layout version is checked as soon as the metadata is read, before the tensor table.
    let header = gguf::read_header(bytes, |metadata| {
        version = metadata
            .iter()
            .find(|m| m.key == KEY_FORMAT_VERSION)
            .ok_or_else(|| {
                Error::BadBundle(format!("a GGUF file without `{KEY_FORMAT_VERSION}`: not made by Bedside"))
            })?
            .as_u32()
            .ok_or_else(|| Error::manifest(KEY_FORMAT_VERSION, "is not a u32"))?;
        super::manifest::check_version(version)
    })?;
    let manifest_json = metadata_string(&header, KEY_MANIFEST)?;
    let tokenizer_json = metadata_string(&header, KEY_TOKENIZER)?;
    let stored = metadata_string(&header, KEY_CHECKSUM)?;
    let coverage = ChecksumCoverage::of_version(version);
    let computed = checksum(&header, bytes, coverage)?;
    if stored != computed {
        return Err(Error::Checksum { stored: stored.to_string(), computed });
    }
    if let Some(pin) = pin {
        pin.check(&computed)?;
    }
    let manifest: Manifest =
        serde_json::from_str(manifest_json).map_err(|e| Error::manifest(KEY_MANIFEST, e.to_string()))?;
    if manifest.format_version != version {
        return Err(Error::manifest(
            "format_version",
            format!("the manifest says {} but the file says {version}", manifest.format_version),
        ));
    }
    manifest.validate()?;
    let name = header.get(KEY_NAME).and_then(|m| m.as_str()).unwrap_or_default().to_string();
    let mut weights = Weights::new("bundle");
    for t in &header.tensors {
        // Copied into 8-byte-aligned storage: candle reinterprets the bytes as f32/f16/blocks.
        let raw = header.tensor_bytes(bytes, t);
        if let Some(index) = gguf::first_non_finite(t.dtype, raw) {
            return Err(Error::NonFiniteWeights { name: t.name.clone(), index });
        }
        let mut aligned = vec![0u64; raw.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut aligned)[..raw.len()].copy_from_slice(raw);
        let data = &bytemuck::cast_slice::<u64, u8>(&aligned)[..raw.len()];
        let tensor = qtensor_from_bytes(t.dtype, data, t.dims.clone())?;
        weights.insert(t.name.clone(), Weight::Quantized(Arc::new(tensor)));
    }
    Ok(Bundle { manifest, tokenizer_json: tokenizer_json.to_string(), weights, checksum: computed, name, coverage })
}

/// A CPU `QTensor` from a tensor's bytes, for the four dtypes a bundle holds (`gguf::dtype`
/// admits no other). As candle's `ggml_file::qtensor_from_ggml`, whose match over every GGML
/// dtype puts all of k_quants' block types (their quantizers and dot products, ~70 KB) into the
/// wasm build.
fn qtensor_from_bytes(dtype: GgmlDType, data: &[u8], dims: Vec<usize>) -> Result<QTensor> {
    fn blocks<T: GgmlType + Send + Sync + 'static>(data: &[u8], dims: Vec<usize>) -> Result<QTensor> {
        let elems = dims.iter().product::<usize>();
        if elems % T::BLCK_SIZE != 0 {
            return Err(candle_core::Error::Msg(format!(
                "the number of elements {elems} is not divisible by the block size {}",
                T::BLCK_SIZE
            ))
            .into());
        }
        let n = elems / T::BLCK_SIZE;
        let size = n * std::mem::size_of::<T>();
        if data.len() < size || data.as_ptr().align_offset(std::mem::align_of::<T>()) != 0 {
            return Err(candle_core::Error::Msg(format!("{} bytes, {size} needed (aligned)", data.len())).into());
        }
        // SAFETY: `data` holds `n` values of `T` (length and alignment checked above); `T` is a
        // plain `repr(C)` value (f32, f16, or a block of f16 and bytes) valid for any bytes.
        let values = unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<T>(), n) };
        Ok(QTensor::new(QStorage::Cpu(Box::new(values.to_vec())), dims)?)
    }
    match dtype {
        GgmlDType::F32 => blocks::<f32>(data, dims),
        GgmlDType::F16 => blocks::<half::f16>(data, dims),
        GgmlDType::Q4_0 => blocks::<BlockQ4_0>(data, dims),
        GgmlDType::Q8_0 => blocks::<BlockQ8_0>(data, dims),
        other => Err(Error::BadBundle(format!("tensor dtype {other:?} is not one a bundle holds"))),
    }
}

/// Recomputes a bundle's checksum and stores it in place (same length, so nothing moves).
/// For tools and the fuzzer, which must get mutated bundles past the checksum to reach what
/// lies behind it. No loophole: a checksum shows a file is intact, not who wrote it (pin it
/// for that, [`Pin`]).
pub fn reseal(bytes: &mut [u8]) -> Result<()> {
    let (at, sum) = {
        let header = gguf::read_header(bytes, |_| Ok(()))?;
        let version = header.get(KEY_FORMAT_VERSION).and_then(|m| m.as_u32()).unwrap_or(FORMAT_VERSION);
        let stored = metadata_string(&header, KEY_CHECKSUM)?;
        let sum = checksum(&header, bytes, ChecksumCoverage::of_version(version))?;
        if stored.len() != sum.len() {
            return Err(Error::manifest(KEY_CHECKSUM, "is not a sha256: checksum"));
        }
        let start = stored.as_ptr() as usize - bytes.as_ptr() as usize;
        (start, sum)
    };
    bytes[at..at + sum.len()].copy_from_slice(sum.as_bytes());
    Ok(())
}

/// An expected bundle checksum: `sha256:<64 hex digits>` as `bedside export` and `inspect`
/// print it, or the same digest as Subresource Integrity writes it, `sha256-<base64>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    digest: [u8; 32],
}

impl Pin {
    pub fn parse(text: &str) -> Result<Pin> {
        let bad = || {
            Error::Pin(format!(
                "expected `sha256:` and 64 hex digits, or `sha256-` and 44 base64 characters; got {} characters",
                text.chars().count()
            ))
        };
        let text = text.trim();
        let bytes: Vec<u8> = if let Some(hex) = text.strip_prefix(CHECKSUM_PREFIX) {
            if hex.len() != 64 {
                return Err(bad());
            }
            (0..32)
                .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
                .collect::<Result<_>>()?
        } else if let Some(b64) = text.strip_prefix("sha256-") {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| bad())?
        } else {
            return Err(bad());
        };
        Ok(Pin { digest: bytes.try_into().map_err(|_| bad())? })
    }

    /// The pin as `sha256:<hex>`, the form checksums are printed in.
    pub fn to_checksum(&self) -> String {
        hex_checksum(&self.digest)
    }

    /// The same digest as Subresource Integrity writes it.
    pub fn to_integrity(&self) -> String {
        use base64::Engine;
        format!("sha256-{}", base64::engine::general_purpose::STANDARD.encode(self.digest))
    }

    fn check(&self, computed: &str) -> Result<()> {
        let expected = self.to_checksum();
        if computed == expected {
            Ok(())
        } else {
            Err(Error::PinMismatch { expected, found: computed.to_string() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{random_weights, BertConfig, HeadFeatures};

    fn tiny() -> (Manifest, Weights, String) {
        let config = BertConfig {
            vocab_size: 8,
            hidden_size: 8,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 16,
            max_position_embeddings: 16,
            ..BertConfig::default()
        };
        let weights = random_weights(&config, Some(2), None, 3).unwrap();
        let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b", "c", "d"];
        let tokenizer = crate::checkpoint::build_wordpiece_json(
            &vocab.join("\n"),
            true,
            &crate::bundle::SpecialTokens::default(),
            "[UNK]",
        )
        .unwrap();
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            task: crate::bundle::Task::Classification,
            labels: vec!["x".into(), "y".into()],
            head_outputs: 2,
            head_features: HeadFeatures::Mean,
            pooling: crate::pipeline::pool::Pooling::Cls,
            normalize: false,
            max_seq_len: 16,
            stride: 2,
            aggregation: crate::pipeline::aggregate::Aggregation::Mean,
            entity_aggregation: Default::default(),
            decision_threshold: 0.5,
            min_confidence: 0.0,
            scrub: None,
            base_model: "tiny".into(),
            quantization: Quantization::F32,
            special_tokens: Default::default(),
            config,
            created_by: "test".into(),
        };
        (manifest, weights, tokenizer)
    }

    fn tensors(weights: &Weights) -> Vec<(String, Arc<QTensor>)> {
        let mut names: Vec<String> = weights.names().cloned().collect();
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let t = compact(&weights.get_any(&n).unwrap().to_f32().unwrap()).unwrap();
                (n, Arc::new(QTensor::quantize(&t, GgmlDType::F32).unwrap()))
            })
            .collect()
    }

    #[test]
    fn head_features_round_trip_in_the_current_layout() {
        let (manifest, weights, tokenizer) = tiny();
        let names: Vec<String> = weights.names().cloned().collect();
        let bundle = read(&write(&manifest, &tokenizer, &weights, &names).unwrap()).unwrap();
        assert_eq!(bundle.manifest.format_version, FORMAT_VERSION);
        assert_eq!(bundle.manifest.head_features, HeadFeatures::Mean);
    }

    /// A version-1 bundle has no `head_features`: it meant the pooler, and reads so.
    #[test]
    fn version_1_bundles_read_as_pooler_heads() {
        let (manifest, weights, tokenizer) = tiny();
        let mut json = serde_json::to_value(&manifest).unwrap();
        json["format_version"] = 1.into();
        json.as_object_mut().unwrap().remove("head_features");
        let bytes = assemble(1, "tiny", &json.to_string(), &tokenizer, &tensors(&weights)).unwrap();
        let bundle = read(&bytes).unwrap();
        assert_eq!(bundle.manifest.format_version, 1);
        assert_eq!(bundle.manifest.head_features, HeadFeatures::Pooler);
        // A layout from the future is refused, naming both versions.
        json["format_version"] = (FORMAT_VERSION + 1).into();
        let future = assemble(FORMAT_VERSION + 1, "tiny", &json.to_string(), &tokenizer, &tensors(&weights)).unwrap();
        match read(&future) {
            Err(Error::BundleVersion { found, supported }) => {
                assert_eq!((found, supported), (FORMAT_VERSION + 1, FORMAT_VERSION))
            }
            Err(other) => panic!("expected a version error, got {other}"),
            Ok(_) => panic!("a version-{} bundle was read", FORMAT_VERSION + 1),
        }
    }
}
