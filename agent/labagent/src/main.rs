//! The `labagent` binary: the CLI of [`labagent`].

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    labagent::cli::main()
}

/// glibc gives each thread that allocates under contention its own malloc arena (up to 8 per
/// core), and a blocked commit hands its worker's tasks to another thread, so under many
/// concurrent senders the peak RSS doubled (29 MiB vs 15 MiB with 32 senders, same
/// throughput). Two arenas are plenty for a process this small. `MALLOC_ARENA_MAX` in the
/// environment still wins (glibc reads it before `main`; this call only lowers the default).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; it is called before any thread
        // starts, and a failure (return 0) leaves glibc's default in place.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
