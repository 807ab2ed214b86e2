// Self-attention for one query row of one head: scores = (q · scale) kᵀ + key mask,
// softmax, · v; fused so the [seq, seq] score matrix never reaches storage. qkv holds
// [tokens, 3 · hidden] (query | key | value projections side by side, as the fused QKV
// matmul writes them). Dispatch (seq_len, heads, batch).
// MAX_SEQ is set when the pipeline is built (the model's max_position_embeddings).

struct Params {
    seq_len: u32,
    heads: u32,
    head_dim: u32,
    hidden: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<f32>;
@group(0) @binding(3) var<storage, read_write> context: array<f32>;

// Same constant as the CPU path (model/bert.rs): exp() of it underflows to 0.
const MASKED_SCORE: f32 = -1.0e30;
const MAX_HEAD_DIM: u32 = 256u;

var<workgroup> query: array<f32, MAX_HEAD_DIM>;
var<workgroup> scores: array<f32, MAX_SEQ>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let i = group.x;
    let head = group.y;
    let b = group.z;
    let s = params.seq_len;
    let dim = params.head_dim;
    let stride = 3u * params.hidden;
    let row = b * s + i;
    let offset = head * dim;

    for (var d = lane; d < dim; d = d + WG_SIZE) {
        query[d] = qkv[row * stride + offset + d] * params.scale;
    }
    workgroupBarrier();

    var local_max = MASKED_SCORE;
    for (var j = lane; j < s; j = j + WG_SIZE) {
        let key = (b * s + j) * stride + params.hidden + offset;
        var score = 0.0;
        for (var d = 0u; d < dim; d = d + 1u) {
            score = fma(query[d], qkv[key + d], score);
        }
        score = score + (1.0 - mask[b * s + j]) * MASKED_SCORE;
        scores[j] = score;
        local_max = max(local_max, score);
    }
    let top = workgroup_max(local_max, lane);

    var local_sum = 0.0;
    for (var j = lane; j < s; j = j + WG_SIZE) {
        let e = exp(scores[j] - top);
        scores[j] = e;
        local_sum = local_sum + e;
    }
    let total = workgroup_sum(local_sum, lane);

    for (var d = lane; d < dim; d = d + WG_SIZE) {
        var acc = 0.0;
        let value = 2u * params.hidden + offset + d;
        for (var j = 0u; j < s; j = j + 1u) {
            acc = fma(scores[j], qkv[(b * s + j) * stride + value], acc);
        }
        context[row * params.hidden + offset + d] = acc / total;
    }
}
