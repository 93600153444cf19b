//! Group commit: write transactions take turns on one connection and commit in groups, one
//! database transaction (one fsync) per group, each writer in a savepoint of its own.

use super::{Store, lock};

/// Write transactions take turns on one connection and commit in groups (group commit): a
/// transaction runs inside a savepoint of the group's database transaction, and the group
/// commits — one fsync — once every writer that was waiting when it opened has had its turn.
/// Each is acknowledged only after that commit.
///
/// Why: SQLite has one writer at a time, and a writer that finds the file locked sleeps in
/// growing steps (up to 100 ms) before it retries, so writers queue here in order instead.
/// PostgreSQL could write in parallel, but every job submission takes the same id counter
/// row, which each transaction holds until its commit's fsync; a group takes it once.
#[derive(Default)]
pub(super) struct Writer {
    pub(super) group: Option<Group>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let members = self.group.as_ref().map(|group| group.members);
        f.debug_struct("Writer").field("open_group_members", &members).finish()
    }
}

/// Transactions in one group at most. PostgreSQL keeps the ids of 64 subtransactions per
/// transaction in shared memory; beyond that every snapshot in the server gets slower.
pub(super) const MAX_GROUP_MEMBERS: u64 = 64;

/// The open group: a database transaction and the savepoints of its writers.
pub(super) struct Group {
    pub(super) transaction: sqlx::Transaction<'static, sqlx::Any>,
    /// Savepoints taken so far (the next is `w{members + 1}`).
    pub(super) members: u64,
    /// The savepoint of a writer that left without committing: rolled back before anything
    /// else runs in the group.
    pub(super) abandoned: Option<u64>,
    /// Why the group cannot commit (rolling back an abandoned savepoint failed, e.g. because
    /// the database had already rolled the whole transaction back).
    pub(super) broken: Option<String>,
    /// The group's outcome, once committed or rolled back.
    pub(super) outcome: tokio::sync::watch::Sender<Option<Result<(), String>>>,
    /// Ids taken in this group, by kind: the counter row is taken from the database once per
    /// group (which locks it until the commit), later ids are counted here, and the last one is
    /// written back just before the commit. One round trip per submission fewer.
    pub(super) ids: IdCounters,
    /// `ids` when the newest savepoint was taken, restored if that savepoint is rolled back.
    pub(super) ids_at_savepoint: IdCounters,
}

/// Per kind of id: the last value taken, and the value the counter row holds now.
#[derive(Debug, Clone, Default)]
pub(super) struct IdCounters(pub(super) std::collections::BTreeMap<String, (i64, i64)>);

impl Group {
    async fn savepoint(&mut self, statement: &str, number: u64) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("{statement} w{number}"))).execute(&mut *self.transaction).await?;
        Ok(())
    }

    /// Opens the savepoint of the next writer.
    pub(super) async fn open_savepoint(&mut self, number: u64) -> Result<(), sqlx::Error> {
        self.ids_at_savepoint = self.ids.clone();
        self.savepoint("SAVEPOINT", number).await
    }

    /// Writes back the last id of each kind counted here since the counter row was read.
    async fn write_back_ids(&mut self) -> Result<(), sqlx::Error> {
        for (name, (taken, stored)) in &mut self.ids.0 {
            if taken > stored {
                sqlx::query("UPDATE counters SET value = $1 WHERE name = $2")
                    .bind(*taken)
                    .bind(name.clone())
                    .execute(&mut *self.transaction)
                    .await?;
                *stored = *taken;
            }
        }
        Ok(())
    }

    /// Rolls back the savepoint of a writer that left without committing; a failure breaks
    /// the group.
    pub(super) async fn roll_back_abandoned(&mut self) {
        if let Some(number) = self.abandoned.take() {
            // The group counts as broken until the rollback is done: a caller cancelled while
            // waiting for it must not leave the group committing the abandoned writes.
            let broken_before = self.broken.replace("undoing an abandoned transaction was interrupted".into());
            let undone = match self.savepoint("ROLLBACK TO", number).await {
                Ok(()) => self.savepoint("RELEASE", number).await,
                Err(error) => Err(error),
            };
            self.broken = match undone {
                Ok(()) => broken_before,
                Err(error) => Some(format!("undoing an abandoned transaction failed: {error}")),
            };
            // Only the newest savepoint is ever abandoned, so the ids it took are the last.
            self.ids = std::mem::take(&mut self.ids_at_savepoint);
        }
    }
}

/// Commits the open group once it has the turn (every writer queued before this task has
/// joined the group by then), deleting with it the pending rows of the audit entries that
/// reached the log since the last group.
pub(super) async fn commit_group(writer: std::sync::Arc<tokio::sync::Mutex<Writer>>, store: Store) {
    let mut turn = writer.lock_owned().await;
    let Some(mut group) = turn.group.take() else { return };
    group.roll_back_abandoned().await;
    let settled = std::mem::take(&mut *lock(&store.settled));
    if group.broken.is_none()
        && let Err(error) = delete_pending(&mut group.transaction, &settled).await
    {
        group.broken = Some(format!("deleting settled audit entries failed: {error}"));
    }
    if group.broken.is_none()
        && let Err(error) = group.write_back_ids().await
    {
        group.broken = Some(format!("writing back the id counters failed: {error}"));
    }
    let outcome = match group.broken.take() {
        Some(reason) => {
            let _ = group.transaction.rollback().await;
            Err(reason)
        }
        None => group.transaction.commit().await.map_err(|error| error.to_string()),
    };
    match outcome {
        Ok(()) => drop(store.group_commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
        Err(_) => lock(&store.settled).extend(settled),
    }
    group.outcome.send_replace(Some(outcome));
}

/// Deletes the `audit_pending` rows of `keys`, a few hundred to a statement.
async fn delete_pending(
    transaction: &mut sqlx::Transaction<'static, sqlx::Any>,
    keys: &[String],
) -> Result<(), sqlx::Error> {
    for chunk in keys.chunks(256) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
        let sql = format!("DELETE FROM audit_pending WHERE key IN ({})", placeholders.join(", "));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for key in chunk {
            query = query.bind(key.clone());
        }
        query.execute(&mut **transaction).await?;
    }
    Ok(())
}
