// BertEmbeddings: word[id] + position[s] + token_type[0], then LayerNorm; one workgroup
// per token. The word table may be quantized (`load_w` from a weights_*.wgsl).

struct Params {
    tokens: u32,
    seq_len: u32,
    hidden: u32,
    vocab: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(4) var<storage, read> positions: array<f32>;
@group(0) @binding(5) var<storage, read> token_type: array<f32>;
@group(0) @binding(6) var<storage, read> gamma: array<f32>;
@group(0) @binding(7) var<storage, read> beta: array<f32>;
@group(0) @binding(8) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let t = group.x + group.y * 65535u;
    // Uniform per workgroup, so returning keeps barriers in uniform control flow.
    if (t >= params.tokens) {
        return;
    }
    let h = params.hidden;
    let s = t % params.seq_len;
    // The runtime checks ids against the vocabulary; clamping keeps a bad id in bounds.
    let id = min(ids[t], params.vocab - 1u);
    var sum = 0.0;
    for (var d = lane; d < h; d = d + WG_SIZE) {
        let v = load_w(id, d, h) + positions[s * h + d] + token_type[d];
        y[t * h + d] = v;
        sum = sum + v;
    }
    normalize_row(t * h, h, sum, params.eps, lane);
}
