// One vector per sequence: [CLS] (mode 0) or the mean over real tokens (mode 1), then
// optional L2 normalisation; one workgroup per sequence. Matches pipeline/pool.rs.

struct Params {
    batch: u32,
    seq_len: u32,
    hidden: u32,
    mode: u32,
    normalize: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> states: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let b = group.x;
    let s = params.seq_len;
    let h = params.hidden;
    var count = 0.0;
    for (var t = 0u; t < s; t = t + 1u) {
        count = count + mask[b * s + t];
    }
    count = max(count, 1e-9);
    var sq = 0.0;
    for (var d = lane; d < h; d = d + WG_SIZE) {
        var v = 0.0;
        if (params.mode == 0u) {
            v = states[b * s * h + d];
        } else {
            for (var t = 0u; t < s; t = t + 1u) {
                v = fma(states[(b * s + t) * h + d], mask[b * s + t], v);
            }
            v = v / count;
        }
        y[b * h + d] = v;
        sq = sq + v * v;
    }
    let norm = max(sqrt(workgroup_sum(sq, lane)), 1e-12);
    if (params.normalize == 1u) {
        for (var d = lane; d < h; d = d + WG_SIZE) {
            y[b * h + d] = y[b * h + d] / norm;
        }
    }
}
