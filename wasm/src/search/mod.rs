//! Semantic search: the step after pooling when the task is finding notes, not labelling them.
//!
//! ```text
//! texts → Model::embed (one window each, pooled, normalised) → index.rs (f32 | int8) → top_k
//!                                                                          ↘ project.rs (2-D map)
//! ```
//!
//! [`Index`] holds vectors and ids and knows nothing of models; [`add_texts`] and
//! [`search_text`] join it to a [`Model`]. Texts longer than the model's window are truncated
//! to one window when embedded, as sentence-transformers does (queries too).

pub mod index;
pub mod project;

pub use index::{recall_at_k, Hit, Index, Storage};
pub use project::{pca_2d, Projection};

use crate::error::{Error, Result};
use crate::runtime::Model;

/// Texts embedded per call to [`Model::embed`] while filling an index: bounds the tokens held
/// at once and sets how often progress is reported.
pub const CORPUS_BATCH: usize = 64;

/// An empty index for `model`'s embeddings.
pub fn index_for(model: &Model, storage: Storage) -> Result<Index> {
    Index::new(model.manifest().config.hidden_size, storage)
}

/// Embeds `texts` with `model` and adds them under `ids`, all or none. `progress(done, total)`
/// is called after each batch of [`CORPUS_BATCH`] texts. An empty text is
/// [`Error::EmptyText`] with its position in `texts`.
pub fn add_texts(
    index: &mut Index,
    model: &Model,
    ids: &[&str],
    texts: &[&str],
    mut progress: impl FnMut(usize, usize) -> Result<()>,
) -> Result<()> {
    if ids.len() != texts.len() {
        return Err(Error::InvalidArgument {
            field: "texts".into(),
            message: format!("{} ids but {} texts", ids.len(), texts.len()),
        });
    }
    // Cheap checks first: a duplicate id found after an hour of embedding would waste it.
    let model_dim = model.manifest().config.hidden_size;
    if model_dim != index.dim() {
        return Err(Error::DimensionMismatch {
            what: "the model's embeddings".into(),
            expected: index.dim(),
            got: model_dim,
        });
    }
    index.check_new_ids(ids.iter().copied())?;
    if let Some(index) = texts.iter().position(|t| t.trim().is_empty()) {
        return Err(Error::EmptyText { index });
    }
    let mut docs = Vec::with_capacity(texts.len());
    for (start, batch) in (0..).step_by(CORPUS_BATCH).zip(texts.chunks(CORPUS_BATCH)) {
        let vectors = model.embed(batch).map_err(|e| match e {
            Error::EmptyText { index } => Error::EmptyText { index: start + index },
            other => other,
        })?;
        docs.extend(ids[start..].iter().map(|id| id.to_string()).zip(vectors));
        progress(docs.len(), texts.len())?;
    }
    index.add_batch(&docs)
}

/// The `k` documents closest to `query` (embedded with `model`, truncated to one window).
pub fn search_text(index: &Index, model: &Model, query: &str, k: usize) -> Result<Vec<Hit>> {
    let mut vectors = model.embed(&[query])?;
    let vector = vectors.pop().ok_or(Error::EmptyText { index: 0 })?;
    index.top_k(&vector, k)
}
