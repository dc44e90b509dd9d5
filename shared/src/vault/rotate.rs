//! Key rotation: a store-agnostic driver that re-seals every row of sealed secrets under the
//! ring's newest key, in batches, resumably, while workers keep running.
//!
//! Procedure for operators:
//! 1. append the new key (last) to every process's key ring and roll out - from then on new
//!    writes use it and every process can open both old and new ciphertexts;
//! 2. run [`rotate_to_newest`]; if it stops (crash, database error) run it again - rows already
//!    on the newest key are skipped, so a rerun from the start is safe and only costs reads
//!    (or pass the last completed id as `start_after`);
//! 3. when a run reports nothing resealed and no conflicts or failures, retire the old key.
//!
//! Each row is updated on its own with a compare-and-set ([`SealedRowSource::update`]), so a
//! concurrent write (a user replacing their keys) is never overwritten with stale secrets.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;

use super::credentials::SealedField;
use super::keyring::KeyRing;
use super::seal::{Binding, VaultError};

/// A failure of the row store behind a [`SealedRowSource`].
#[derive(Debug, thiserror::Error)]
#[error("sealed row source: {0}")]
pub struct RowSourceError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

impl RowSourceError {
    pub fn msg(message: impl Into<String>) -> Self {
        Self(message.into().into())
    }
}

/// One row holding sealed secrets, with what binds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRow<Id> {
    pub id: Id,
    pub principal: String,
    pub exchange: String,
    pub fields: Vec<SealedField>,
}

/// What an update found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// The row held `expected` and now holds the new fields.
    Updated,
    /// The row changed (or vanished) since it was read; nothing written.
    Conflict,
}

/// Rows of sealed secrets, read in id order. The SQL implementation lives in the store.
#[async_trait]
pub trait SealedRowSource: Send + Sync {
    type Id: Clone + Ord + fmt::Debug + Send + Sync + 'static;

    /// Up to `limit` rows with id greater than `after` (all rows when `None`), ascending by id.
    async fn next_batch(
        &self,
        after: Option<&Self::Id>,
        limit: u32,
    ) -> Result<Vec<SealedRow<Self::Id>>, RowSourceError>;

    /// Replaces the row's sealed fields with `new` only if it still holds `expected` (compare
    /// the nonces: each seal has a fresh one), in one statement or transaction.
    async fn update(
        &self,
        id: &Self::Id,
        expected: &[SealedField],
        new: &[SealedField],
    ) -> Result<UpdateOutcome, RowSourceError>;
}

/// How to run a rotation.
#[derive(Debug, Clone)]
pub struct RotationOptions<Id> {
    /// Rows read per batch (at least 1).
    pub batch_size: u32,
    /// Resume after this row id (the `last_id` of a previous, interrupted run).
    pub start_after: Option<Id>,
}

impl<Id> Default for RotationOptions<Id> {
    fn default() -> Self {
        Self {
            batch_size: 500,
            start_after: None,
        }
    }
}

/// A row the driver could not re-seal (it stays as it was).
#[derive(Debug)]
pub struct RowFailure<Id> {
    pub id: Id,
    pub error: VaultError,
}

/// What a rotation run did.
#[derive(Debug)]
pub struct RotationReport<Id> {
    pub scanned: u64,
    pub resealed: u64,
    pub already_current: u64,
    /// Rows changed concurrently between read and update (rerun to cover them).
    pub conflicts: u64,
    /// Rows that did not open (unknown key id, failed authentication): need an operator.
    pub failures: Vec<RowFailure<Id>>,
    /// The last row handled; pass as `start_after` to resume.
    pub last_id: Option<Id>,
}

impl<Id> RotationReport<Id> {
    fn new(start_after: Option<Id>) -> Self {
        Self {
            scanned: 0,
            resealed: 0,
            already_current: 0,
            conflicts: 0,
            failures: Vec::new(),
            last_id: start_after,
        }
    }

    /// True when every scanned row ended on the newest key.
    pub fn is_complete(&self) -> bool {
        self.conflicts == 0 && self.failures.is_empty()
    }
}

/// The row store failed mid-run. `progress.last_id` is the last row fully handled.
#[derive(Debug, thiserror::Error)]
#[error("key rotation stopped after row {:?}: {source}", progress.last_id)]
pub struct RotationError<Id: fmt::Debug> {
    pub progress: RotationReport<Id>,
    #[source]
    pub source: RowSourceError,
}

/// Re-seals every row of `source` whose fields are not all on the ring's newest key.
pub async fn rotate_to_newest<S: SealedRowSource>(
    ring: &KeyRing,
    source: &S,
    options: RotationOptions<S::Id>,
) -> Result<RotationReport<S::Id>, RotationError<S::Id>> {
    let limit = options.batch_size.max(1);
    let mut report = RotationReport::new(options.start_after);
    loop {
        let batch = match source.next_batch(report.last_id.as_ref(), limit).await {
            Ok(b) => b,
            Err(source) => {
                return Err(RotationError {
                    progress: report,
                    source,
                });
            }
        };
        if batch.is_empty() {
            tracing::info!(
                scanned = report.scanned,
                resealed = report.resealed,
                already_current = report.already_current,
                conflicts = report.conflicts,
                failures = report.failures.len(),
                newest_key = %ring.newest_key_id(),
                "vault key rotation pass finished"
            );
            return Ok(report);
        }
        for row in batch {
            report.scanned += 1;
            match reseal_row(ring, &row) {
                Ok(None) => report.already_current += 1,
                Ok(Some(new_fields)) => {
                    match source.update(&row.id, &row.fields, &new_fields).await {
                        Ok(UpdateOutcome::Updated) => report.resealed += 1,
                        Ok(UpdateOutcome::Conflict) => report.conflicts += 1,
                        Err(source) => {
                            return Err(RotationError {
                                progress: report,
                                source,
                            });
                        }
                    }
                }
                Err(error) => report.failures.push(RowFailure {
                    id: row.id.clone(),
                    error,
                }),
            }
            report.last_id = Some(row.id);
        }
        tracing::debug!(
            scanned = report.scanned,
            resealed = report.resealed,
            last_id = ?report.last_id,
            "vault key rotation batch done"
        );
    }
}

/// `None` when all fields are already on the newest key.
fn reseal_row<Id>(
    ring: &KeyRing,
    row: &SealedRow<Id>,
) -> Result<Option<Vec<SealedField>>, VaultError> {
    if row.fields.iter().all(|f| ring.is_current(&f.sealed)) {
        return Ok(None);
    }
    row.fields
        .iter()
        .map(|f| {
            let binding = Binding::new(&row.principal, &row.exchange, &f.name);
            Ok(SealedField {
                name: f.name.clone(),
                sealed: ring.reseal(binding, &f.sealed)?,
            })
        })
        .collect::<Result<Vec<_>, VaultError>>()
        .map(Some)
}

/// An in-memory [`SealedRowSource`] keyed by `u64`, for tests and demos. It can simulate a
/// crash: after a set number of successful updates, further updates fail.
#[derive(Debug, Default)]
pub struct InMemoryRowSource {
    state: Mutex<InMemoryState>,
}

#[derive(Debug, Default)]
struct InMemoryState {
    rows: BTreeMap<u64, SealedRow<u64>>,
    updates: u64,
    fail_after_updates: Option<u64>,
}

impl InMemoryRowSource {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, InMemoryState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Inserts or replaces a row.
    pub fn insert(&self, row: SealedRow<u64>) {
        self.state().rows.insert(row.id, row);
    }

    pub fn get(&self, id: u64) -> Option<SealedRow<u64>> {
        self.state().rows.get(&id).cloned()
    }

    pub fn rows(&self) -> Vec<SealedRow<u64>> {
        self.state().rows.values().cloned().collect()
    }

    /// After `n` more successful updates every update fails (`None` turns this off).
    pub fn fail_after_updates(&self, n: Option<u64>) {
        let mut s = self.state();
        s.fail_after_updates = n.map(|n| s.updates + n);
    }

    /// Successful updates so far.
    pub fn update_count(&self) -> u64 {
        self.state().updates
    }
}

#[async_trait]
impl SealedRowSource for InMemoryRowSource {
    type Id = u64;

    async fn next_batch(
        &self,
        after: Option<&u64>,
        limit: u32,
    ) -> Result<Vec<SealedRow<u64>>, RowSourceError> {
        let s = self.state();
        let start = after.map_or(std::ops::Bound::Unbounded, |a| {
            std::ops::Bound::Excluded(*a)
        });
        Ok(s.rows
            .range((start, std::ops::Bound::Unbounded))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn update(
        &self,
        id: &u64,
        expected: &[SealedField],
        new: &[SealedField],
    ) -> Result<UpdateOutcome, RowSourceError> {
        let mut s = self.state();
        if s.fail_after_updates.is_some_and(|limit| s.updates >= limit) {
            return Err(RowSourceError::msg("simulated crash: update refused"));
        }
        let Some(row) = s.rows.get_mut(id) else {
            return Ok(UpdateOutcome::Conflict);
        };
        if row.fields != expected {
            return Ok(UpdateOutcome::Conflict);
        }
        row.fields = new.to_vec();
        s.updates += 1;
        Ok(UpdateOutcome::Updated)
    }
}
