//! What users run: the servers command, the fowld JSON-lines daemon and the human CLI.

pub mod cli;
pub mod fowld;
pub mod options;
pub mod server;

/// Keeps glibc's malloc from handing memory back to the kernel after every record: a forwarded
/// stream allocates and frees 64 KiB buffers one after the other, and with glibc's defaults
/// (a trim threshold that follows the largest freed block) each free trimmed the heap with
/// `madvise` and the next allocation faulted the pages in again, zeroed: the largest single
/// cost beyond the floor (5.4 -> 3.5 CPU-seconds per GB for the pair, `scripts/bench.sh
/// bench_fowld`, README). Up to [`KEPT_FREE`] stays mapped per arena. Call it first thing in
/// `main`, before any thread starts.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc's parameters; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, KEPT_FREE as libc::c_int);
        libc::mallopt(libc::M_MMAP_THRESHOLD, KEPT_FREE as libc::c_int);
    }
}

/// Free memory a malloc arena keeps instead of returning it (and the size from which blocks
/// are mapped on their own), see [`tune_allocator`].
pub const KEPT_FREE: usize = 1 << 20;

/// Raises this process's limit on open files to its hard limit: every forwarded stream holds a
/// local socket, and the usual soft limit of 1024 would refuse streams long before
/// [`max_subchannels`](crate::dilation::DilationConfig::max_subchannels) does. Returns the
/// limit now in force, `None` if it could not be read.
pub fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
    Some(limit.rlim_cur as u64)
}
