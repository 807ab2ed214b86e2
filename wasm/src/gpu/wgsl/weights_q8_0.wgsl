// Weight access, q8_0: blocks of 32 values along a row, each value an int8 times the
// block's scale. The int8s are packed four to a u32 in file order; the f16 scales were
// widened to f32 on upload (WGSL has no 2-byte loads, and the block layout is not
// 4-byte aligned).
@group(0) @binding(2) var<storage, read> w_values: array<u32>;
@group(0) @binding(3) var<storage, read> w_scales: array<f32>;

fn load_w(row: u32, col: u32, cols: u32) -> f32 {
    let i = row * cols + col;
    let q = extractBits(bitcast<i32>(w_values[i >> 2u]), (i & 3u) * 8u, 8u);
    return f32(q) * w_scales[i >> 5u];
}
