//! Stopping a domain: no job starts any more, running guests are cancelled at once instead of
//! being waited for until their fuel or deadline, and every job left unfinished is marked
//! `interrupted` and logged exactly as a restart marks the jobs a killed process left
//! ([`Domain::mark_interrupted_jobs`]), so it can be run again.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::GatewayError;

use super::Domain;

/// What a job stopped by the domain's shutdown is told (its runtime error, never stored: the
/// job is marked interrupted instead).
const STOPPING: &str = "the domain is stopping";

impl Domain {
    /// Stops the domain's work: refuses new jobs, keeps queued ones from starting, cancels the
    /// running ones and waits up to `bound` for their guests to stop; then marks every job
    /// left queued or running `interrupted`, each with a `job.interrupt` entry. Requests that
    /// do not start jobs go on being answered until the server stops.
    pub async fn stop(&self, bound: Duration) -> Result<(), GatewayError> {
        self.stopping.store(true, Ordering::SeqCst);
        // A job waiting for a worker never gets one now.
        self.workers.close();
        let running: Vec<(String, unseen_runtime::CancelFlag)> = {
            let running = self.running_jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            running.iter().map(|(job, (_, flag))| (job.clone(), flag.clone())).collect()
        };
        for (job, flag) in &running {
            tracing::info!(job = %job, "cancelling a running job: {STOPPING}");
            flag.cancel(STOPPING);
        }
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let left = self.running_jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len();
            if left == 0 {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                // Their rows stay `running`; the next open marks them interrupted.
                tracing::warn!("{left} jobs did not stop within {} s; the next start marks them", bound.as_secs());
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.mark_interrupted_jobs().await
    }

    /// Whether the domain is stopping: a job is neither started nor finished as cancelled then.
    pub(super) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Refuses work that would start a job once the domain is stopping.
    pub(super) fn refuse_if_stopping(&self) -> Result<(), GatewayError> {
        if self.is_stopping() {
            return Err(GatewayError::Unavailable(format!("{STOPPING}; run the job again once it is back")));
        }
        Ok(())
    }
}
