// Weight access, f16: two halves per u32, read with unpack2x16float (core WGSL, so no
// `shader-f16` needed): an f16 bundle keeps half the memory on the GPU too.
@group(0) @binding(2) var<storage, read> w_values: array<u32>;

fn load_w(row: u32, col: u32, cols: u32) -> f32 {
    let i = row * cols + col;
    let pair = unpack2x16float(w_values[i >> 1u]);
    return select(pair.x, pair.y, (i & 1u) == 1u);
}
