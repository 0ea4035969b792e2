//! Work that is not tied to the request that started it. A client that disconnects or
//! times out drops its request future; work that takes a lock or a charge must still run
//! to its end, so it runs as a task of its own and the request only waits for it.

use std::{future::Future, time::Duration};

/// Runs `work` to completion whatever happens to the caller, and returns its result.
pub async fn run_detached<T, F>(work: F) -> T
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    match tokio::spawn(work).await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only a runtime shutting down cancels a spawned task.
        Err(e) => panic!("detached work cancelled: {e}"),
    }
}

/// Like `run_detached`, but answers `None` after `wait` while the work goes on.
pub async fn run_detached_for<T, F>(wait: Duration, work: F) -> Option<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let task = tokio::spawn(work);
    match tokio::time::timeout(wait, task).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(e)) => panic!("detached work cancelled: {e}"),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use super::*;

    #[tokio::test]
    async fn work_finishes_after_its_caller_is_dropped() {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let caller = tokio::spawn(run_detached(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            flag.store(true, Ordering::SeqCst);
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
        caller.abort();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(done.load(Ordering::SeqCst), "the work ran to its end");
    }

    #[tokio::test]
    async fn a_bounded_wait_answers_none_and_the_work_goes_on() {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let answer = run_detached_for(Duration::from_millis(20), async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            flag.store(true, Ordering::SeqCst);
            7
        })
        .await;
        assert_eq!(answer, None);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(done.load(Ordering::SeqCst));
        assert_eq!(
            run_detached_for(Duration::from_secs(5), async { 7 }).await,
            Some(7)
        );
    }
}
