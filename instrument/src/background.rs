//! The SDK's own threads as background work.
//!
//! The drain, the sink workers and the sinks' own threads (samplers, checkers, exporters) wake
//! up many times a second for a few microseconds of work each. On a machine whose cores the
//! host keeps busy, each such wake-up under the default policy preempts one of the host's
//! threads at once, and the host's thread comes back to cold caches. On Linux they therefore
//! run under the `SCHED_BATCH` policy: a woken background thread waits for the running thread's
//! turn to end instead of preempting it. Its share of the CPU when the machine is busy is
//! unchanged (the same weight as any thread of its nice value), so it is never starved; it
//! only gives up the right to cut in.

/// Makes the calling thread a background thread: on Linux, the `SCHED_BATCH` scheduling
/// policy (its nice value unchanged); on other systems nothing changes.
///
/// The pipeline's drain and sink workers call it as they start, and so do the threads of
/// `instrument-sinks` that work on their own schedule. A host may call it on its own
/// housekeeping threads.
///
/// # Errors
/// The operating system refused the change; the thread keeps its policy and works as before.
///
/// ```
/// std::thread::spawn(|| {
///     instrument::background_thread().expect("SCHED_BATCH needs no privilege");
/// })
/// .join()
/// .unwrap();
/// ```
pub fn background_thread() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `sched_setscheduler` reads one `sched_param` through the pointer, which
        // points at `param`, alive and initialized for the whole call; pid 0 is the calling
        // thread. `SCHED_BATCH` requires a priority of 0 and no privilege.
        #[allow(unsafe_code)]
        let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &raw const param) };
        if result != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The calling thread's policy as the kernel reports it.
    fn policy() -> u32 {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").unwrap();
        sched
            .lines()
            .find_map(|line| line.strip_prefix("policy"))
            .and_then(|rest| rest.trim_start_matches([' ', ':']).trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn a_background_thread_runs_under_sched_batch_and_others_are_untouched() {
        std::thread::spawn(|| {
            assert_eq!(policy(), libc::SCHED_OTHER as u32);
            super::background_thread().unwrap();
            assert_eq!(policy(), libc::SCHED_BATCH as u32);
        })
        .join()
        .unwrap();
        assert_eq!(
            policy(),
            libc::SCHED_OTHER as u32,
            "the caller's thread changed"
        );
    }
}
