// Workgroup reductions for kernels with WG_SIZE invocations in one dimension. Call from
// uniform control flow (they contain barriers).
const WG_SIZE: u32 = 64u;
var<workgroup> partial: array<f32, 64>;

fn workgroup_sum(value: f32, lane: u32) -> f32 {
    workgroupBarrier();
    partial[lane] = value;
    workgroupBarrier();
    for (var stride = WG_SIZE / 2u; stride > 0u; stride = stride / 2u) {
        if (lane < stride) {
            partial[lane] = partial[lane] + partial[lane + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

fn workgroup_max(value: f32, lane: u32) -> f32 {
    workgroupBarrier();
    partial[lane] = value;
    workgroupBarrier();
    for (var stride = WG_SIZE / 2u; stride > 0u; stride = stride / 2u) {
        if (lane < stride) {
            partial[lane] = max(partial[lane], partial[lane + stride]);
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}
