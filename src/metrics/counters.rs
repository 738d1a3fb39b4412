//! The per-worker counters in shared memory: one slot of words per
//! scoreboard slot, mapped by the master before it forks
//! (`sys::shared_words`). A worker adds to its own slot with relaxed
//! atomics only (a handful of `fetch_add`s per request, no lock, no system
//! call); the master reads every live slot when it is scraped, and folds a
//! slot into its retired [`Totals`] when the worker is reaped, so a dead
//! worker's counts are never lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (`le`) of the duration histograms' buckets, in
/// microseconds; a last bucket (`+Inf`) takes the rest.
pub const BUCKETS_US: [u64; 16] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];
/// Buckets of a histogram, `+Inf` included.
pub const NBUCKETS: usize = BUCKETS_US.len() + 1;

/// Status codes counted one by one: 0..=999 (a WSGI status line has three
/// digits; anything else is counted as 0).
pub const STATUS_CODES: usize = 1000;

// Where each counter lives in a slot.
const STATUS: usize = 0;
const DURATION: usize = STATUS + STATUS_CODES;
const DURATION_SUM: usize = DURATION + NBUCKETS;
const QUEUE: usize = DURATION_SUM + 1;
const QUEUE_SUM: usize = QUEUE + NBUCKETS;
/// The words above are counters that add up across workers.
const SUMMED: usize = QUEUE_SUM + 1;
const IN_FLIGHT: usize = SUMMED;
const EXIT_REASON: usize = IN_FLIGHT + 1;
/// Words per slot (rounded up to a 64-byte line).
pub const SLOT_WORDS: usize = (EXIT_REASON + 1).div_ceil(8) * 8;

/// Why a worker is about to exit on its own, as it says in its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    None = 0,
    MaxRequests = 1,
    Memory = 2,
    /// `--reload` saw a file change.
    CodeReload = 3,
}

/// The shared counters of every slot.
#[derive(Clone, Copy)]
pub struct Counters {
    words: &'static [AtomicU64],
}

impl Counters {
    /// Map `slots` slots (before any fork).
    pub fn map(slots: usize) -> std::io::Result<Counters> {
        Ok(Counters {
            words: crate::sys::shared_words(slots * SLOT_WORDS)?,
        })
    }

    pub fn slots(&self) -> usize {
        self.words.len() / SLOT_WORDS
    }

    /// Slot `i` (None past the end).
    pub fn slot(&self, i: usize) -> Option<Slot> {
        let words = self.words.get(i * SLOT_WORDS..(i + 1) * SLOT_WORDS)?;
        Some(Slot { words })
    }
}

/// One worker's counters.
#[derive(Clone, Copy)]
pub struct Slot {
    words: &'static [AtomicU64],
}

/// The histogram bucket of `us` microseconds.
pub fn bucket(us: u64) -> usize {
    BUCKETS_US.partition_point(|&b| b < us)
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

impl Slot {
    fn add(&self, w: usize, n: u64) {
        self.words[w].fetch_add(n, Ordering::Relaxed);
    }

    /// Zero the slot for a worker about to be forked.
    pub fn reset(&self) {
        for w in self.words {
            w.store(0, Ordering::Relaxed);
        }
    }

    /// One request answered with `status`, `duration` after it reached the
    /// app, having waited `queue` before that.
    pub fn record(&self, status: u16, duration: Duration, queue: Duration) {
        let code = status as usize;
        self.add(STATUS + if code < STATUS_CODES { code } else { 0 }, 1);
        let d = micros(duration);
        self.add(DURATION + bucket(d), 1);
        self.add(DURATION_SUM, d);
        let q = micros(queue);
        self.add(QUEUE + bucket(q), 1);
        self.add(QUEUE_SUM, q);
    }

    pub fn started(&self) {
        self.add(IN_FLIGHT, 1);
    }

    pub fn finished(&self) {
        self.words[IN_FLIGHT].fetch_sub(1, Ordering::Relaxed);
    }

    /// Requests dispatched and not finished yet.
    pub fn in_flight(&self) -> u64 {
        // Never negative, but a torn pair of reads must not show 2^64.
        let v = self.words[IN_FLIGHT].load(Ordering::Relaxed) as i64;
        v.max(0) as u64
    }

    pub fn set_exit_reason(&self, r: ExitReason) {
        self.words[EXIT_REASON].store(r as u64, Ordering::Relaxed);
    }

    pub fn exit_reason(&self) -> ExitReason {
        match self.words[EXIT_REASON].load(Ordering::Relaxed) {
            1 => ExitReason::MaxRequests,
            2 => ExitReason::Memory,
            3 => ExitReason::CodeReload,
            _ => ExitReason::None,
        }
    }
}

/// Counters added up: the retired workers', or everything for a scrape.
#[derive(Clone)]
pub struct Totals {
    words: Vec<u64>,
}

impl Default for Totals {
    fn default() -> Totals {
        Totals {
            words: vec![0; SUMMED],
        }
    }
}

impl Totals {
    /// Add a slot's counters.
    pub fn add_slot(&mut self, s: &Slot) {
        for (t, w) in self.words.iter_mut().zip(s.words) {
            *t = t.wrapping_add(w.load(Ordering::Relaxed));
        }
    }

    pub fn add(&mut self, other: &Totals) {
        for (t, w) in self.words.iter_mut().zip(&other.words) {
            *t = t.wrapping_add(*w);
        }
    }

    /// `(status, count)` of every code seen, in order.
    pub fn statuses(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.words[STATUS..STATUS + STATUS_CODES]
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(code, n)| (code as u16, *n))
    }

    pub fn requests(&self) -> u64 {
        self.words[STATUS..STATUS + STATUS_CODES].iter().sum()
    }

    /// Per-bucket counts (not cumulative) and the sum in microseconds.
    pub fn duration(&self) -> (&[u64], u64) {
        (
            &self.words[DURATION..DURATION + NBUCKETS],
            self.words[DURATION_SUM],
        )
    }

    pub fn queue(&self) -> (&[u64], u64) {
        (&self.words[QUEUE..QUEUE + NBUCKETS], self.words[QUEUE_SUM])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_upper_bounds() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(500), 0);
        assert_eq!(bucket(501), 1);
        assert_eq!(bucket(60_000_000), 15);
        assert_eq!(bucket(60_000_001), 16);
        assert_eq!(bucket(u64::MAX), NBUCKETS - 1);
    }

    #[test]
    fn slots_count_and_fold() {
        let c = Counters::map(3).unwrap();
        assert_eq!(c.slots(), 3);
        assert!(c.slot(3).is_none());
        let s = c.slot(1).unwrap();
        s.record(200, Duration::from_micros(700), Duration::from_micros(10));
        s.record(200, Duration::from_secs(100), Duration::ZERO);
        s.record(404, Duration::ZERO, Duration::ZERO);
        s.record(1234, Duration::ZERO, Duration::ZERO);
        s.started();
        s.started();
        s.finished();
        assert_eq!(s.in_flight(), 1);
        let mut t = Totals::default();
        t.add_slot(&s);
        t.add_slot(&c.slot(0).unwrap());
        assert_eq!(
            t.statuses().collect::<Vec<_>>(),
            [(0, 1), (200, 2), (404, 1)]
        );
        assert_eq!(t.requests(), 4);
        let (b, sum) = t.duration();
        assert_eq!((b[0], b[1], b[NBUCKETS - 1]), (2, 1, 1));
        assert_eq!(sum, 100_000_700);
        assert_eq!(
            t.queue(),
            (&[4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..], 10)
        );
        s.set_exit_reason(ExitReason::Memory);
        assert_eq!(s.exit_reason(), ExitReason::Memory);
        s.reset();
        assert_eq!(s.in_flight(), 0);
        assert_eq!(s.exit_reason(), ExitReason::None);
    }
}
