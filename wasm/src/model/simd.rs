//! Four-lane SIMD for the CPU kernels (`packed/pairs.rs`, `ops.rs`): wasm simd128 in the browser, SSE2
//! on x86-64. The same small set of operations on both, so each kernel is written once; every
//! operation rounds exactly as its scalar counterpart (no FMA), which keeps the SIMD kernels
//! bit-identical to their portable references. Other targets use the portable code.
#![allow(dead_code)] // each kernel uses its own subset

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod imp {
    use core::arch::wasm32::*;
    pub type I4 = v128;
    pub type F4 = v128;
    pub fn zero_i() -> I4 {
        i32x4_splat(0)
    }
    pub fn zero_f() -> F4 {
        f32x4_splat(0.0)
    }
    /// `acc + dot(x, w)`: lane i gets x[2i]·w[2i] + x[2i+1]·w[2i+1] (i16 → i32).
    pub fn dot_add(acc: I4, x: I4, w: I4) -> I4 {
        i32x4_add(acc, i32x4_dot_i16x8(x, w))
    }
    pub fn to_f32(v: I4) -> F4 {
        f32x4_convert_i32x4(v)
    }
    pub fn splat_f(x: f32) -> F4 {
        f32x4_splat(x)
    }
    pub fn add_f(a: F4, b: F4) -> F4 {
        f32x4_add(a, b)
    }
    pub fn mul_f(a: F4, b: F4) -> F4 {
        f32x4_mul(a, b)
    }
    pub fn abs_f(a: F4) -> F4 {
        f32x4_abs(a)
    }
    /// The larger lane of `a` and `b` (either one when they are equal; NaNs are not ordered).
    pub fn max_f(a: F4, b: F4) -> F4 {
        f32x4_pmax(a, b)
    }
    pub fn lanes_f(v: F4) -> [f32; 4] {
        [f32x4_extract_lane::<0>(v), f32x4_extract_lane::<1>(v), f32x4_extract_lane::<2>(v), f32x4_extract_lane::<3>(v)]
    }
    /// # Safety: `p` points at 8 readable i16.
    pub unsafe fn load_i16x8(p: *const i16) -> I4 {
        unsafe { v128_load(p as *const v128) }
    }
    /// Two i16 at `p`, repeated in every 32-bit lane. # Safety: `p` points at 2 readable i16.
    pub unsafe fn splat_pair(p: *const i16) -> I4 {
        unsafe { v128_load32_splat(p as *const u32) }
    }
    /// # Safety: `p` points at 4 readable f32.
    pub unsafe fn load_f(p: *const f32) -> F4 {
        unsafe { v128_load(p as *const v128) }
    }
    /// # Safety: `p` points at 4 writable f32.
    pub unsafe fn store_f(p: *mut f32, v: F4) {
        unsafe { v128_store(p as *mut v128, v) }
    }
}

/// x86-64: SSE2 is part of the baseline, so always present.
#[cfg(target_arch = "x86_64")]
mod imp {
    use core::arch::x86_64::*;
    pub type I4 = __m128i;
    pub type F4 = __m128;
    // SAFETY (all): SSE2 is part of the x86-64 baseline.
    pub fn zero_i() -> I4 {
        unsafe { _mm_setzero_si128() }
    }
    pub fn zero_f() -> F4 {
        unsafe { _mm_setzero_ps() }
    }
    pub fn dot_add(acc: I4, x: I4, w: I4) -> I4 {
        unsafe { _mm_add_epi32(acc, _mm_madd_epi16(x, w)) }
    }
    pub fn to_f32(v: I4) -> F4 {
        unsafe { _mm_cvtepi32_ps(v) }
    }
    pub fn splat_f(x: f32) -> F4 {
        unsafe { _mm_set1_ps(x) }
    }
    pub fn add_f(a: F4, b: F4) -> F4 {
        unsafe { _mm_add_ps(a, b) }
    }
    pub fn mul_f(a: F4, b: F4) -> F4 {
        unsafe { _mm_mul_ps(a, b) }
    }
    pub fn abs_f(a: F4) -> F4 {
        unsafe { _mm_andnot_ps(_mm_set1_ps(-0.0), a) }
    }
    /// The larger lane of `a` and `b` (either one when they are equal; NaNs are not ordered).
    pub fn max_f(a: F4, b: F4) -> F4 {
        unsafe { _mm_max_ps(a, b) }
    }
    pub fn lanes_f(v: F4) -> [f32; 4] {
        let mut out = [0f32; 4];
        unsafe { _mm_storeu_ps(out.as_mut_ptr(), v) };
        out
    }
    /// # Safety: `p` points at 8 readable i16.
    pub unsafe fn load_i16x8(p: *const i16) -> I4 {
        unsafe { _mm_loadu_si128(p as *const __m128i) }
    }
    /// # Safety: `p` points at 2 readable i16.
    pub unsafe fn splat_pair(p: *const i16) -> I4 {
        unsafe { _mm_set1_epi32((p as *const i32).read_unaligned()) }
    }
    /// # Safety: `p` points at 4 readable f32.
    pub unsafe fn load_f(p: *const f32) -> F4 {
        unsafe { _mm_loadu_ps(p) }
    }
    /// # Safety: `p` points at 4 writable f32.
    pub unsafe fn store_f(p: *mut f32, v: F4) {
        unsafe { _mm_storeu_ps(p, v) }
    }
}

#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
pub use imp::*;
