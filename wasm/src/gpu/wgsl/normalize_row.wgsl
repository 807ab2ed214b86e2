// LayerNorm of one row of `y` in place, shared by embed.wgsl and layer_norm.wgsl (which
// declare `y`, `gamma` and `beta`): the row already holds its input, and `sum` is this
// invocation's share of the row's sum. Two passes (mean, then variance around it), as
// accurate as the CPU path's. Call from uniform control flow.
fn normalize_row(start: u32, h: u32, sum: f32, eps: f32, lane: u32) {
    let mean = workgroup_sum(sum, lane) / f32(h);
    var sq = 0.0;
    for (var d = lane; d < h; d = d + WG_SIZE) {
        let c = y[start + d] - mean;
        sq = sq + c * c;
    }
    let inv = inverseSqrt(workgroup_sum(sq, lane) / f32(h) + eps);
    for (var d = lane; d < h; d = d + WG_SIZE) {
        y[start + d] = (y[start + d] - mean) * inv * gamma[d] + beta[d];
    }
}
