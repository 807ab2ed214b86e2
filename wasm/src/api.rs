//! The browser API (wasm-bindgen). JS fetches and caches bundle bytes; this only computes.
//! Errors reach JS as `Error` objects with `name = "BedsideError"` and a stable `code`.

use std::rc::Rc;

use wasm_bindgen::prelude::*;

use crate::bundle::Pin;
use crate::error::Error;
use crate::gpu::Backend;
use crate::model::QuantizedMatmul;
use crate::pipeline::entities::{Entity, EntityAggregation};
use crate::pipeline::redact::Redacted;
use crate::pipeline::scrub::{PhiKind, ScrubOptions, Scrubber};
use crate::runtime::Model;

fn js_error(err: Error) -> JsValue {
    let e = js_sys::Error::new(&err.to_string());
    e.set_name("BedsideError");
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&e, &JsValue::from_str("code"), &JsValue::from_str(err.code()));
    e.into()
}

fn to_js<T: serde::Serialize>(value: &T) -> Result<JsValue, JsValue> {
    // Plain objects (not Maps) so results JSON.stringify the same as the CLI's output.
    let serializer = serde_wasm_bindgen::Serializer::json_compatible();
    value.serialize(&serializer).map_err(|e| JsValue::from(js_sys::Error::new(&e.to_string())))
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// How many threads a forward pass runs on: the pool's size in the threaded build, else 1.
#[wasm_bindgen(js_name = threadCount)]
pub fn thread_count() -> usize {
    rayon::current_num_threads()
}

/// A loaded model.
#[wasm_bindgen]
pub struct Bedside {
    // Shared with the futures of the async calls, which outlive the borrow of `self`.
    model: Rc<Model>,
}

#[wasm_bindgen]
impl Bedside {
    /// Loads bundle bytes onto the CPU (wasm) path, synchronously (verifies the checksum first;
    /// `integrity` as in `create`).
    #[wasm_bindgen(js_name = load)]
    pub fn load(bytes: &[u8], integrity: Option<String>) -> Result<Bedside, JsValue> {
        let pin = integrity.as_deref().map(Pin::parse).transpose().map_err(js_error)?;
        let model =
            crate::runtime::block_on(Model::load_pinned(bytes, Backend::Cpu, QuantizedMatmul::default(), pin.as_ref()))
                .map_err(js_error)?;
        Ok(Bedside { model: Rc::new(model) })
    }

    /// Loads bundle bytes onto `backend`: "auto" (default: WebGPU when the browser has a
    /// hardware adapter whose limits fit the model, else wasm), "webgpu" or "cpu". Use the
    /// *Async calls on a model that may be on WebGPU. `quantized_matmul` picks how the wasm
    /// path runs q8_0/q4_0 weights: "integer" (8-bit activations; the simd128 build's default),
    /// "relaxed" (the relaxed-SIMD build's default: q8_0 activations in 7 bits) or "dequantized"
    /// (f32, the reference numerics that the WebGPU path also computes).
    /// `integrity` pins the bundle: "sha256-<base64>" (as Subresource Integrity writes it) or
    /// "sha256:<hex>" (as `bedside export` prints it); any other bundle is refused with code
    /// `integrity_mismatch` before its tensors are built.
    pub async fn create(
        bytes: Vec<u8>,
        backend: Option<String>,
        quantized_matmul: Option<String>,
        integrity: Option<String>,
    ) -> Result<Bedside, JsValue> {
        let backend: Backend = backend.as_deref().unwrap_or("auto").parse().map_err(js_error)?;
        let matmul = match quantized_matmul.as_deref() {
            Some(kind) => kind.parse().map_err(js_error)?,
            None => QuantizedMatmul::default(),
        };
        let pin = integrity.as_deref().map(Pin::parse).transpose().map_err(js_error)?;
        let model = Model::load_pinned(&bytes, backend, matmul, pin.as_ref()).await.map_err(js_error)?;
        Ok(Bedside { model: Rc::new(model) })
    }

    /// `{checksum, name, coverage, format_version}` of the loaded bundle: the checksum the
    /// runtime recomputed, and whether it covers `name` ("all_metadata_and_tensors") or only
    /// manifest, tokenizer and tensors ("manifest_tokenizer_tensors", bundles before format 3).
    pub fn provenance(&self) -> Result<JsValue, JsValue> {
        to_js(&self.model.provenance())
    }

    /// "webgpu" or "cpu": where the encoder runs now (a lost GPU switches it to "cpu").
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.model.backend().to_string()
    }

    /// Why the model is not on WebGPU although it was asked to be, as one plain sentence, or
    /// null.
    #[wasm_bindgen(getter, js_name = backendNote)]
    pub fn backend_note(&self) -> Option<String> {
        self.model.backend_note()
    }

    /// The technical reason behind `backendNote` (adapter, limits, driver message), or null.
    #[wasm_bindgen(getter, js_name = backendDetail)]
    pub fn backend_detail(&self) -> Option<String> {
        self.model.backend_detail()
    }

    /// The WebGPU adapter in use (`{name, backend, device_type, software, max_binding_bytes}`), or null.
    pub fn adapter(&self) -> Result<JsValue, JsValue> {
        to_js(&self.model.adapter())
    }

    /// As `embed`, on any backend: a Promise of one `Float32Array` per text.
    #[wasm_bindgen(js_name = embedAsync)]
    pub fn embed_async(&self, texts: Vec<String>) -> js_sys::Promise {
        let model = self.model.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let vectors = model.embed_async(&refs).await.map_err(js_error)?;
            let array = js_sys::Array::new();
            for v in &vectors {
                array.push(&js_sys::Float32Array::from(v.as_slice()));
            }
            Ok(array.into())
        })
    }

    /// As `classify`, on any backend: a Promise of the prediction.
    #[wasm_bindgen(js_name = classifyAsync)]
    pub fn classify_async(&self, text: String) -> js_sys::Promise {
        let model = self.model.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let prediction = model.classify_async(&text).await.map_err(js_error)?;
            to_js(&prediction)
        })
    }

    /// As `tag`, on any backend: a Promise of the entities.
    #[wasm_bindgen(js_name = tagAsync)]
    pub fn tag_async(&self, text: String, aggregation: Option<String>) -> js_sys::Promise {
        let model = self.model.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let aggregation = parse_aggregation(aggregation.as_deref()).map_err(js_error)?;
            let entities = model.tag_async(&text, aggregation).await.map_err(js_error)?;
            to_js(&JsEntities::new(&text, &entities))
        })
    }

    /// As `deid`, on any backend: a Promise of the redacted note.
    #[wasm_bindgen(js_name = deidAsync)]
    pub fn deid_async(&self, text: String, rules: JsValue) -> js_sys::Promise {
        let model = self.model.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let scrubber = parse_rules(rules)?;
            let redacted = model.deid_async(&text, scrubber.as_ref(), None).await.map_err(js_error)?;
            to_js(&JsRedacted::new(&text, redacted))
        })
    }

    /// The bundle's task: "embedding", "classification", "binary", "multilabel" or
    /// "token-classification".
    #[wasm_bindgen(getter)]
    pub fn task(&self) -> String {
        self.model.manifest().task.as_str().to_string()
    }

    /// The bundle's manifest (task, labels, pooling, window, thresholds, config …).
    pub fn manifest(&self) -> Result<JsValue, JsValue> {
        to_js(self.model.manifest())
    }

    /// One `Float32Array` per text, in order.
    pub fn embed(&self, texts: Vec<String>) -> Result<Vec<js_sys::Float32Array>, JsValue> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vectors = self.model.embed(&refs).map_err(js_error)?;
        Ok(vectors.iter().map(|v| js_sys::Float32Array::from(v.as_slice())).collect())
    }

    /// `{label, score, probabilities, labels, uncertain, chunks}`; chunk `start`/`end` are
    /// UTF-8 byte offsets into the note.
    pub fn classify(&self, text: &str) -> Result<JsValue, JsValue> {
        let prediction = self.model.classify(text).map_err(js_error)?;
        to_js(&prediction)
    }

    /// The entities of a note (token-classification bundles): `[{label, start, end, score,
    /// start_char, end_char}]` in note order. `start`/`end` are UTF-8 byte offsets into the
    /// note, as everywhere in this API; `start_char`/`end_char` are the same span in UTF-16
    /// code units (JS string indices: `text.slice(e.start_char, e.end_char)`). `aggregation`
    /// is transformers' `aggregation_strategy` ("none", "simple", "first", "average", "max";
    /// default: the bundle's `entity_aggregation`). Other bundles: code `wrong_task`.
    pub fn tag(&self, text: &str, aggregation: Option<String>) -> Result<JsValue, JsValue> {
        let aggregation = parse_aggregation(aggregation.as_deref()).map_err(js_error)?;
        let entities = crate::runtime::block_on(self.model.tag_async(text, aggregation)).map_err(js_error)?;
        to_js(&JsEntities::new(text, &entities))
    }

    /// De-identifies a note (token-classification bundles): `{text, redactions, counts}`, every
    /// entity replaced by `[LABEL]`. `rules` adds the pattern scrubber's spans (labelled DATE,
    /// PHONE, FAX, EMAIL, URL, MRN, AGE_OVER_89, NAME): `true` for all its patterns, or
    /// `{kinds?: ["date", "phone", …], names?: ["Jane Doe", …]}`; `undefined`/`null`/`false`:
    /// the model alone. Redactions carry byte offsets into the note (`start`, `end`) and into
    /// the redacted text (`redacted_start`, `redacted_end`), and the same in UTF-16 code units
    /// (`start_char`, `end_char`, `redacted_start_char`, `redacted_end_char`). `counts`: spans
    /// replaced per label. The removed text is in no field.
    pub fn deid(&self, text: &str, rules: JsValue) -> Result<JsValue, JsValue> {
        let scrubber = parse_rules(rules)?;
        let redacted =
            crate::runtime::block_on(self.model.deid_async(text, scrubber.as_ref(), None)).map_err(js_error)?;
        to_js(&JsRedacted::new(text, redacted))
    }

    /// Token ids the encoder sees for `text` (with [CLS]/[SEP], truncated to one window).
    #[wasm_bindgen(js_name = tokenIds)]
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, JsValue> {
        self.model.token_ids(text).map_err(js_error)
    }
}

/// A semantic-search index: documents' embeddings in memory (f32, or int8 at about a
/// quarter of the memory), searched by cosine. Texts are embedded with a `Bedside` model
/// passed to each call; queries and documents are truncated to one window.
#[wasm_bindgen]
pub struct BedsideIndex {
    index: crate::search::Index,
}

#[derive(serde::Serialize)]
struct MapPoint<'a> {
    id: &'a str,
    x: f32,
    y: f32,
}

#[wasm_bindgen]
impl BedsideIndex {
    /// An empty index for `dim`-dimensional vectors (`int8`: quantised storage).
    #[wasm_bindgen(constructor)]
    pub fn new(dim: usize, int8: Option<bool>) -> Result<BedsideIndex, JsValue> {
        let index = crate::search::Index::new(dim, storage(int8)).map_err(js_error)?;
        Ok(BedsideIndex { index })
    }

    /// An empty index for `model`'s embeddings.
    #[wasm_bindgen(js_name = forModel)]
    pub fn for_model(model: &Bedside, int8: Option<bool>) -> Result<BedsideIndex, JsValue> {
        let index = crate::search::index_for(&model.model, storage(int8)).map_err(js_error)?;
        Ok(BedsideIndex { index })
    }

    /// Reads bytes from `save()`; damaged bytes raise `bad_index`.
    pub fn load(bytes: &[u8]) -> Result<BedsideIndex, JsValue> {
        Ok(BedsideIndex { index: crate::search::Index::from_bytes(bytes).map_err(js_error)? })
    }

    /// The index as bytes (versioned, with a SHA-256), e.g. to keep in IndexedDB.
    pub fn save(&self) -> Vec<u8> {
        self.index.to_bytes()
    }

    #[wasm_bindgen(getter)]
    pub fn length(&self) -> usize {
        self.index.len()
    }

    #[wasm_bindgen(getter)]
    pub fn dim(&self) -> usize {
        self.index.dim()
    }

    #[wasm_bindgen(getter)]
    pub fn int8(&self) -> bool {
        self.index.storage() == crate::search::Storage::Int8
    }

    /// Bytes held for vectors and ids.
    #[wasm_bindgen(getter, js_name = memoryBytes)]
    pub fn memory_bytes(&self) -> usize {
        self.index.memory_bytes()
    }

    /// Document ids in index order (the order of `project()`).
    pub fn ids(&self) -> Vec<String> {
        self.index.ids().to_vec()
    }

    /// Adds one document by its vector (normalised on the way in).
    pub fn add(&mut self, id: &str, vector: &[f32]) -> Result<(), JsValue> {
        self.index.add(id, vector).map_err(js_error)
    }

    /// Embeds `texts` with `model` and adds them under `ids`, all or none.
    /// `progress_callback` gets `{status: "progress", loaded, total, progress}` after each batch.
    #[wasm_bindgen(js_name = addTexts)]
    pub fn add_texts(
        &mut self,
        model: &Bedside,
        ids: Vec<String>,
        texts: Vec<String>,
        progress_callback: Option<js_sys::Function>,
    ) -> Result<(), JsValue> {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let mut callback_error = None;
        let result = crate::search::add_texts(&mut self.index, &model.model, &ids, &texts, |loaded, total| {
            let Some(callback) = &progress_callback else { return Ok(()) };
            let event = serde_json::json!({
                "status": "progress",
                "loaded": loaded,
                "total": total,
                "progress": 100.0 * loaded as f64 / total.max(1) as f64,
            });
            let call = to_js(&event).and_then(|event| callback.call1(&JsValue::NULL, &event));
            // A throwing callback stops the add (nothing is added); its error goes back to JS as is.
            call.map(|_| ()).map_err(|e| {
                callback_error = Some(e);
                Error::InvalidArgument { field: "progress_callback".into(), message: "threw".into() }
            })
        });
        match (result, callback_error) {
            (_, Some(thrown)) => Err(thrown),
            (result, None) => result.map_err(js_error),
        }
    }

    /// Removes a document; `false` if the id was not there.
    pub fn remove(&mut self, id: &str) -> bool {
        self.index.remove(id)
    }

    /// The `k` documents closest to `query`: `[{id, score}]`, best first (ties by id).
    pub fn search(&self, model: &Bedside, query: &str, k: usize) -> Result<JsValue, JsValue> {
        let hits = crate::search::search_text(&self.index, &model.model, query, k).map_err(js_error)?;
        to_js(&hits)
    }

    /// As `search`, for a query vector.
    #[wasm_bindgen(js_name = searchVector)]
    pub fn search_vector(&self, vector: &[f32], k: usize) -> Result<JsValue, JsValue> {
        to_js(&self.index.top_k(vector, k).map_err(js_error)?)
    }

    /// A 2-D map (PCA): `[{id, x, y}]` in index order.
    pub fn project(&self) -> Result<JsValue, JsValue> {
        let projection = self.index.project().map_err(js_error)?;
        let points: Vec<MapPoint> =
            self.index.ids().iter().zip(&projection.coords).map(|(id, [x, y])| MapPoint { id, x: *x, y: *y }).collect();
        to_js(&points)
    }
}

fn storage(int8: Option<bool>) -> crate::search::Storage {
    if int8.unwrap_or(false) {
        crate::search::Storage::Int8
    } else {
        crate::search::Storage::F32
    }
}

fn parse_aggregation(aggregation: Option<&str>) -> Result<Option<EntityAggregation>, Error> {
    match aggregation {
        None | Some("") => Ok(None),
        Some(name) => {
            name.parse().map(Some).map_err(|message| Error::InvalidArgument { field: "aggregation".into(), message })
        }
    }
}

/// `deid`'s `rules` from JS: nothing, a boolean, or `{kinds, names}`.
#[derive(serde::Deserialize)]
struct RulesOptions {
    kinds: Option<Vec<String>>,
    names: Option<Vec<String>>,
}

fn parse_rules(rules: JsValue) -> Result<Option<Scrubber>, JsValue> {
    let invalid = |message: String| js_error(Error::InvalidArgument { field: "rules".into(), message });
    if rules.is_undefined() || rules.is_null() {
        return Ok(None);
    }
    if let Some(on) = rules.as_bool() {
        return Ok(on.then(Scrubber::default));
    }
    // serde_wasm_bindgen reads only the fields it knows: a misspelt option would pass silently.
    if !rules.is_object() || js_sys::Array::is_array(&rules) {
        return Err(invalid("use true or {kinds?: string[], names?: string[]}".into()));
    }
    for key in js_sys::Object::keys(rules.unchecked_ref::<js_sys::Object>()).iter() {
        if !matches!(key.as_string().as_deref(), Some("kinds" | "names")) {
            return Err(invalid("an unknown option: use true or {kinds?: string[], names?: string[]}".into()));
        }
    }
    let options: RulesOptions = serde_wasm_bindgen::from_value(rules)
        .map_err(|_| invalid("use true or {kinds?: string[], names?: string[]}".into()))?;
    let kinds = match options.kinds {
        None => ScrubOptions::all(),
        Some(names) => {
            let mut kinds = Vec::with_capacity(names.len());
            for name in &names {
                // Not echoed: whatever was typed there may be a name.
                let kind =
                    PhiKind::ALL.into_iter().find(|k| k.as_str() == name.to_ascii_lowercase()).ok_or_else(|| {
                        let all: Vec<&str> = PhiKind::ALL.iter().map(|k| k.as_str()).collect();
                        invalid(format!("an unknown kind: use {}", all.join(", ")))
                    })?;
                kinds.push(kind);
            }
            ScrubOptions::only(kinds)
        }
    };
    let scrubber = Scrubber::new(kinds).with_names(options.names.unwrap_or_default()).map_err(js_error)?;
    Ok(Some(scrubber))
}

/// UTF-16 offsets (JS string indices) of UTF-8 byte offsets into `text`, in one pass over it.
/// An offset inside a character counts the whole character before it.
fn utf16_offsets(text: &str, bytes: &[usize]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..bytes.len()).collect();
    order.sort_by_key(|&i| bytes[i]);
    let mut out = vec![0; bytes.len()];
    let mut chars = text.char_indices().peekable();
    let mut units = 0;
    for i in order {
        while let Some(&(at, c)) = chars.peek() {
            if at >= bytes[i] {
                break;
            }
            units += c.len_utf16();
            chars.next();
        }
        out[i] = units;
    }
    out
}

#[derive(serde::Serialize)]
struct JsEntity<'a> {
    label: &'a str,
    start: usize,
    end: usize,
    score: f32,
    start_char: usize,
    end_char: usize,
}

struct JsEntities;

impl JsEntities {
    fn new<'a>(text: &str, entities: &'a [Entity]) -> Vec<JsEntity<'a>> {
        let bytes: Vec<usize> = entities.iter().flat_map(|e| [e.start, e.end]).collect();
        let chars = utf16_offsets(text, &bytes);
        entities
            .iter()
            .zip(chars.chunks(2))
            .map(|(e, c)| JsEntity {
                label: &e.label,
                start: e.start,
                end: e.end,
                score: e.score,
                start_char: c[0],
                end_char: c[1],
            })
            .collect()
    }
}

#[derive(serde::Serialize)]
struct JsRedaction {
    label: String,
    start: usize,
    end: usize,
    redacted_start: usize,
    redacted_end: usize,
    start_char: usize,
    end_char: usize,
    redacted_start_char: usize,
    redacted_end_char: usize,
}

#[derive(serde::Serialize)]
struct JsRedacted {
    text: String,
    redactions: Vec<JsRedaction>,
    counts: std::collections::BTreeMap<String, usize>,
}

impl JsRedacted {
    fn new(note: &str, redacted: Redacted) -> Self {
        let original: Vec<usize> = redacted.redactions.iter().flat_map(|r| [r.start, r.end]).collect();
        let copy: Vec<usize> = redacted.redactions.iter().flat_map(|r| [r.redacted_start, r.redacted_end]).collect();
        let original = utf16_offsets(note, &original);
        let copy = utf16_offsets(&redacted.text, &copy);
        let redactions = redacted
            .redactions
            .into_iter()
            .enumerate()
            .map(|(i, r)| JsRedaction {
                label: r.label,
                start: r.start,
                end: r.end,
                redacted_start: r.redacted_start,
                redacted_end: r.redacted_end,
                start_char: original[2 * i],
                end_char: original[2 * i + 1],
                redacted_start_char: copy[2 * i],
                redacted_end_char: copy[2 * i + 1],
            })
            .collect();
        JsRedacted { text: redacted.text, redactions, counts: redacted.counts }
    }
}
