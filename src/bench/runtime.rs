//! Threads for the bench clients: each runs one current-thread tokio runtime with a `LocalSet`,
//! so a client's state needs no `Send` and no lock, and the client count per core is chosen
//! by `--threads` rather than by a work-stealing scheduler (the lib has no `rt-multi-thread`,
//! and on a 2-core machine shared with the server a fixed split is also the fairer load).

use std::future::Future;
use std::thread::JoinHandle;

use anyhow::Context;

/// Runs `make()`'s future to completion on a new thread.
pub(crate) fn spawn<T, Fut, F>(name: String, make: F) -> anyhow::Result<JoinHandle<anyhow::Result<T>>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>> + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a tokio runtime")?;
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, make())
        })
        .context("starting a bench thread")
}

/// Waits for a thread from [`spawn`].
pub(crate) fn join<T>(handle: JoinHandle<anyhow::Result<T>>) -> anyhow::Result<T> {
    handle.join().map_err(|_| anyhow::anyhow!("a bench thread panicked"))?
}
