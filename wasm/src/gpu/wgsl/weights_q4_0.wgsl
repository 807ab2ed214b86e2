// Weight access, q4_0: blocks of 32 values, 16 bytes of nibbles per block (ggml order:
// byte j holds value j in its low nibble and value j + 16 in its high one), value =
// (nibble - 8) times the block's scale (f16 in the file, f32 here).
@group(0) @binding(2) var<storage, read> w_values: array<u32>;
@group(0) @binding(3) var<storage, read> w_scales: array<f32>;

fn load_w(row: u32, col: u32, cols: u32) -> f32 {
    let i = row * cols + col;
    let block = i >> 5u;
    let e = i & 31u;
    let j = e & 15u;
    let byte = (w_values[block * 4u + (j >> 2u)] >> ((j & 3u) * 8u)) & 0xffu;
    let q = (byte >> ((e >> 4u) * 4u)) & 0xfu;
    return (f32(q) - 8.0) * w_scales[block];
}
