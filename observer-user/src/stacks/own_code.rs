//! Which frames of a symbolized stack are the C library's plumbing (futex, mutex, thread
//! creation) rather than the program's own code. Alerts keep every frame; one-line messages
//! and summaries start at the program's own code, which is what a reader looks for first.

const PLUMBING_PREFIXES: [&str; 14] = [
    "futex_",
    "__sleep (",
    "usleep (",
    "__futex",
    "__GI_",
    "lll_",
    "__lll_",
    "___pthread_",
    "__pthread_",
    "pthread_",
    "clone3",
    "__clone",
    "create_thread",
    "[unknown]",
];

/// The Go runtime and standard-library sync plumbing around a park or a wake.
const GO_PLUMBING_PREFIXES: [&str; 5] = ["runtime.", "internal/", "sync.", "_.", "time.Sleep"];

pub fn is_plumbing(frame: &str) -> bool {
    PLUMBING_PREFIXES.iter().any(|p| frame.starts_with(p))
        || GO_PLUMBING_PREFIXES.iter().any(|p| frame.starts_with(p))
        || frame.starts_with("libc.so")
}

/// The stack from the innermost frame of the program's own code outwards (the whole stack
/// when every frame is plumbing).
pub fn own_frames(frames: &[String]) -> &[String] {
    match frames.iter().position(|f| !is_plumbing(f)) {
        Some(i) => &frames[i..],
        None => frames,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_mutex_plumbing_to_the_caller() {
        let stack: Vec<String> = [
            "futex_wait (futex-internal.h:146)",
            "__GI___lll_lock_wait (lowlevellock.c:49)",
            "lll_mutex_lock_optimized (pthread_mutex_lock.c:48)",
            "___pthread_mutex_lock (pthread_mutex_lock.c:93)",
            "worker_update (lock_hold.c:45)",
            "start_thread (pthread_create.c:442)",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(own_frames(&stack)[0], "worker_update (lock_hold.c:45)");
    }

    #[test]
    fn skips_creation_plumbing() {
        let stack: Vec<String> = [
            "clone3 (clone3.S:62)",
            "__GI___clone_internal (clone-internal.c:54)",
            "create_thread (pthread_create.c:295)",
            "__pthread_create_2_1 (pthread_create.c:831)",
            "start_workers (thread_death.c:93)",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(own_frames(&stack)[0], "start_workers (thread_death.c:93)");
    }

    #[test]
    fn skips_go_runtime_and_sync() {
        let stack: Vec<String> = [
            "runtime.gopark (proc.go:457)",
            "runtime.semacquire1 (sema.go:192)",
            "internal/sync.(*Mutex).lockSlow (mutex.go:149)",
            "sync.(*Mutex).Lock (mutex.go:46)",
            "main.waiter (main.go:19)",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(own_frames(&stack)[0], "main.waiter (main.go:19)");
    }

    #[test]
    fn all_plumbing_keeps_everything() {
        let stack = vec!["clone3".to_string()];
        assert_eq!(own_frames(&stack), &stack[..]);
    }
}
