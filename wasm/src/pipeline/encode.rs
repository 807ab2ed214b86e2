//! Encode: a batch of windows → the encoder's last hidden states.
//!
//! Pads every window to the longest in the batch with [PAD] and a zero attention mask, so
//! padded positions neither attend nor get attended to.

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::model::Bert;

/// Hidden states of a padded batch and the mask that says which positions are real.
pub struct Encoded {
    /// [batch, seq, hidden]
    pub hidden: Tensor,
    /// [batch, seq], 1.0 for real tokens.
    pub mask: Tensor,
}

/// A batch padded to its longest window: ids and mask, both [batch · seq_len] row-major.
pub struct Padded {
    pub ids: Vec<u32>,
    pub mask: Vec<f32>,
    pub seq_len: usize,
}

pub fn pad(batch: &[&[u32]], pad_id: u32) -> Padded {
    let seq_len = batch.iter().map(|ids| ids.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(batch.len() * seq_len);
    let mut mask = Vec::with_capacity(batch.len() * seq_len);
    for window in batch {
        ids.extend_from_slice(window);
        ids.extend(std::iter::repeat_n(pad_id, seq_len - window.len()));
        mask.extend(std::iter::repeat_n(1f32, window.len()));
        mask.extend(std::iter::repeat_n(0f32, seq_len - window.len()));
    }
    Padded { ids, mask, seq_len }
}

pub fn encode(model: &Bert, batch: &[&[u32]], pad_id: u32) -> Result<Encoded> {
    let Padded { ids, mask, seq_len } = pad(batch, pad_id);
    let device = Device::Cpu;
    let ids = Tensor::from_vec(ids, (batch.len(), seq_len), &device)?;
    let mask = Tensor::from_vec(mask, (batch.len(), seq_len), &device)?;
    let hidden = model.forward(&ids, &mask)?;
    Ok(Encoded { hidden, mask })
}
