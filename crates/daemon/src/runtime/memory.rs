//! Gives the heap memory a sweep freed back to the kernel.
//!
//! A sweep allocates a few MiB (responses, connection buffers, stop tasks) and frees them when
//! it ends, but glibc's malloc keeps freed pages in its arenas, so the idle daemon's RSS stays
//! at the sweep's high-water mark: 4-5 MiB more than it needs at 1,000 pipelines (measured in
//! BENCHMARKS.md). `malloc_trim(0)` after each sweep returns them. Elsewhere than glibc this
//! does nothing.
//!
//! The project's one `unsafe` block (the workspace denies `unsafe_code`).

/// Returns free heap pages of every malloc arena to the kernel (glibc only).
#[allow(unsafe_code)]
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions: it only walks malloc's own free lists, under
    // malloc's locks, and madvises whole free pages away. No Rust object is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}
