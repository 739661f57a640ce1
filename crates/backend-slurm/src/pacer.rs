//! Sizes `sacctmgr load` chunks by time as well as by count. slurmdbd rewrites its association
//! tree for every row a load inserts, so a row costs more the bigger the cluster: a chunk of
//! `write_chunk_size` rows that loads in seconds on a young cluster can hold slurmdbd for
//! minutes on a large one (and outrun the command timeout). After each load the pacer knows
//! what a row cost and makes the next chunk fit in `write_chunk_seconds`.

use std::sync::Mutex;
use std::time::Duration;

/// What a load costs whatever its size (a 3-row load takes ~0.9 s on the test cluster).
const FIXED_COST: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct LoadPacer {
    max_rows: usize,
    target: Duration,
    /// What one row cost in the last load (kept across cycles: the cluster changes slowly).
    per_row: Mutex<Option<Duration>>,
}

impl LoadPacer {
    pub fn new(max_rows: usize, target: Duration) -> Self {
        LoadPacer {
            max_rows: max_rows.max(1),
            target,
            per_row: Mutex::new(None),
        }
    }

    /// Rows for the next load: as many as fit in the target time, at least 1, at most the cap.
    pub fn next_rows(&self) -> usize {
        self.rows_in_target()
            .unwrap_or(self.max_rows)
            .min(self.max_rows)
    }

    /// The rows the last load's cost fits in the target time (at least 1; no cap); `None`
    /// before the first load.
    pub fn rows_in_target(&self) -> Option<usize> {
        let per_row = (*self.per_row.lock().unwrap_or_else(|p| p.into_inner()))?;
        if per_row.is_zero() {
            return Some(usize::MAX);
        }
        Some(((self.target.as_secs_f64() / per_row.as_secs_f64()) as usize).max(1))
    }

    /// A load of `rows` rows took `took`. What any load costs (the process, its reads of the
    /// tree, the commit: about a second here) is not charged to the rows, or a small load
    /// would make the next big one needlessly small.
    pub fn record(&self, rows: usize, took: Duration) {
        if rows == 0 {
            return;
        }
        let cost = took.saturating_sub(FIXED_COST) / u32::try_from(rows).unwrap_or(u32::MAX);
        *self.per_row.lock().unwrap_or_else(|p| p.into_inner()) = Some(cost);
    }

    /// `items` cut into chunks of the size [`next_rows`](Self::next_rows) gives when each is
    /// cut; the caller records each load before asking for the next chunk.
    pub fn split_next<'a, T>(&self, items: &'a [T]) -> (&'a [T], &'a [T]) {
        items.split_at(self.next_rows().min(items.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_shrink_when_rows_get_slow_and_grow_back_to_the_cap() {
        let p = LoadPacer::new(1000, Duration::from_secs(30));
        assert_eq!(p.next_rows(), 1000, "nothing measured yet: the cap");
        // 1000 rows in 121 s: 0.12 s a row after the fixed second, 250 fit in 30 s.
        p.record(1000, Duration::from_secs(121));
        assert_eq!(p.next_rows(), 250);
        // A small load's time is mostly the fixed cost: no reason to shrink.
        p.record(3, Duration::from_millis(900));
        assert_eq!(p.next_rows(), 1000);
        // Fast again: back to the cap, never above it.
        p.record(250, Duration::from_secs(1));
        assert_eq!(p.next_rows(), 1000);
        // A row slower than the whole target: one row at a time, never zero.
        p.record(1, Duration::from_secs(61));
        assert_eq!(p.next_rows(), 1);
        let items = [1, 2, 3];
        assert_eq!(p.split_next(&items), (&items[..1], &items[1..]));
    }
}
