//! How a worker takes new connections: a batch per wake-up for the classes
//! that run requests concurrently, which they leave to a sibling while
//! they hold more connections than one of them (with a timer to end that
//! wait where an asyncio loop or a greenlet hub drives the engine); for
//! sync, pacing by the requests it serves, so that connections spread
//! over the workers by how fast each serves (see the constants).

use std::io;
use std::time::{Duration, Instant};

use super::conn::{ListenSock, Stream};
use super::engine::{Worker, BALANCE_TOKEN};
use crate::warning;
use crate::wsgi::Peer;

/// Connections a gthread worker accepts per wake-up. Accepting a whole
/// burst would queue it behind one busy worker while its siblings idle;
/// the rest are taken on the next turn of the loop, or by another worker.
const ACCEPT_BATCH: usize = 16;
/// A sync worker runs one request at a time, so it takes a new connection
/// only once the one it accepted last has started its first request (or
/// sent nothing for this long), as gunicorn's sync worker accepts, serves,
/// then accepts again: a burst of new connections (keep-alive clients
/// starting up) spreads over the workers by how fast each serves, instead
/// of piling up in the first one to wake while their requests are still
/// on the way.
pub(super) const FRESH_WAIT: Duration = Duration::from_millis(20);
/// A busy sync worker takes up to this many waiting connections after
/// each request it serves: every worker then takes new connections in
/// proportion to the pace it serves at, and a crowd of keep-alive clients
/// starting together is in within a few turns rather than queueing in
/// the backlog behind those already connected.
const SYNC_ACCEPT_PER_REQUEST: usize = 4;
/// A worker of a concurrent class (gthread, asgi, gevent, eventlet)
/// holding more connections than a sibling (by more
/// than `balance_slack`) leaves new ones to it for up to this long, then
/// takes them itself: every worker is woken by a new connection, and the
/// first awake would otherwise take a whole burst (keep-alive clients
/// starting together, a proxy opening its pool) while its siblings are
/// still being scheduled. Connections stay where they are accepted, so an
/// uneven start would last: half of a Flask app's throughput was lost
/// with all 50 of wrk's connections on one of two gthread workers.
const BALANCE_WAIT: Duration = Duration::from_millis(2);
/// How often a worker that sees fewer siblings than the master wants
/// looks for them again (as they boot, after TTIN, or while one stops).
const SIBLINGS_RESCAN: Duration = Duration::from_millis(20);
/// A worker at its connection limit waits this long before evicting a
/// connection for a new one, so that a sibling with room takes it first.
const LIMIT_YIELD: Duration = Duration::from_millis(1);

impl Worker {
    /// sync: the connection accepted last has started its first request,
    /// closed, or waited FRESH_WAIT: accept again.
    pub(super) fn release_fresh(&mut self) {
        self.fresh = None;
        if std::mem::take(&mut self.accept_held) {
            self.accept_more = true;
        }
    }

    /// sync, after each request: take a few waiting connections, if any
    /// (see SYNC_ACCEPT_PER_REQUEST).
    pub(super) fn accept_after_request(&mut self) {
        let before = self.live;
        for i in 0..self.listeners.len() {
            while self.listeners[i].ready && self.live - before < SYNC_ACCEPT_PER_REQUEST {
                let had = self.live;
                self.accept(i, false);
                if self.live == had {
                    break;
                }
            }
        }
    }

    /// Look up the siblings' scoreboard slots (at start and once a second:
    /// workers come and go). For the classes that run requests
    /// concurrently (gthread, asgi, gevent, eventlet).
    pub(super) fn find_siblings(&mut self) {
        self.siblings_seen_at = Instant::now();
        self.sibling_slots = if self.siblings_wanted() > 0 && self.exec.concurrent() {
            self.scoreboard.ready_siblings(self.slot)
        } else {
            Vec::new()
        };
    }

    /// How many other workers the master wants beside this one, live: a
    /// worker forked before TTIN, TTOU or a reload changed the count
    /// shares with the siblings there are now.
    pub(super) fn siblings_wanted(&self) -> usize {
        self.scoreboard.wanted().saturating_sub(1)
    }

    /// Tell the siblings how many connections this worker holds.
    pub(super) fn publish_conns(&self) {
        if !self.stopping && !self.accept_paused {
            self.scoreboard.set_conns(self.slot, self.clients());
        }
    }

    /// Whether a ready sibling that accepts holds clearly fewer
    /// connections than this worker (see BALANCE_WAIT).
    fn crowded(&self) -> bool {
        let fewest = self
            .sibling_slots
            .iter()
            .filter_map(|&s| self.scoreboard.accepting_conns(s))
            .min();
        let Some(fewest) = fewest else {
            return false;
        };
        let mine = self.clients() as u64;
        mine > fewest + balance_slack(fewest)
    }

    /// Whether to leave the connections waiting now to a sibling; starts
    /// the wait (BALANCE_WAIT) and ends it when it has run out.
    fn leave_to_sibling(&mut self) -> bool {
        // Siblings booted since the last look (after a HUP, in place of
        // ones now stopping) count from their first connection on, not a
        // second later.
        if self.siblings_seen_at.elapsed() >= SIBLINGS_RESCAN
            && self
                .sibling_slots
                .iter()
                .filter(|&&s| self.scoreboard.accepting_conns(s).is_some())
                .count()
                < self.siblings_wanted()
        {
            self.find_siblings();
        }
        if self.sibling_slots.is_empty() || !self.crowded() {
            self.defer = None;
            return false;
        }
        let now = Instant::now();
        match self.defer {
            None => {
                if !self.arm_balance_timer() {
                    return false;
                }
                self.defer = Some(now + BALANCE_WAIT);
                true
            }
            Some(until) if now < until => true,
            // The sibling did not take them in time: take them here.
            Some(_) => {
                self.defer = None;
                false
            }
        }
    }

    /// Make sure this worker looks at the listeners again when a wait for
    /// a sibling ends. gthread's turn waits at most until then; an asyncio
    /// loop or a greenlet hub runs a turn only when the engine's epoll
    /// descriptor is readable, so a timer in the epoll set makes it so.
    /// False if there is no timer to be had (then the worker does not
    /// wait: a connection must not sit until the next event).
    fn arm_balance_timer(&mut self) -> bool {
        use nix::sys::time::TimeSpec;
        use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
        if !self.exec.external_wait() {
            return true;
        }
        if self.balance_timer.is_none() {
            let made = TimerFd::new(
                ClockId::CLOCK_MONOTONIC,
                TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
            )
            .map_err(io::Error::from)
            .and_then(|t| {
                use std::os::fd::{AsFd, AsRawFd};
                self.poll.registry().register(
                    &mut mio::unix::SourceFd(&t.as_fd().as_raw_fd()),
                    BALANCE_TOKEN,
                    mio::Interest::READABLE,
                )?;
                Ok(t)
            });
            match made {
                Ok(t) => self.balance_timer = Some(t),
                Err(e) => {
                    warning!("Cannot make the accept balance timer, accepting at once: {e}");
                    return false;
                }
            }
        }
        let Some(t) = &self.balance_timer else {
            return false;
        };
        let when = Expiration::OneShot(TimeSpec::from_duration(BALANCE_WAIT));
        t.set(when, TimerSetTimeFlags::empty()).is_ok()
    }

    /// The balance timer fired: take its expiry off the descriptor (the
    /// turn then looks at the listeners, since `defer` is set).
    pub(super) fn balance_timer_fired(&mut self) {
        use std::os::fd::AsFd;
        if let Some(t) = &self.balance_timer {
            let mut buf = [0u8; 8];
            let _ = nix::unistd::read(t.as_fd(), &mut buf);
        }
    }

    /// At the connection limit, with a connection signalled on listener
    /// `li`: evict an idle or stalled connection for it, but only if it is
    /// still waiting, and, with sibling workers, still waiting after
    /// LIMIT_YIELD, so that a worker with room takes it instead and no
    /// client of this one loses its keep-alive connection for nothing.
    fn make_room(&mut self, li: usize) -> bool {
        if !self.waiting_on(li) {
            return false;
        }
        if self.siblings_wanted() > 0 {
            std::thread::sleep(LIMIT_YIELD);
            if !self.waiting_on(li) {
                return false;
            }
        }
        self.evict_one()
    }

    /// Whether a connection waits on listener `li` now (without taking it).
    fn waiting_on(&self, li: usize) -> bool {
        use std::os::fd::AsFd;
        let Some(l) = self.listeners.get(li) else {
            return false;
        };
        let fd = match &l.sock {
            ListenSock::Tcp(s) => s.as_fd(),
            ListenSock::Unix(s) => s.as_fd(),
        };
        crate::sys::wait_fd(fd, false, Duration::ZERO).unwrap_or(true)
    }

    /// Accept from listener `li`: a batch (gthread), or one connection
    /// (sync; with `hold`, only once the last one accepted has started its
    /// first request, see FRESH_WAIT).
    pub(super) fn accept(&mut self, li: usize, hold: bool) {
        if self.stopping {
            return;
        }
        let sync = !self.exec.concurrent();
        if sync && hold && self.fresh.is_some() {
            self.accept_held = true;
            return;
        }
        let batch = if sync { 1 } else { ACCEPT_BATCH };
        // Once the wait for a sibling has run out, the whole batch is taken
        // here (a sibling stuck in a request must not slow accepting to one
        // connection per wait).
        let mut balanced = sync;
        for _ in 0..batch {
            if !balanced {
                if self.leave_to_sibling() {
                    return;
                }
                balanced = self.defer.is_none() && self.crowded();
            }
            if self.clients() >= self.max_conns && !self.make_room(li) {
                self.accept_paused = true;
                self.scoreboard.stop_accepting(self.slot);
                return;
            }
            let Some(l) = self.listeners.get(li) else {
                return;
            };
            let accepted = match &l.sock {
                ListenSock::Tcp(s) => s.accept().map(|(st, addr)| {
                    let _ = st.set_nodelay(true);
                    (Stream::Tcp(st), Peer::Tcp(addr))
                }),
                ListenSock::Unix(s) => s.accept().map(|(st, _)| (Stream::Unix(st), Peer::Unix)),
            };
            if let Some(l) = self.listeners.get_mut(li) {
                l.ready = accepted.is_ok();
            }
            match accepted {
                Ok((stream, peer)) => {
                    let idx = self.add_conn(stream, peer, li, None);
                    if sync {
                        if let Some(idx) = idx {
                            self.fresh = Some((idx, Instant::now()));
                            self.accept_held = true;
                            return;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.defer = None;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: back off until a connection closes.
                    warning!("accept() failed: {e}");
                    self.accept_paused = true;
                    self.scoreboard.stop_accepting(self.slot);
                    return;
                }
            }
        }
        // The batch is used up and more may be waiting.
        self.accept_more = true;
    }
}

/// How many more connections than its least loaded sibling a worker may
/// hold and still accept: one, and an eighth more as the counts grow, so
/// that workers take turns without trading every connection.
fn balance_slack(fewest: u64) -> u64 {
    1 + fewest / 8
}
