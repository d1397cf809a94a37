//! The `ossmount` binary; everything lives in [`ossmount::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    tune_malloc();
    ossmount::cli::main_with_args(std::env::args_os().collect())
}

/// glibc gives each thread that allocates its own malloc arena, and an arena reuses only
/// the memory freed into it. ossmount moves 1 MiB blocks between FUSE threads and tokio
/// workers, so every arena grows to its own peak of blocks. Measured (1 GiB read, then a
/// 1 GiB write, 256 MiB cache, by `dd` through the mount; `VmHWM`): the default arenas
/// 1602 MiB, two arenas 326-337 MiB, one arena 296-298 MiB at the same throughput.
/// Allocation-heavy work here is a few large buffers per MiB moved, so one arena's lock
/// is not contended. Explicit `MALLOC_*` variables in the environment still win.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let unset = |name: &str| std::env::var_os(name).is_none();
        // SAFETY: mallopt only adjusts allocator tuning; called before any thread exists.
        unsafe {
            if unset("MALLOC_ARENA_MAX") {
                libc::mallopt(libc::M_ARENA_MAX, 1);
            }
            // Keep freed buffers in the heap: by default glibc trims the heap top and maps
            // multi-MiB buffers separately, so the 1 MiB blocks and pieces this process
            // cycles through were handed back and faulted in again (27,000 page faults per
            // GiB written, measured with `dd` through the mount; 0 with these settings,
            // same peak RSS). Memory stays bounded by the cache budget either way.
            if unset("MALLOC_TRIM_THRESHOLD_") {
                libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
            }
            if unset("MALLOC_MMAP_THRESHOLD_") {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            }
        }
    }
}
