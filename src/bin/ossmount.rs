//! The `ossmount` binary; everything lives in [`ossmount::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    limit_malloc_arenas();
    ossmount::cli::main_with_args(std::env::args_os().collect())
}

/// glibc gives each thread that allocates its own malloc arena. ossmount moves 1 MiB
/// blocks between FUSE threads and tokio workers, so freed blocks end up scattered over
/// many arenas that never shrink: measured with `scripts/bench.sh`, peak RSS during the
/// 1 GiB read/write rows was 1602 MiB with the default and 302 MiB with two arenas (the
/// block cache is 256 MiB), at the same throughput. An explicit `MALLOC_ARENA_MAX` in
/// the environment still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only adjusts allocator tuning; called before any thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
