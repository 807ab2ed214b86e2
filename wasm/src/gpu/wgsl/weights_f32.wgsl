// Weight access, f32: a row-major [rows, cols] matrix.
@group(0) @binding(2) var<storage, read> w_values: array<f32>;

fn load_w(row: u32, col: u32, cols: u32) -> f32 {
    return w_values[row * cols + col];
}
