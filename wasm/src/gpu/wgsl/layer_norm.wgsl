// y = LayerNorm(a + b): the residual add and the norm that follow attention and the
// feed-forward block, one workgroup per row.

struct Params {
    rows: u32,
    hidden: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let r = group.x + group.y * 65535u;
    if (r >= params.rows) {
        return;
    }
    let h = params.hidden;
    var sum = 0.0;
    for (var d = lane; d < h; d = d + WG_SIZE) {
        let v = a[r * h + d] + b[r * h + d];
        y[r * h + d] = v;
        sum = sum + v;
    }
    normalize_row(r * h, h, sum, params.eps, lane);
}
