//! libtorch's intra-op thread count for work on small graphs.
//!
//! The engine's tensors are small: a batch of molecules is a few hundred rows by the hidden width,
//! a matrix product some 50 us on one core. Spread over two threads every op pays an OpenMP fork
//! and join, and when another process holds the second core the join waits on the scheduler, so
//! two threads were several times slower than one on a shared 2-core box (docs/experiments.md).
//! The GIN trainer and purification therefore run on one thread and restore the caller's setting
//! afterwards.

/// Intra-op threads for the small-graph workloads (training a GIN on the CPU, purification).
pub const SMALL_GRAPH_THREADS: i32 = 1;

/// Sets libtorch's intra-op thread count for the calling thread while it lives and restores the
/// previous count when dropped.
pub struct IntraOpThreads {
    previous: i32,
    /// The setting is per thread: restore it on the thread that made it.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl IntraOpThreads {
    pub fn set(threads: i32) -> IntraOpThreads {
        let previous = tch::get_num_threads();
        if previous != threads {
            tch::set_num_threads(threads);
        }
        IntraOpThreads { previous, _not_send: std::marker::PhantomData }
    }
}

impl Drop for IntraOpThreads {
    fn drop(&mut self) {
        if tch::get_num_threads() != self.previous {
            tch::set_num_threads(self.previous);
        }
    }
}
