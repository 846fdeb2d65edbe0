//! Typed progress events of a load, for progress bars, JSON lines or
//! metrics.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use pgmig_core::QualifiedTable;
use serde::Serialize;

use super::options::CopyFormat;

/// Receives the load's events; called from the workers, so keep it quick.
pub type ProgressFn = Arc<dyn Fn(&LoadEvent) + Send + Sync>;

/// Where the whole load stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Chunks done (by any loader), of `chunks_total`.
    pub chunks_done: usize,
    /// Chunks in the plan.
    pub chunks_total: usize,
    /// Tasks done (chunks, indexes, tables, post-data), of `tasks_total`.
    pub tasks_done: usize,
    /// Tasks in the plan.
    pub tasks_total: usize,
    /// Table bytes (heap and TOAST on the replica) whose chunks are done:
    /// the unit of the progress bar and the ETA.
    pub table_bytes_done: i64,
    /// Table bytes of all chunks.
    pub table_bytes_total: i64,
    /// COPY bytes streamed by this process.
    pub bytes_streamed: u64,
    /// Rows committed by this process.
    pub rows: u64,
    /// Table bytes per second since this process started.
    pub rate: f64,
    /// Seconds until every chunk is done at that rate.
    pub eta_secs: Option<f64>,
}

/// One table's copy progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TableProgress {
    /// Chunks done.
    pub chunks_done: usize,
    /// Chunks of the table.
    pub chunks: usize,
    /// Rows committed.
    pub rows: u64,
    /// COPY bytes committed.
    pub bytes: u64,
}

/// Something that happened in a load.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LoadEvent {
    /// The plan is known (made now or found in the target).
    Planned {
        /// Tables to load.
        tables: usize,
        /// Their chunks.
        chunks: usize,
        /// Every task.
        tasks: usize,
        /// Tasks already done (a resumed load).
        done: usize,
        /// Table bytes to copy.
        table_bytes: i64,
        /// Whether this process made the plan (false: resumed or joined).
        planned_now: bool,
    },
    /// A chunk's COPY started.
    ChunkStarted {
        /// The table.
        table: QualifiedTable,
        /// Its number, from 0.
        chunk: i32,
        /// The table's chunks.
        chunks: i32,
        /// Its format.
        format: CopyFormat,
    },
    /// A chunk's COPY is streaming.
    ChunkProgress {
        /// The table.
        table: QualifiedTable,
        /// Its number.
        chunk: i32,
        /// Bytes streamed so far in this chunk.
        bytes: u64,
        /// The load's totals.
        totals: Totals,
    },
    /// A chunk committed with its record.
    ChunkDone {
        /// The table.
        table: QualifiedTable,
        /// Its number.
        chunk: i32,
        /// Rows copied.
        rows: u64,
        /// COPY bytes.
        bytes: u64,
        /// How long it took.
        elapsed_ms: u64,
        /// The table's progress.
        table_progress: TableProgress,
        /// The load's totals.
        totals: Totals,
    },
    /// An index or a table's constraints and statistics are done.
    TableStep {
        /// The table.
        table: QualifiedTable,
        /// `index` or `finish_table`.
        step: &'static str,
        /// The statement (first line).
        what: String,
        /// How long it took.
        elapsed_ms: u64,
        /// The load's totals.
        totals: Totals,
    },
    /// A final step is done.
    FinalStep {
        /// `post_data` or `sequences`.
        step: &'static str,
        /// How long it took.
        elapsed_ms: u64,
    },
    /// Nothing is ready for this process: other loaders hold the remaining
    /// tasks, or wait for them.
    Waiting {
        /// Tasks not done.
        remaining: i64,
    },
}

/// Keeps the totals the events carry.
#[derive(Debug)]
pub(crate) struct Tracker {
    started: Instant,
    totals: Totals,
    table_bytes_at_start: i64,
    tables: HashMap<QualifiedTable, (TableProgress, i64)>,
}

impl Tracker {
    /// A tracker over `chunks` per table: (table, its chunks, its table
    /// bytes, chunks already done).
    pub(crate) fn new(
        tables: impl IntoIterator<Item = (QualifiedTable, usize, i64, usize)>,
        tasks_total: usize,
        tasks_done: usize,
    ) -> Tracker {
        let mut totals = Totals {
            tasks_total,
            tasks_done,
            ..Totals::default()
        };
        let mut map = HashMap::new();
        for (table, chunks, bytes, done) in tables {
            totals.chunks_total += chunks;
            totals.chunks_done += done;
            totals.table_bytes_total += bytes;
            let per = bytes / chunks.max(1) as i64;
            totals.table_bytes_done += per * done as i64;
            map.insert(
                table,
                (
                    TableProgress {
                        chunks_done: done,
                        chunks,
                        ..TableProgress::default()
                    },
                    per,
                ),
            );
        }
        Tracker {
            started: Instant::now(),
            table_bytes_at_start: totals.table_bytes_done,
            totals,
            tables: map,
        }
    }

    fn refresh(&mut self) {
        let secs = self.started.elapsed().as_secs_f64();
        let gained = (self.totals.table_bytes_done - self.table_bytes_at_start) as f64;
        self.totals.rate = if secs > 0.0 { gained / secs } else { 0.0 };
        let left = (self.totals.table_bytes_total - self.totals.table_bytes_done).max(0) as f64;
        self.totals.eta_secs = (self.totals.rate > 0.0).then(|| left / self.totals.rate);
    }

    pub(crate) fn totals(&mut self) -> Totals {
        self.refresh();
        self.totals.clone()
    }

    pub(crate) fn streamed(&mut self, bytes: u64) {
        self.totals.bytes_streamed += bytes;
    }

    pub(crate) fn chunk_done(
        &mut self,
        table: &QualifiedTable,
        rows: u64,
        bytes: u64,
    ) -> TableProgress {
        self.totals.chunks_done += 1;
        self.totals.tasks_done += 1;
        self.totals.rows += rows;
        match self.tables.get_mut(table) {
            Some((p, per)) => {
                p.chunks_done += 1;
                p.rows += rows;
                p.bytes += bytes;
                self.totals.table_bytes_done += *per;
                p.clone()
            }
            None => TableProgress::default(),
        }
    }

    pub(crate) fn task_done(&mut self) {
        self.totals.tasks_done += 1;
    }
}
