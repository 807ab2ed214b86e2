//! A 2-D map of a collection: principal component analysis by orthogonal (subspace)
//! iteration.
//!
//! The covariance matrix is never formed: each step multiplies it into two vectors with
//! two passes over the rows, `C·v = 1/n Σ (xᵢ − μ)((xᵢ − μ)·v)`, so memory stays at the
//! data plus O(dim) and a step costs O(n·dim). After the iteration a 2×2 Rayleigh–Ritz step
//! rotates the pair onto the principal axes, which settles the case of two nearly equal
//! variances where plain power iteration converges slowly. Sums are f64; the start vectors
//! come from a fixed seed and each axis is signed so that its largest component is
//! positive: the same points give the same map on every machine.

use crate::error::{Error, Result};
use crate::model::rng::SplitMix64;

/// A bound on the work (each step is two passes over the data); the plateau test below
/// usually stops far earlier.
pub const MAX_ITERATIONS: usize = 200;
/// Stop when both axes move by less than this (1 − |cos| between steps) …
const TOLERANCE: f64 = 1e-12;
/// … or when the variance the pair captures grows by less than this share of the total:
/// when the second and third variances are (nearly) equal the axes wander inside an
/// equally good plane without converging, and the map no longer changes.
const PLATEAU: f64 = 1e-10;
/// A variance below this share of the total is zero (points on a line have no second axis).
const ZERO_VARIANCE: f64 = 1e-12;
const SEED: u64 = 0x005E_ED0F_B05E;

/// Points of a 2-D map and how much of the spread each axis shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Projection {
    /// One `[x, y]` per input row, in input order.
    pub coords: Vec<[f32; 2]>,
    /// Variance along each axis, largest first.
    pub variance: [f64; 2],
    /// Total variance (the sum over all dimensions): `variance / total_variance` is the share shown.
    pub total_variance: f64,
    /// Axes (unit vectors of length `dim`), for placing new points: `(x − mean) · axis`.
    #[serde(skip)]
    pub axes: [Vec<f64>; 2],
    #[serde(skip)]
    pub mean: Vec<f64>,
}

/// Projects `rows` (row-major, `rows.len() / dim` points) onto their first two principal axes.
pub fn pca_2d(rows: &[f32], dim: usize) -> Result<Projection> {
    if dim == 0 || !rows.len().is_multiple_of(dim) {
        return Err(Error::InvalidArgument {
            field: "rows".into(),
            message: format!("{} values do not make rows of {dim}", rows.len()),
        });
    }
    let n = rows.len() / dim;
    if n == 0 {
        return Err(Error::EmptyCorpus);
    }
    if let Some(i) = rows.iter().position(|x| !x.is_finite()) {
        return Err(Error::InvalidVector { what: format!("row {}", i / dim), message: "not a finite number".into() });
    }
    let mut mean = vec![0f64; dim];
    for row in rows.chunks_exact(dim) {
        mean.iter_mut().zip(row).for_each(|(m, &x)| *m += f64::from(x));
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let centered = |row: &[f32], j: usize| f64::from(row[j]) - mean[j];
    let total_variance: f64 =
        rows.chunks_exact(dim).map(|row| (0..dim).map(|j| centered(row, j).powi(2)).sum::<f64>()).sum::<f64>()
            / n as f64;

    let mut rng = SplitMix64::new(SEED);
    let mut axes: [Vec<f64>; 2] =
        [(0..dim).map(|_| rng.next_normal()).collect(), (0..dim).map(|_| rng.next_normal()).collect()];
    orthonormalize(&mut axes, &mut rng);
    if total_variance > 0.0 {
        let mut captured_before = f64::NEG_INFINITY;
        for _ in 0..MAX_ITERATIONS {
            let mut next = covariance_times(rows, &mean, &axes);
            let captured = dot(&axes[0], &next[0]) + dot(&axes[1], &next[1]);
            orthonormalize(&mut next, &mut rng);
            let moved = (0..2).map(|a| 1.0 - dot(&next[a], &axes[a]).abs()).fold(0.0, f64::max);
            axes = next;
            if moved < TOLERANCE || (captured - captured_before).abs() <= PLATEAU * total_variance {
                break;
            }
            captured_before = captured;
        }
        rayleigh_ritz(rows, &mean, &mut axes);
    }
    let mut variance = [0f64; 2];
    let image = covariance_times(rows, &mean, &axes);
    for a in 0..2 {
        variance[a] = dot(&axes[a], &image[a]).max(0.0);
        if variance[a] <= ZERO_VARIANCE * total_variance {
            variance[a] = 0.0;
        }
        // Deterministic sign: the largest component (first among equals) is positive.
        let lead = axes[a].iter().enumerate().fold(0, |b, (j, v)| if v.abs() > axes[a][b].abs() { j } else { b });
        if axes[a][lead] < 0.0 {
            axes[a].iter_mut().for_each(|v| *v = -*v);
        }
    }
    let coords = rows
        .chunks_exact(dim)
        .map(|row| {
            let mut point = [0f32; 2];
            for a in 0..2 {
                // An axis with no variance maps every point to 0 rather than to rounding noise.
                if variance[a] > 0.0 {
                    point[a] = (0..dim).map(|j| centered(row, j) * axes[a][j]).sum::<f64>() as f32;
                }
            }
            point
        })
        .collect();
    Ok(Projection { coords, variance, total_variance, axes, mean })
}

/// `C·axes[a]` for both axes in one pass over the rows.
fn covariance_times(rows: &[f32], mean: &[f64], axes: &[Vec<f64>; 2]) -> [Vec<f64>; 2] {
    let dim = mean.len();
    let mut out = [vec![0f64; dim], vec![0f64; dim]];
    let mut x = vec![0f64; dim];
    for row in rows.chunks_exact(dim) {
        x.iter_mut().zip(row).zip(mean).for_each(|((x, &r), m)| *x = f64::from(r) - m);
        for a in 0..2 {
            let t = dot(&x, &axes[a]);
            out[a].iter_mut().zip(&x).for_each(|(o, &xj)| *o += t * xj);
        }
    }
    let n = (rows.len() / dim) as f64;
    out.iter_mut().for_each(|v| v.iter_mut().for_each(|o| *o /= n));
    out
}

/// Gram–Schmidt; a vector that collapses (rank-deficient data) is replaced by a fresh
/// random one, so the pair stays orthonormal.
fn orthonormalize(axes: &mut [Vec<f64>; 2], rng: &mut SplitMix64) {
    for a in 0..2 {
        for _attempt in 0..8 {
            for b in 0..a {
                let (done, todo) = axes.split_at_mut(a);
                let p = dot(&todo[0], &done[b]);
                todo[0].iter_mut().zip(&done[b]).for_each(|(v, u)| *v -= p * u);
            }
            let norm = dot(&axes[a], &axes[a]).sqrt();
            if norm > 1e-150 {
                axes[a].iter_mut().for_each(|v| *v /= norm);
                break;
            }
            axes[a].iter_mut().for_each(|v| *v = rng.next_normal());
        }
    }
}

/// Rotates the orthonormal pair onto the eigenvectors of the covariance restricted to its
/// plane (a 2×2 symmetric eigenproblem, solved in closed form), larger variance first.
fn rayleigh_ritz(rows: &[f32], mean: &[f64], axes: &mut [Vec<f64>; 2]) {
    let image = covariance_times(rows, mean, axes);
    let (h00, h01, h11) = (dot(&axes[0], &image[0]), dot(&axes[0], &image[1]), dot(&axes[1], &image[1]));
    // Angle of the larger eigenvector of [[h00, h01], [h01, h11]].
    let theta = 0.5 * (2.0 * h01).atan2(h00 - h11);
    let (s, c) = theta.sin_cos();
    let first: Vec<f64> = axes[0].iter().zip(&axes[1]).map(|(u, v)| c * u + s * v).collect();
    let second: Vec<f64> = axes[0].iter().zip(&axes[1]).map(|(u, v)| -s * u + c * v).collect();
    *axes = [first, second];
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_point_maps_to_the_origin() {
        let p = pca_2d(&[1.0, 2.0, 3.0], 3).unwrap();
        assert_eq!(p.coords, vec![[0.0, 0.0]]);
        assert_eq!(p.variance, [0.0, 0.0]);
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert_eq!(pca_2d(&[], 3).unwrap_err().code(), "empty_corpus");
        assert_eq!(pca_2d(&[1.0, 2.0], 3).unwrap_err().code(), "invalid_argument");
        assert_eq!(pca_2d(&[f32::NAN, 2.0], 2).unwrap_err().code(), "invalid_vector");
    }
}
