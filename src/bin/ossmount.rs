//! The `ossmount` binary; everything lives in [`ossmount::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    limit_malloc_arenas();
    ossmount::cli::main_with_args(std::env::args_os().collect())
}

/// glibc gives each thread that allocates its own malloc arena, and an arena reuses only
/// the memory freed into it. ossmount moves 1 MiB blocks between FUSE threads and tokio
/// workers, so every arena grows to its own peak of blocks. Measured (1 GiB read, then a
/// 1 GiB write, 256 MiB cache, by `dd` through the mount; `VmHWM`): the default arenas
/// 1602 MiB, two arenas 326-337 MiB, one arena 296-298 MiB at the same throughput.
/// Allocation-heavy work here is a few large buffers per MiB moved, so one arena's lock
/// is not contended. An explicit `MALLOC_ARENA_MAX` in the environment still wins.
/// jemalloc (tikv-jemallocator 0.6 as the global allocator) on the same run peaked at
/// 356 MiB against 292-296 MiB for one glibc arena, so glibc with this tuning stays.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only adjusts allocator tuning; called before any thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}
