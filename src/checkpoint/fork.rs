//! Whether this process is a fork of the one that opened a store, without a system call per
//! check: a `pthread_atfork` handler counts, in each child, the forks that led to it. Every
//! `put` and read checks this; `getpid()` is a system call on every call (glibc does not cache
//! it), the count is one load.
//!
//! A fork that skips the `pthread_atfork` handlers (a raw `clone`, glibc's `_Fork`) is not
//! counted; Python's `os.fork()`, and so `multiprocessing`, run them. Where the handler cannot
//! be registered, the process id is compared instead.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Where a store was opened: the forks counted then, and the process id.
#[derive(Debug)]
pub struct Opener {
    forks: AtomicU64,
    pid: AtomicU32,
}

impl Opener {
    /// This process, now.
    pub fn here() -> Self {
        Opener {
            forks: AtomicU64::new(count()),
            pid: AtomicU32::new(std::process::id()),
        }
    }

    /// Makes every process count as forked from the opener (for tests).
    #[cfg(test)]
    pub fn pretend_forked(&self) {
        self.forks.store(u64::MAX, Ordering::Relaxed);
        self.pid.store(0, Ordering::Relaxed);
    }

    /// The id of the process that opened the store.
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::Relaxed)
    }

    /// Whether this process was forked from the opener (at any depth).
    pub fn forked(&self) -> bool {
        counted::forked(self)
    }
}

/// The forks counted so far in this process's line (registering the handler on first use).
fn count() -> u64 {
    counted::count()
}

#[cfg(unix)]
mod counted {
    use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

    use super::Opener;

    /// Forks since the handler was registered, counted in each child.
    static FORKS: AtomicU64 = AtomicU64::new(0);
    /// Whether the handler is registered: not yet, being registered, registered (forks are
    /// counted), or it could not be (the process id is compared).
    static STATE: AtomicU8 = AtomicU8::new(UNREGISTERED);
    const UNREGISTERED: u8 = 0;
    const REGISTERING: u8 = 1;
    const COUNTING: u8 = 2;
    const NOT_COUNTING: u8 = 3;

    /// Runs in the child right after a fork, before `fork()` returns there: async-signal-safe.
    extern "C" fn in_child() {
        FORKS.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count() -> u64 {
        // Never waits for another thread's registration (as a `Once` would): a child forked
        // while its parent was registering would wait forever for a thread it does not have.
        // Until the handler is known to be registered, `forked` compares process ids.
        if STATE.load(Ordering::Acquire) == UNREGISTERED
            && STATE
                .compare_exchange(UNREGISTERED, REGISTERING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // SAFETY: a handler of the required signature that only does an atomic add,
            // registered once per process.
            let registered = unsafe { libc::pthread_atfork(None, None, Some(in_child)) } == 0;
            STATE.store(if registered { COUNTING } else { NOT_COUNTING }, Ordering::Release);
        }
        FORKS.load(Ordering::Relaxed)
    }

    pub fn forked(opener: &Opener) -> bool {
        // Counting: every fork since the opener's count ran the handler in its child, since
        // the handler was registered before the count now read could change. Otherwise, and
        // in a child forked while its parent was registering, the process ids tell.
        if STATE.load(Ordering::Acquire) == COUNTING {
            FORKS.load(Ordering::Relaxed) != opener.forks.load(Ordering::Relaxed)
        } else {
            std::process::id() != opener.pid()
        }
    }
}

#[cfg(not(unix))]
mod counted {
    use super::Opener;

    pub fn count() -> u64 {
        0
    }

    pub fn forked(opener: &Opener) -> bool {
        std::process::id() != opener.pid()
    }
}

#[cfg(test)]
mod tests {
    use super::Opener;

    #[test]
    fn the_opener_is_this_process_until_it_pretends_otherwise() {
        let opener = Opener::here();
        assert!(!opener.forked());
        assert_eq!(opener.pid(), std::process::id());
        opener.pretend_forked();
        assert!(opener.forked());
    }
}
