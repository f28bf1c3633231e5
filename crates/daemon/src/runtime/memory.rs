//! Gives the memory a sweep touched and no longer uses back to the kernel, so that the idle
//! daemon's RSS is what it uses while idle.
//!
//! - **Heap.** A sweep allocates a few MiB (responses, connection buffers, stop tasks) and frees
//!   them when it ends, but glibc's malloc keeps freed pages in its arenas, so the idle daemon's
//!   RSS stays at the sweep's high-water mark: 4-5 MiB more than it needs at 1,000 pipelines
//!   (measured in BENCHMARKS.md). `malloc_trim(0)` after each sweep returns them.
//! - **Code.** The start-up and a sweep run code all over the binary (the AWS SDK, TLS, SQLite
//!   or PostgreSQL, migrations), and the kernel maps each page touched, with its neighbours
//!   (fault-around), into the process: 17 MiB of code and 7 MiB of read-only data in the idle
//!   daemon's RSS of 32 MiB, against 8 MiB that the idle daemon touches in a minute (issue 29,
//!   BENCHMARKS.md). After each sweep the binary's read-only mappings that hold no page of their
//!   own (`Anonymous: 0` in `/proc/self/smaps`: never written, so identical to the file) are
//!   unmapped page by page with `madvise(MADV_DONTNEED)`: the pages stay in the page cache, and
//!   the next touch maps them back with a minor fault (no disk read), so the next sweep does not
//!   slow down. Writable mappings and the RELRO segment (written by the dynamic loader, so it
//!   has pages of its own) are left alone: unmapping them would lose what was written.
//!
//! Elsewhere than Linux with glibc this does nothing. The project's only `unsafe` blocks.

/// Returns free heap pages of every malloc arena to the kernel (glibc only), and unmaps the
/// executable's clean read-only pages (Linux only; see the module's documentation).
#[allow(unsafe_code)]
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions: it only walks malloc's own free lists, under
    // malloc's locks, and madvises whole free pages away. No Rust object is touched.
    unsafe {
        libc::malloc_trim(0);
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = unmap_clean_code() {
        tracing::debug!(error = %e, "cannot unmap the binary's clean pages");
    }
}

/// A mapping of `/proc/self/smaps`: its range, whether it may be written, its file, and the
/// pages it holds of its own (written since mapped), in kB.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    writable: bool,
    path: String,
    anonymous_kb: u64,
    rss_kb: u64,
}

/// The mappings of an smaps text (`/proc/PID/smaps`).
fn mappings(smaps: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            let perms = fields.next().unwrap_or("");
            // offset, device, inode, then the path (which may hold spaces).
            let path: Vec<&str> = fields.skip(3).collect();
            out.push(Mapping {
                start,
                end,
                writable: perms.contains('w'),
                path: path.join(" "),
                // Unknown until read: counted as written, so never unmapped.
                anonymous_kb: u64::MAX,
                rss_kb: 0,
            });
        } else if first == "Anonymous:"
            && let Some(m) = out.last_mut()
        {
            m.anonymous_kb = fields
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX);
        } else if first == "Rss:"
            && let Some(m) = out.last_mut()
        {
            m.rss_kb = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    out
}

/// The executable's mappings that may be unmapped: not writable, and holding no page of their
/// own (so every page is the file's, and a touch maps it back as it was).
fn clean_code(smaps: &str, exe: &str) -> Vec<(usize, usize)> {
    mappings(smaps)
        .into_iter()
        .filter(|m| m.path == exe && !m.writable && m.anonymous_kb == 0)
        .map(|m| (m.start, m.end))
        .collect()
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn unmap_clean_code() -> std::io::Result<()> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    for (start, end) in clean_code(&smaps, &exe.to_string_lossy()) {
        // SAFETY: the range is a whole mapping of the executable that is not writable and has
        // no page of its own (smaps says `Anonymous: 0`), so nothing in it differs from the
        // file: MADV_DONTNEED on a private file mapping only drops the page-table entries, and
        // the next access maps the file's page again, unchanged. No pointer into it is
        // invalidated (the mapping stays). A read-only mapping cannot gain a page of its own
        // between the read of smaps and this call.
        let r =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
5555a0000000-5555a0a43000 r--p 00000000 fd:01 42                         /usr/bin/stopd
Size:              10508 kB
Rss:                6884 kB
Anonymous:             0 kB
5555a0a43000-5555a202d000 r-xp 00a42000 fd:01 42                         /usr/bin/stopd
Size:              22444 kB
Anonymous:             0 kB
5555a202e000-5555a2248000 r--p 0202c000 fd:01 42                         /usr/bin/stopd
Size:               2152 kB
Anonymous:          2152 kB
5555a2248000-5555a2296000 rw-p 02245000 fd:01 42                         /usr/bin/stopd
Anonymous:           312 kB
7f0000000000-7f0000100000 r-xp 00000000 fd:01 7                          /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7f0000200000-7f0000300000 r--p 00000000 fd:01 9                          /opt/my dir/stopd
Anonymous:             0 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Anonymous:           132 kB
";

    /// Code and read-only data of the executable are unmapped; the RELRO segment (pages of its
    /// own: the loader wrote them), writable data, other files and the stack are not.
    #[test]
    fn only_the_executables_clean_read_only_mappings_are_unmapped() {
        assert_eq!(
            clean_code(SMAPS, "/usr/bin/stopd"),
            vec![
                (0x5555_a000_0000, 0x5555_a0a4_3000),
                (0x5555_a0a4_3000, 0x5555_a202_d000)
            ]
        );
        // A path with a space is the whole path.
        assert_eq!(
            clean_code(SMAPS, "/opt/my dir/stopd"),
            vec![(0x7f00_0020_0000, 0x7f00_0030_0000)]
        );
        // A mapping whose Anonymous line is missing is taken as written.
        let cut = "5555a0000000-5555a0a43000 r--p 00000000 fd:01 42 /usr/bin/stopd\nSize: 4 kB\n";
        assert!(clean_code(cut, "/usr/bin/stopd").is_empty());
    }

    /// In this test process: unmapping its clean code takes them out of its RSS, and code
    /// runs on and reads on (the pages come back, unchanged); the mappings it unmapped hold
    /// no page of their own afterwards either.
    #[cfg(target_os = "linux")]
    #[test]
    fn unmapping_the_clean_code_of_a_running_process_is_harmless() {
        let exe = std::fs::read_link("/proc/self/exe").expect("exe");
        let exe = exe.to_string_lossy();
        let smaps = || std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let resident = |text: &str, clean: &[(usize, usize)]| -> u64 {
            mappings(text)
                .into_iter()
                .filter(|m| clean.contains(&(m.start, m.end)))
                .map(|m| m.rss_kb)
                .sum()
        };
        let before = smaps();
        let clean = clean_code(&before, &exe);
        assert!(!clean.is_empty(), "the test binary has clean code mappings");
        let rss_before = resident(&before, &clean);
        unmap_clean_code().expect("madvise");
        let after = smaps();
        let rss_after = resident(&after, &clean);
        // Reading smaps ran some code again, and mapped it back: far less than before.
        assert!(
            rss_after * 2 < rss_before,
            "{rss_before} kB resident before, {rss_after} kB after"
        );
        // Code runs on, and formatting (read-only data) reads right.
        assert_eq!(format!("{:>5}", 42), "   42");
        for (start, end) in clean {
            let m = mappings(&after)
                .into_iter()
                .find(|m| m.start == start && m.end == end)
                .expect("the mapping stays");
            assert_eq!(m.anonymous_kb, 0);
        }
    }
}
