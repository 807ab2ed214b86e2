// y[m, n] = act(x[m, k] · W[n, k]ᵀ + bias[n]): every dense layer of the encoder and head.
// Weight access (`load_w`, bindings 2 and 3) comes from the weights_*.wgsl prepended to
// this file, so the same tiling runs f32, q8_0 and q4_0 weights, dequantised as the tile
// is loaded into workgroup memory.
//
// A 16×16 workgroup computes a 64×64 tile of y, each invocation a 4×4 block, stepping
// through k 16 at a time: every x and W value read from storage is used 64 times.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    activation: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;

var<workgroup> x_tile: array<f32, 1024>; // [TILE_M][TILE_K]
var<workgroup> w_tile: array<f32, 1024>; // [TILE_N][TILE_K]

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let row0 = group.y * TILE_M;
    let col0 = group.x * TILE_N;
    var acc: array<array<f32, 4>, 4>;
    for (var k0 = 0u; k0 < params.k; k0 = k0 + TILE_K) {
        for (var i = 0u; i < 4u; i = i + 1u) {
            let e = lane + i * 256u;
            let r = e / TILE_K;
            let kk = k0 + e % TILE_K;
            var xv = 0.0;
            if (row0 + r < params.m && kk < params.k) {
                xv = x[(row0 + r) * params.k + kk];
            }
            x_tile[e] = xv;
            var wv = 0.0;
            if (col0 + r < params.n && kk < params.k) {
                wv = load_w(col0 + r, kk, params.k);
            }
            w_tile[e] = wv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk = kk + 1u) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < 4u; i = i + 1u) {
                a[i] = x_tile[(local.y * 4u + i) * TILE_K + kk];
                b[i] = w_tile[(local.x * 4u + i) * TILE_K + kk];
            }
            for (var i = 0u; i < 4u; i = i + 1u) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    acc[i][j] = fma(a[i], b[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let r = row0 + local.y * 4u + i;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let c = col0 + local.x * 4u + j;
            if (r < params.m && c < params.n) {
                y[r * params.n + c] = activate(acc[i][j] + bias[c], params.activation);
            }
        }
    }
}
