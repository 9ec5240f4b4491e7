//! Keeps glibc's allocator from handing tensor memory back to the kernel after every op.
//!
//! A training step allocates and frees the same few hundred-kilobyte tensors over and over.
//! glibc serves blocks above its mmap threshold (128 KiB at start) with a fresh mmap each time,
//! so every such tensor costs page faults and zeroing by the kernel; on AIDS-sized batches that
//! was 10-15% of a GIN training epoch (measured with perf on the 2-core dev box). Raising the
//! thresholds keeps those blocks in the heap for reuse. It only changes where freed memory waits,
//! not how much the program uses at its peak.

/// Blocks up to this size come from the heap rather than a private mmap.
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory at the top of the heap beyond this is returned to the kernel.
const TRIM_THRESHOLD: i32 = 128 << 20;

/// Call once at start-up, before heavy allocation. A no-op where the C library is not glibc.
pub fn tune_for_tensors() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc's <malloc.h>
        const M_TRIM_THRESHOLD: std::ffi::c_int = -1;
        const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
        extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        // SAFETY: mallopt only adjusts allocator parameters; these values are within the
        // documented ranges (the mmap threshold at most HEAP_MAX/2 = 32 MiB on 64-bit).
        unsafe {
            mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
}
