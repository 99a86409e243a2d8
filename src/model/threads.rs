//! Process-wide thread settings for candle's CPU backend.
//!
//! candle 0.11 runs elementwise ops of ≥ 64 Ki elements on its own "barrier pool":
//! `CANDLE_NUM_THREADS − 1` worker threads (default: the rayon thread count) that spin while
//! they wait for work, and a caller that spins until every worker has finished. Matmuls use
//! a separate rayon pool (`RAYON_NUM_THREADS`). On a machine with few cores, and above all
//! on a shared one, the spinning threads compete with the matmul threads and with each other:
//! measured on 2 shared cores (load average 14), one SFT step of the `world` preset
//! (32 × 40 tokens) took 3.3–4.9 s with the pool and 0.47–0.56 s without it, 75 % of the
//! time inside the pool's spin loops.
//!
//! Allocator: glibc returns large freed blocks (every activation buffer of a forward or
//! backward pass) to the kernel, and the next pass faults the pages in again and clears
//! them; measured on the 30 M DPO step, page faults, page clearing and the TLB shootdowns of
//! `munmap` took ~15 % of the time. [`configure_process`] raises the mmap and trim
//! thresholds so freed buffers stay in the heap for reuse (the peak RSS is unchanged).
//!
//! [`configure_process`] also sets `CANDLE_NUM_THREADS=1` (elementwise ops run on the
//! calling thread; matmuls keep every rayon thread) unless the user set it. Results do not
//! depend on it: the pool splits elementwise maps, never reductions.

/// candle's environment variable for the elementwise thread count.
pub const ELEMENTWISE_THREADS_VAR: &str = "CANDLE_NUM_THREADS";

/// Elementwise threads when the user did not choose (see the module docs).
const DEFAULT_ELEMENTWISE_THREADS: &str = "1";

/// Set (to anything) to keep glibc's allocator defaults (for comparisons).
pub const MALLOC_DEFAULTS_VAR: &str = "SCIR_MALLOC_DEFAULTS";

/// Blocks up to this size come from the heap, not from `mmap` (glibc's default is dynamic,
/// at most 32 MiB).
const MMAP_THRESHOLD_BYTES: i32 = 1 << 30;

/// Set the defaults above. Call first thing in `main`, before any other thread exists and
/// before candle runs any op (its pool reads the variable once).
pub fn configure_process() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os(MALLOC_DEFAULTS_VAR).is_none() {
        // SAFETY: mallopt only adjusts allocator parameters; called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    }
    if std::env::var_os(ELEMENTWISE_THREADS_VAR).is_none() {
        // SAFETY: called at the start of `main`, while the process has a single thread,
        // so nothing reads the environment concurrently.
        unsafe { std::env::set_var(ELEMENTWISE_THREADS_VAR, DEFAULT_ELEMENTWISE_THREADS) };
    }
}
