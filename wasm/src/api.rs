//! The browser API (wasm-bindgen). JS fetches and caches bundle bytes; this only computes.
//! Errors reach JS as `Error` objects with `name = "BedsideError"` and a stable `code`.

use wasm_bindgen::prelude::*;

use crate::error::Error;
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

/// A loaded model.
#[wasm_bindgen]
pub struct Bedside {
    model: Model,
}

#[wasm_bindgen]
impl Bedside {
    /// Loads bundle bytes (verifies the checksum first).
    #[wasm_bindgen(js_name = load)]
    pub fn load(bytes: &[u8]) -> Result<Bedside, JsValue> {
        Ok(Bedside { model: Model::load(bytes).map_err(js_error)? })
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

    /// Token ids the encoder sees for `text` (with [CLS]/[SEP], truncated to one window).
    #[wasm_bindgen(js_name = tokenIds)]
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, JsValue> {
        self.model.token_ids(text).map_err(js_error)
    }
}
