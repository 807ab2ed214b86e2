//! Pool: token states → one vector per window ([CLS] or the mean over real tokens), then
//! optional L2 normalisation (what sentence-transformers' `Normalize` module does).

use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};

use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The first token's state.
    Cls,
    /// Mean over tokens whose attention mask is 1: padding never enters the average.
    Mean,
}

impl std::str::FromStr for Pooling {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cls" => Ok(Pooling::Cls),
            "mean" => Ok(Pooling::Mean),
            other => Err(format!("unknown pooling {other:?}: use cls or mean")),
        }
    }
}

/// hidden [batch, seq, h], mask [batch, seq] → [batch, h]
pub fn pool(hidden: &Tensor, mask: &Tensor, pooling: Pooling) -> Result<Tensor> {
    Ok(match pooling {
        Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
        Pooling::Mean => {
            let weights = mask.unsqueeze(2)?; // [batch, seq, 1]
            let summed = hidden.broadcast_mul(&weights)?.sum(1)?;
            let counts = mask.sum_keepdim(1)?.clamp(1e-9, f64::INFINITY)?;
            summed.broadcast_div(&counts)?
        }
    })
}

/// Divides each row by its L2 norm (rows of zeros stay zero).
pub fn normalize(xs: &Tensor) -> Result<Tensor> {
    let norms = xs.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::INFINITY)?;
    Ok(xs.broadcast_div(&norms)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn mean_pooling_ignores_padding() {
        let dev = Device::Cpu;
        // Row 0: two real tokens (1,2) and (3,4), then padding (100,100) that must not count.
        let hidden = Tensor::new(&[[[1f32, 2.], [3., 4.], [100., 100.]]], &dev).unwrap();
        let mask = Tensor::new(&[[1f32, 1., 0.]], &dev).unwrap();
        let pooled = pool(&hidden, &mask, Pooling::Mean).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(pooled, vec![vec![2.0, 3.0]]);
        let cls = pool(&hidden, &mask, Pooling::Cls).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(cls, vec![vec![1.0, 2.0]]);
    }

    #[test]
    fn normalize_gives_unit_rows() {
        let xs = Tensor::new(&[[3f32, 4.], [0., 0.]], &Device::Cpu).unwrap();
        let n = normalize(&xs).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(n, vec![vec![0.6, 0.8], vec![0.0, 0.0]]);
    }
}
