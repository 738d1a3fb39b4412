//! The scoreboard: shared memory, mapped by the master before it forks,
//! where each worker reports its heartbeat, readiness, request count and
//! open connections (which its siblings read to share new ones out), and
//! the master says how many workers it wants;
//! and [`shared_words`], the same kind of mapping for the metrics'
//! per-worker counters (`metrics::counters` lays them out).

use std::io;
use std::sync::atomic::Ordering;

use super::monotonic_ms;

/// Shared memory the master maps before forking: one slot per worker in
/// which the worker reports its heartbeat, whether it has booted, its
/// requests and its open connections. Cheaper than gunicorn's fchmod'ed temp files
/// and readable without a syscall. A clone is another handle on the same
/// mapping, which is never unmapped.
#[derive(Clone)]
pub struct Scoreboard {
    base: std::ptr::NonNull<std::sync::atomic::AtomicU64>,
    slots: usize,
}

// SAFETY: the mapping is only accessed through atomics.
unsafe impl Send for Scoreboard {}
// SAFETY: as above; concurrent access is atomic.
unsafe impl Sync for Scoreboard {}

const SLOT_WORDS: usize = 4;
const BEAT: usize = 0;
const STATE: usize = 1;
const REQUESTS: usize = 2;
const CONNS: usize = 3;

/// A worker's state as seen in its slot.
pub const SLOT_BOOTING: u64 = 0;
pub const SLOT_READY: u64 = 1;
/// The worker has exited (the slot is free until the next fork).
const SLOT_GONE: u64 = 2;
/// The open-connections word of a worker that takes no more (it stops).
const NOT_ACCEPTING: u64 = u64::MAX;

impl Scoreboard {
    pub fn new(slots: usize) -> io::Result<Scoreboard> {
        // The slots, then one word for the master: the workers it wants.
        let len = std::num::NonZeroUsize::new((slots * SLOT_WORDS + 1) * 8)
            .ok_or_else(|| io::Error::other("empty scoreboard"))?;
        // SAFETY: a fresh anonymous mapping aliases no Rust object; it is
        // zero-filled, which is a valid AtomicU64 bit pattern, and stays
        // mapped for the life of the process (never unmapped).
        let ptr = unsafe {
            nix::sys::mman::mmap_anonymous(
                None,
                len,
                nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
                nix::sys::mman::MapFlags::MAP_SHARED,
            )
        }?;
        Ok(Scoreboard {
            base: ptr.cast(),
            slots,
        })
    }

    fn word(&self, slot: usize, w: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(slot < self.slots, "scoreboard slot out of range");
        // SAFETY: the index is within the mapping (checked above), the
        // mapping is aligned (page-aligned) and lives forever.
        unsafe { &*self.base.as_ptr().add(slot * SLOT_WORDS + w) }
    }

    /// The master's word, after the slots.
    fn wanted_word(&self) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: the mapping holds `slots * SLOT_WORDS + 1` words (see
        // `new`), aligned, and lives forever.
        unsafe { &*self.base.as_ptr().add(self.slots * SLOT_WORDS) }
    }

    /// The master wants `n` workers (at start, TTIN, TTOU, a reload,
    /// WINCH): workers forked before the change read it to know how many
    /// siblings to share connections with.
    pub fn set_wanted(&self, n: usize) {
        self.wanted_word().store(n as u64, Ordering::Relaxed);
    }

    /// How many workers the master wants now.
    pub fn wanted(&self) -> usize {
        self.wanted_word().load(Ordering::Relaxed) as usize
    }

    /// The heartbeat word of `slot`, for a request that reports its own
    /// progress (see `wsgi::Progress`).
    pub fn beat_cell(&self, slot: usize) -> &'static std::sync::atomic::AtomicU64 {
        assert!(slot < self.slots, "scoreboard slot out of range");
        // SAFETY: as in `word`; the mapping is never unmapped, so the
        // reference is valid for the rest of the process.
        unsafe { &*self.base.as_ptr().add(slot * SLOT_WORDS + BEAT) }
    }

    /// Reset a slot for a worker about to be forked.
    pub fn reset(&self, slot: usize) {
        self.word(slot, BEAT)
            .store(monotonic_ms(), Ordering::SeqCst);
        self.word(slot, STATE).store(SLOT_BOOTING, Ordering::SeqCst);
        self.word(slot, REQUESTS).store(0, Ordering::SeqCst);
        self.word(slot, CONNS).store(0, Ordering::SeqCst);
    }

    /// The worker in `slot` has exited: its siblings stop counting on it.
    pub fn vacate(&self, slot: usize) {
        self.word(slot, STATE).store(SLOT_GONE, Ordering::SeqCst);
        self.word(slot, CONNS).store(0, Ordering::SeqCst);
    }

    /// The worker in `slot` has `n` connections open.
    pub fn set_conns(&self, slot: usize, n: usize) {
        self.word(slot, CONNS).store(n as u64, Ordering::Relaxed);
    }

    /// The worker in `slot` takes no new connections (it is stopping).
    pub fn stop_accepting(&self, slot: usize) {
        self.word(slot, CONNS)
            .store(NOT_ACCEPTING, Ordering::Relaxed);
    }

    /// Connections open in the worker in `slot`, if it is ready and takes
    /// new ones.
    pub fn accepting_conns(&self, slot: usize) -> Option<u64> {
        if !self.is_ready(slot) {
            return None;
        }
        let n = self.word(slot, CONNS).load(Ordering::Relaxed);
        (n != NOT_ACCEPTING).then_some(n)
    }

    /// The slots of the ready workers other than `me`.
    pub fn ready_siblings(&self, me: usize) -> Vec<usize> {
        (0..self.slots)
            .filter(|&s| s != me && self.is_ready(s))
            .collect()
    }

    /// A worker finished one more request.
    pub fn count_request(&self, slot: usize) {
        self.word(slot, REQUESTS).fetch_add(1, Ordering::Relaxed);
    }

    /// Requests the worker in `slot` has finished.
    pub fn requests(&self, slot: usize) -> u64 {
        self.word(slot, REQUESTS).load(Ordering::Relaxed)
    }

    pub fn beat(&self, slot: usize) {
        self.word(slot, BEAT)
            .store(monotonic_ms(), Ordering::Relaxed);
    }

    /// A heartbeat dated `ms` (CLOCK_MONOTONIC, as `monotonic_ms`), which
    /// may be in the past: a gthread worker reports when its oldest running
    /// request started, so one stuck thread still trips the timeout.
    pub fn beat_at(&self, slot: usize, ms: u64) {
        self.word(slot, BEAT).store(ms, Ordering::Relaxed);
    }

    pub fn set_ready(&self, slot: usize) {
        self.beat(slot);
        self.word(slot, STATE).store(SLOT_READY, Ordering::SeqCst);
    }

    pub fn last_beat(&self, slot: usize) -> u64 {
        self.word(slot, BEAT).load(Ordering::Relaxed)
    }

    pub fn is_ready(&self, slot: usize) -> bool {
        self.word(slot, STATE).load(Ordering::SeqCst) == SLOT_READY
    }
}

/// `n` zeroed words of shared memory that every process forked after this
/// call sees (the metrics' per-worker counters). Mapped once, never
/// unmapped: the slice lives as long as the process.
pub fn shared_words(n: usize) -> io::Result<&'static [std::sync::atomic::AtomicU64]> {
    let len = std::num::NonZeroUsize::new(n * 8)
        .ok_or_else(|| io::Error::other("empty shared mapping"))?;
    // SAFETY: a fresh anonymous shared mapping aliases no Rust object; it
    // is zero-filled (a valid AtomicU64 bit pattern), page-aligned, `n`
    // words long, and never unmapped, so a 'static slice over it is valid
    // and every access goes through the atomics.
    unsafe {
        let ptr = nix::sys::mman::mmap_anonymous(
            None,
            len,
            nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
            nix::sys::mman::MapFlags::MAP_SHARED,
        )?;
        Ok(std::slice::from_raw_parts(
            ptr.cast::<std::sync::atomic::AtomicU64>().as_ptr(),
            n,
        ))
    }
}
