//! The allocator's setting for training: keep freed memory.
//!
//! A training step frees and allocates the same large tensors (activations, gradients) each
//! step. mimalloc hands freed memory back to the OS after a delay (1 s in v3); the next step's
//! allocation then page-faults it back in, and the kernel zeroes every page: on the mini bench
//! (1 thread) that halved samples/s once a run outlived the delay (11.9 vs 22.9 samples/s over
//! 8 steps). Keeping it costs nothing the run had not already reached: resident memory stays at
//! the step's peak instead of dipping between steps.

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_t`; libmimalloc-sys names its neighbour
/// `mi_option_use_numa_nodes` but not this one.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = libmimalloc_sys::mi_option_use_numa_nodes - 1;

/// Tells mimalloc never to return freed memory to the OS. For binaries whose global allocator
/// is `mimalloc::MiMalloc` (the CLI, the training bench); call before training starts.
pub fn keep_freed_memory() {
    // SAFETY: mimalloc's options are plain integers it reads at each purge decision.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_is_mimallocs_purge_delay() {
        // mimalloc v3's default purge delay is 1000 ms, v2's 10 ms: a wrong index reads another
        // option (use_numa_nodes, eager_commit_delay: 0 or 1).
        // SAFETY: reading an option.
        let default = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert!(default == 1000 || default == 10 || default == -1, "option {PURGE_DELAY} reads {default}");
        keep_freed_memory();
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }, -1);
    }
}
