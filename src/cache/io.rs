//! The cache's I/O threads: a small pool serving the async faces' file and server calls.
//!
//! The async faces hand a job here instead of using `asyncio.to_thread`: the job does the I/O
//! and then answers its caller itself (the bindings wake the event loop with
//! `loop.call_soon_threadsafe`), with no executor and no context copy. A forked child starts
//! its own threads on its first job (the parent's do not exist in it).
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Error, Result};

/// A job for the I/O threads.
pub type Job = Box<dyn FnOnce() + Send>;

/// Threads serving the jobs.
pub const IO_THREADS: usize = 4;

/// The queue, with the process that started its threads.
static IO: Mutex<Option<(u32, Sender<Job>)>> = Mutex::new(None);

/// Runs `job` on an I/O thread, starting the threads on first use (in each process).
pub fn submit(job: Job) -> Result<()> {
    // The lock is held only to find or start the queue.
    let mut g = IO.lock().unwrap_or_else(PoisonError::into_inner);
    let pid = std::process::id();
    #[allow(clippy::nonminimal_bool)] // is_none_or needs Rust 1.82
    let stale = !g.as_ref().is_some_and(|(p, _)| *p == pid);
    if stale {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..IO_THREADS {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("flg-cache-io-{i}"))
                .spawn(move || loop {
                    // The lock is held only to take one job.
                    let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                })
                .map_err(|e| Error::Cache(format!("cannot start a cache I/O thread: {e}")))?;
        }
        *g = Some((pid, tx));
    }
    match g.as_ref().map(|(_, tx)| tx.send(job)) {
        Some(Ok(())) => Ok(()),
        _ => Err(Error::Cache("the cache I/O threads are gone".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_the_io_threads() {
        let (tx, rx) = channel();
        for i in 0..10 {
            let tx = tx.clone();
            submit(Box::new(move || {
                let name = std::thread::current().name().unwrap_or("").to_owned();
                tx.send((i, name)).unwrap();
            }))
            .unwrap();
        }
        let mut got: Vec<(i32, String)> = (0..10).map(|_| rx.recv().unwrap()).collect();
        got.sort();
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
        assert!(got.iter().all(|g| g.1.starts_with("flg-cache-io-")));
    }
}
