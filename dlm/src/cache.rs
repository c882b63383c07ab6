//! Cached locks: one DLM lock kept across many local uses, given up when
//! another holder asks for it ([`Lockspace::cached`], [`CachedLock`]).
//!
//! A program that takes the same cluster lock thousands of times, while
//! other nodes want it rarely, pays a kernel round trip (and, for a remote
//! master, a network round trip) on every take and every release. A
//! [`CachedLock`] keeps the DLM lock after the local user is done, as
//! GFS2's glocks and OCFS2's dlmglue do: local holders are served from it
//! while its mode covers theirs, with no system call, and the lock is
//! given up when a blocking notification says another holder waits (or,
//! while the lock is contended, at the local release, without waiting to
//! be asked: see [`CacheOptions::min_hold`]).
//!
//! # How it works
//! The cache owns one [`LockGuard`] on its resource, requested with
//! [`LockOptions::notify_blocking`] (and [`LockOptions::lvb`] when the
//! cache keeps the value block). A local take ([`CachedLock::lock`] and
//! its family) returns a [`CachedGuard`]:
//! - a **hit**: the DLM lock's mode covers the local mode and the local
//!   holders are compatible with it: the guard is handed out under one
//!   uncontended mutex, with no system call and no allocation;
//! - a **take**: the DLM lock is converted up (`dlm_ls_lock` with
//!   `LKF_CONVERT`) from a granted mode, or requested anew when the cache
//!   holds none or holds it in NL (the kernel serves conversions before new
//!   requests, so conversions up from NL would starve other holders' new
//!   requests; the NL lock is unlocked once the new one is granted and given up), by the
//!   local taker's own thread (or task), which is then served first; the
//!   value block is read then;
//! - a **wait**: local holders in incompatible modes, a conversion by
//!   another local taker, or a give-up under way;
//! - an **early request**: the lock is being drained or given up (to NL),
//!   and the take needs a mode the old one excludes: the taker requests
//!   the lock anew at once (a second DLM lock, queued behind the waiter
//!   the cache gives the lock up to) instead of after the give-up has
//!   answered; it installs the new lock as the cache's once the give-up
//!   has answered, and is served first. One such request at a time in
//!   the state machine (a request of a dropped future is cancelled in the
//!   background: the kernel may still hold it queued, or briefly granted,
//!   until the cancel or the unlock lands, and the next request queues
//!   behind it; nothing is served from it); a `no_wait` take never makes
//!   one (the cache's own lock would refuse it). Only a take in a mode the
//!   old lock excludes makes one: a compatible take (PR after PR) waits
//!   for the give-up's answer.
//!
//! One helper thread per cache (`dlm-cache`) waits for the DLM lock's
//! blocking notifications. When one comes, the cache goes on serving local
//! holders for the rest of the [minimum hold time](CacheOptions::min_hold)
//! if one was set (by default none: the cache adapts to contention
//! instead, giving the lock up at local releases while it is contended,
//! see [`CacheOptions::min_hold`]), then stops
//! serving new local holders (so a remote waiter is not starved), waits for
//! the local ones to finish, and gives the lock up (a local take or
//! release that finds the notification, unread or not, with no local holder
//! left starts the drain itself and wakes the helper: the cache stops
//! serving one thread hop sooner; a *blocking* take, or the release of a
//! blocking take's guard, then gives the lock up itself, on its own
//! thread, as a plain [`LockGuard`]'s drop unlocks: the waiter is granted
//! without waiting for the helper to run; a future's take or release
//! never does, so that no executor thread makes a DLM call the kernel can
//! hold up for a whole recovery): converts it down to NL
//! (publishing a value set by a local holder) or unlocks it, as
//! [configured](GiveUp). libdlm's threaded library drops the mode the
//! waiter asked for (see the crate's notes on libdlm), so the lock goes
//! down to NL: the state machine knows how to go down only as far as a
//! waiter needs, when a notification carries its mode. The next local take
//! is a new request, queued behind the waiter that caused the give-up, and
//! sent as soon as the take comes when it comes while the give-up is still
//! under way and its mode is one the old lock excludes (an early request,
//! above) (a
//! lock given up to a mode above NL is converted up instead; the kernel
//! grants conversions before new requests, so that one does not queue
//! behind new requests). Each take from NL costs a request and the
//! unlock of the NL lock, which nobody waits for: written right after the
//! next give-up has answered, by whoever made it (the helper, or a
//! blocking caller), off the path of the take and of the waiter; and a
//! `no_wait` take from NL is
//! refused whenever another request is queued, not only when an
//! incompatible lock is granted.
//!
//! The helper thread also gives the lock up after it was unused for
//! [`CacheOptions::idle_release`], and unlocks it when the [`CachedLock`]
//! is dropped and its last local guard is gone.
//!
//! # The state machine
//! Every transition is one function of `Machine` (private), a plain value kept
//! under the cache's mutex; the DLM calls are made outside it, by whoever
//! the transition named (the *actor*). The phases:
//!
//! | from | to | by | function | when |
//! |---|---|---|---|---|
//! | `Serving` | `Serving` | local taker | `take` → `Hit` | the DLM mode covers the local mode, the local holders are compatible |
//! | `Serving` | `ConvertingUp` | local taker | `take` → `ConvertUp` | the DLM mode does not cover the local mode, no notification is pending and no early request is in flight: the taker converts up (from a mode above NL) or requests the lock anew (none held, or NL); meanwhile only modes compatible with the taker's are served from the old mode; during a contended stretch (see the `release` rows) a new request made with no local holder or waiter is made without blocking notifications (`take_unasked`) |
//! | `ConvertingUp` | `Serving` (`Draining`) | the converting taker | `converted` | the conversion's answer (granted or not: the DLM mode is what the kernel holds); when granted, the converting taker is served in the same step, so a notification cannot drain the lock before the take that paid for it; a lock requested without notifications then drains in that step (`after_grant`): it serves nobody else and is given up at its taker's release, so nobody elsewhere waits for a notification that never comes |
//! | `Draining`, `GivingUp` | same | local taker | `take` → `Early` | not `no_wait`, no early request in flight, the lock goes down to NL and the old mode excludes the taker's: the taker requests a new lock now (the second slot); other takes wait (NL takes are served once the lock is given up to NL) |
//! | `Serving` | `Serving` (`Draining`) | the early taker | `early_granted` | its request was granted and the give-up has answered (`early_installable`): the new lock replaces the old (unlocked after the next give-up), the taker is served in the same step (and a lock requested without notifications drains, as after `converted`) |
//! | `Draining`, `GivingUp`, `Serving` | same | the early taker | `early_failed` | its request failed or was cancelled: the slot is free |
//! | `Serving`, `ConvertingUp` | same | helper thread; a local taker or releaser (`drain_here`) that reads it from the channel; a taker whose conversion was refused as a deadlock | `notify` | a blocking notification of the lock held now (one left unread in the channel of a replaced lock is dropped): remembered, new local holders are still served |
//! | `Serving` | `Draining` | helper thread, or a local taker or releaser that finds no local holder | `start_drain` | a notification is pending (a local caller also reads one waiting unread in the helper's channel) and the minimum hold time has passed: no new local holders; a local caller then wakes the helper to give the lock up |
//! | `Draining` | `GivingUp` | helper thread, or a blocking take or the release of a blocking take's guard that finds no local holder (`give_up_here`) | `begin_give_up` | the last local holder is gone |
//! | `Serving` | `GivingUp` | helper thread | `begin_idle_release` | no local holder, and unused for the idle time |
//! | `GivingUp` | `Serving` | whoever began the give-up | `given_up` | the conversion down (or unlock) answered |
//! | any | any | local holder | `release` | a local guard dropped: says whether waiters or the helper must be woken |
//! | `Serving` | `Draining` | local holder | `release` | the last local holder of a contended lock (no minimum hold; another holder asked within 4 local uses of the take, and the stretch that began, 1, 4, 16 or 64 releases, is not over), no notification pending and no local taker waiting: the lock is given up without waiting to be asked. A notification within 4 uses starts a stretch only when none is under way (a stretch's locks serve one use each, so every request landing meanwhile looks contended); one after more uses ends it |
//! | `Serving`, `Draining` | `Closed` | helper thread | `begin_close` | the [`CachedLock`] was dropped, the last local guard is gone and no early request is in flight: the helper unlocks |
//!
//! The invariants, checked by the unit tests and by the loom model
//! (`--cfg dlm_loom`, every interleaving of local takes, releases and
//! notifications, of the helper's loop, failed early requests, `no_wait`
//! takes, the minimum hold, idle releases and close; the larger scenarios
//! with a preemption bound): local holders are pairwise compatible; each is covered
//! by the DLM mode; no local holder exists while the lock is given up or
//! closed; once `Draining`, no new local holder is served until the lock
//! was given up; an early request exists only while the lock is drained,
//! given up, or held in NL (so the kernel cannot grant it beside a lock
//! the cache still serves from), and no conversion up is started beside
//! it; every waiter is woken by the transition that lets it go on.
//!
//! # Value blocks
//! With [`CacheOptions::lvb`] the DLM lock is requested with `LKF_VALBLK`:
//! the value block is read once per take of the DLM lock (a new request or
//! an up-conversion) and served to local holders from memory
//! ([`CachedGuard::lvb`]). A local PW or EX holder's
//! [`set_lvb`](CachedGuard::set_lvb) is stored in the cache when the guard
//! is released (not when it panics) and published to the DLM when the
//! cache gives the lock up (the conversion down from PW/EX writes it),
//! or when the cache closes. So a counter kept in the value block costs no
//! kernel call per local update, and **a reader elsewhere sees the value
//! as of the last give-up**: a reader that takes the lock in PR or
//! stronger makes this cache give it up first (its request blocks on the
//! cache's lock), so it always sees every update made before; a reader
//! that holds NL or CR, which the cache's PW/EX lock does not block, sees
//! an older value.
//!
//! # Failures
//! - **Conversion deadlock converting up** (two holders of PR both
//!   converting to EX): the DLM refuses one conversion with `EDEADLK`; the
//!   local take fails with [`Error::Deadlock`], the cache still holds its
//!   old mode and counts the refusal as a blocking notification (the other
//!   holder's own may still be on its way): it gives the lock up as soon as
//!   its local holders are done, and a take tried again waits for that,
//!   then requests the lock anew behind the other holder. The cache avoids most such
//!   deadlocks by itself: a take that needs a conversion while a
//!   notification is pending waits for the give-up instead of converting.
//! - **Lockspace gone or stopped**: takes fail with
//!   [`Error::LockspaceGone`] or [`Error::LockspaceStopped`], hits
//!   included (each take checks the handle's health: atomic loads, no
//!   system call); local guards already handed out stay valid as values,
//!   but the DLM lock behind them is gone with the lockspace.
//! - **A panic in a local holder**: its guard is released by the unwinding
//!   (no poisoning: the DLM lock is still consistent); a value it set with
//!   [`set_lvb`](CachedGuard::set_lvb) is dropped, not published. As any
//!   release of a blocking take's guard, that release may give the DLM
//!   lock up on the unwinding thread (a conversion down that waits for its
//!   answer, as a [`LockGuard`]'s drop unlocks).
//! - **The cache dropped while local guards live**: the guards keep the
//!   cache's state alive; the DLM lock is unlocked (publishing a pending
//!   value) when the last of them is released, whose drop waits for that
//!   (so the lockspace handle is free when it returns).
//! - **Fork**: in a child, takes fail with [`Error::Forked`] (the DLM lock
//!   is the parent's), and dropping the child's copies does nothing to the
//!   parent's lock.
//!
//! # Costs and limits
//! One helper thread per cache. Waiting local takers are woken through a
//! condition variable (threads) or their wakers (tasks); a local wait, like
//! every untimed wait of the crate, ends with [`Error::LockspaceGone`] when
//! the lockspace goes. DLM locks are not re-entrant and neither is the
//! cache: a thread that holds a local guard and asks for an incompatible
//! mode waits for itself (use a timeout or [`CachedLock::try_lock`]). On a
//! poll-mode handle blocking notifications arrive only while the program
//! dispatches.

use crate::error::{Error, Result};
use crate::flags::LockFlags;
use crate::guard::LockGuard;
use crate::lockspace::Lockspace;
use crate::lvb::{Lvb, LVB_LEN};
use crate::mode::Mode;
use crate::options::LockOptions;
use crate::BlockingReceiver;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Default [`CacheOptions::min_hold`]: zero, so the cache adapts to
/// contention instead (see [`CacheOptions::min_hold`]). GFS2 holds its
/// glocks 10 ms at least; OCFS2's dlmglue, like this default, holds none.
pub const DEFAULT_MIN_HOLD: Duration = Duration::ZERO;

/// Default [`CacheOptions::idle_release`]: 5 s.
pub const DEFAULT_IDLE_RELEASE: Duration = Duration::from_secs(5);

/// How a cache gives its DLM lock up when another holder asks for it
/// ([`CacheOptions::give_up`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GiveUp {
    /// Convert the lock down (`dlm_ls_lock` with `LKF_CONVERT`), to NL
    /// unless the waiter's mode is known: the lock (and the resource's
    /// value block) stays; the next take is a new request (the NL lock is
    /// unlocked after the new lock's first give-up), or a conversion up
    /// when the lock was given up to a mode above NL. The default.
    #[default]
    ConvertDown,
    /// Unlock it (first converted to NL when a value must be published,
    /// then `dlm_ls_unlock`): the kernel forgets the lock; the next take is
    /// a new request. When no other lock on the resource exists anywhere,
    /// the DLM frees its value block.
    Unlock,
}

/// The settings of a cached lock ([`Lockspace::cached`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOptions {
    lvb: bool,
    min_hold: Duration,
    idle_release: Option<Duration>,
    give_up: GiveUp,
}

impl Default for CacheOptions {
    fn default() -> CacheOptions {
        CacheOptions::new()
    }
}

impl CacheOptions {
    /// The defaults: no value block, [`DEFAULT_MIN_HOLD`],
    /// [`DEFAULT_IDLE_RELEASE`], [`GiveUp::ConvertDown`].
    pub fn new() -> CacheOptions {
        CacheOptions {
            lvb: false,
            min_hold: DEFAULT_MIN_HOLD,
            idle_release: Some(DEFAULT_IDLE_RELEASE),
            give_up: GiveUp::ConvertDown,
        }
    }

    /// Keep the resource's value block (`LKF_VALBLK` on every request and
    /// conversion of the DLM lock): see the module docs on value blocks.
    pub fn lvb(mut self) -> CacheOptions {
        self.lvb = true;
        self
    }

    /// How long the DLM lock is kept, after it was taken, before a
    /// blocking notification stops the cache from serving new local
    /// holders. The default, `Duration::ZERO` ([`DEFAULT_MIN_HOLD`]),
    /// gives it up as soon as the local holders are done, and **adapts to
    /// contention**: when another holder asks for the lock within a few
    /// local uses of its take (4), the lock is contended, and the cache
    /// gives it up at its next local releases that leave no local holder
    /// and no local taker waiting, without waiting to be asked (as plain
    /// locks are released), for a stretch of releases (1 at first) that
    /// grows fourfold (up to 64) while the contention lasts, and ends when
    /// a request comes after more local uses (the end of each stretch
    /// keeps the lock once, to see whether another holder still asks: a
    /// notification's round trip for that waiter). During a stretch the cache
    /// requests the lock (when no other local taker shares or waits for
    /// it) without blocking notifications: it serves that one take and is
    /// given up at its release, so the kernel has no notification to send
    /// and this process none to read. So a waiter elsewhere is granted as
    /// soon as the local user is done, with no notification's round trip
    /// first, and a lock used mostly here is kept.
    ///
    /// A minimum hold above zero turns the adaptation off and keeps the
    /// lock for that long after each take, serving every local take that
    /// comes meanwhile, whether or not it is of use to the program: more
    /// local takes per hand-over when nodes hammer one lock, at the cost
    /// of the remote waiter's latency. When nodes hand the lock over in
    /// turns (each waits for the other's turn, retaking the lock to look),
    /// every turn then costs at least the minimum hold time, since the
    /// node that had its turn keeps the lock for it while the other waits
    /// (case 10 of `ci/bench`: about 14x the plain locks' time per
    /// hand-over with 10 ms).
    pub fn min_hold(mut self, min_hold: Duration) -> CacheOptions {
        self.min_hold = min_hold;
        self
    }

    /// Give the DLM lock up (as [`give_up`](Self::give_up) says) after it
    /// was unused for `idle`; `None` keeps it until another holder asks.
    pub fn idle_release(mut self, idle: Option<Duration>) -> CacheOptions {
        self.idle_release = idle;
        self
    }

    /// How the lock is given up ([`GiveUp`]).
    pub fn give_up(mut self, how: GiveUp) -> CacheOptions {
        self.give_up = how;
        self
    }
}

// ---------------------------------------------------------------------------
// The state machine (no DLM call, no clock, no lock: loom checks it).

/// Whether a DLM lock held in `held` lets this process serve a local
/// holder in `local`: every mode another holder may have next to `held`
/// is one it may have next to `local`.
pub(crate) fn covers(held: Mode, local: Mode) -> bool {
    Mode::ALL
        .iter()
        .all(|&x| !held.is_compatible(x) || local.is_compatible(x))
}

/// The weakest mode covering both `a` and `b`.
pub(crate) fn join(a: Mode, b: Mode) -> Mode {
    Mode::ALL
        .iter()
        .copied()
        .find(|&m| covers(m, a) && covers(m, b))
        .unwrap_or(Mode::Ex)
}

/// The strongest mode covered by `held` that a waiter in `waiter` can
/// share (NL when the waiter's mode is unknown).
pub(crate) fn give_up_target(held: Mode, waiter: Option<Mode>) -> Mode {
    let Some(waiter) = waiter else {
        return Mode::Nl;
    };
    Mode::ALL
        .iter()
        .rev()
        .copied()
        .find(|&m| covers(held, m) && m.is_compatible(waiter))
        .unwrap_or(Mode::Nl)
}

/// The cache's phase (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Serving,
    ConvertingUp,
    Draining,
    GivingUp,
    Closed,
}

/// What a local take must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// Served: the caller is a local holder.
    Hit,
    /// The caller converts the DLM lock up to this mode, then tries again.
    ConvertUp(Mode),
    /// The caller requests a new DLM lock in this mode now, while the
    /// cache's lock is drained or given up (the second lock slot): the
    /// kernel grants it once that lock is down, and the caller installs it
    /// ([`Machine::early_granted`]) once the give-up has answered.
    Early(Mode),
    /// The caller waits for a change and tries again.
    Wait,
    /// The cache is closed.
    Closed,
}

/// Whom a release must wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Wake {
    /// Local takers wait.
    pub(crate) waiters: bool,
    /// The helper thread can now give the lock up or close.
    pub(crate) helper: bool,
    /// This release began giving the lock up because it is contended
    /// ([`Machine::release`]).
    pub(crate) contended: bool,
}

/// The cache's state: the DLM lock's mode, the phase, the local holders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Machine {
    /// The mode the DLM lock is granted in (NL: none held, or NL).
    held: Mode,
    phase: Phase,
    /// Local holders, by mode.
    holders: [u32; 6],
    /// A blocking notification not yet acted on, with the waiter's mode
    /// when known.
    notified: Option<Option<Mode>>,
    /// The `CachedLock` was dropped.
    closing: bool,
    /// While `ConvertingUp`: the mode of the take that converts. Only
    /// modes compatible with it are served meanwhile, so that the
    /// conversion's answer can serve it (see `converted`).
    converting: Option<Mode>,
    /// A new request a local taker made while the lock was drained or
    /// given up, in this mode (at most one: the second lock slot). Only a
    /// mode the old lock's mode excludes, with the lock going down to NL:
    /// the kernel cannot grant it before the old lock is down.
    early: Option<Mode>,
    /// Local takers waiting: threads.
    pub(crate) waiting: u32,
    /// Local takers waiting: some task registered its waker since the
    /// last change (`Shared::changed` wakes them all).
    pub(crate) tasks_waiting: bool,
    /// Whether the lock is given up at local releases under contention
    /// (no minimum hold time): see [`Machine::notify`].
    adaptive: bool,
    /// Local holders served since the DLM lock was last taken (saturating).
    uses: u32,
    /// Releases still to give the lock up at once (contended).
    eager: u32,
    /// The length of the next contended stretch.
    streak: u32,
    /// The conversion up under way (from NL: a new request) is made
    /// without blocking notifications ([`Machine::unasked`]).
    converting_unasked: bool,
    /// The early request in flight is made without blocking
    /// notifications.
    early_unasked: bool,
    /// The DLM lock held now was requested without blocking notifications:
    /// it serves only the take that made it and is given up at its
    /// release.
    held_unasked: bool,
    /// The drain under way was started unasked (a contended release, or a
    /// lock without notifications): its give-up counts as
    /// [`CacheStats::contended_releases`].
    drain_unasked: bool,
}

/// A notification that comes within this many local holders of taking the
/// DLM lock means contention ([`Machine::notify`]).
pub(crate) const CONTENDED_USES: u32 = 4;

/// The longest contended stretch, in local releases.
pub(crate) const MAX_STREAK: u32 = 64;

/// The first contended stretch, in local releases ([`Machine::notify`]).
pub(crate) const FIRST_STREAK: u32 = 1;

/// How much each stretch grows on the last while contention lasts: 1, 4,
/// 16, 64 end four times in each node's 50 turns of a round of case 10 of
/// `ci/bench` (each end a notification's round trip for the waiter),
/// where doubling ended six times. A first stretch of 4 (three ends)
/// measured the same there, and cost a lock asked for now and then many
/// more give-ups (a false alarm, an ask soon after a take by chance, cost
/// 4): `random_asks_keep_a_mostly_local_lock`.
pub(crate) const STREAK_GROWTH: u32 = 4;

impl Default for Machine {
    fn default() -> Machine {
        Machine::new()
    }
}

impl Machine {
    /// No DLM lock, serving.
    pub(crate) fn new() -> Machine {
        Machine {
            held: Mode::Nl,
            phase: Phase::Serving,
            holders: [0; 6],
            notified: None,
            closing: false,
            converting: None,
            early: None,
            waiting: 0,
            tasks_waiting: false,
            adaptive: false,
            uses: 0,
            eager: 0,
            streak: FIRST_STREAK,
            converting_unasked: false,
            early_unasked: false,
            held_unasked: false,
            drain_unasked: false,
        }
    }

    /// A machine that gives the lock up at local releases under
    /// contention (a cache with no minimum hold time).
    pub(crate) fn adaptive() -> Machine {
        Machine {
            adaptive: true,
            ..Machine::new()
        }
    }

    /// Local releases still to give the lock up at once.
    #[cfg(test)]
    pub(crate) fn eager(&self) -> u32 {
        self.eager
    }

    /// Whether local takers (threads or tasks) wait.
    fn others_wait(&self) -> bool {
        self.waiting > 0 || self.tasks_waiting
    }

    /// One more local holder served.
    fn serve(&mut self, mode: Mode) {
        self.holders[mode as usize] += 1;
        self.uses = self.uses.saturating_add(1);
        if self.uses == CONTENDED_USES + 1 {
            // The lock paid off here: contention, if it comes back,
            // starts a short stretch again.
            self.streak = FIRST_STREAK;
        }
    }

    /// A new request to make now (a take from NL that no local holder or
    /// waiter shares, or an early request) while the lock is contended:
    /// it is made without blocking notifications (one stretch release
    /// fewer). The kernel then sends none to it (no message, no thread
    /// woken here), and none is needed: the lock serves only its taker
    /// and is given up at its release ([`Machine::converted`]).
    fn take_unasked(&mut self) -> bool {
        if self.adaptive && self.eager > 0 && self.holders() == 0 && !self.others_wait() {
            self.eager -= 1;
            true
        } else {
            false
        }
    }

    /// Whether the request the last take was told to make
    /// ([`Take::ConvertUp`] from NL, or [`Take::Early`]) must be made
    /// without blocking notifications (see [`Machine::take_unasked`]).
    pub(crate) fn unasked(&self, early: bool) -> bool {
        if early {
            self.early_unasked
        } else {
            self.converting_unasked
        }
    }

    /// After a grant that served its taker: a lock requested without
    /// notifications serves nobody else and is given up at its release.
    fn after_grant(&mut self, unasked: bool) {
        self.held_unasked = unasked && self.held != Mode::Nl;
        if self.held_unasked {
            self.notified = Some(None);
            self.phase = Phase::Draining;
            self.drain_unasked = true;
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    pub(crate) fn held(&self) -> Mode {
        self.held
    }

    pub(crate) fn notified(&self) -> bool {
        self.notified.is_some()
    }

    /// The number of local holders.
    pub(crate) fn holders(&self) -> u32 {
        self.holders.iter().sum()
    }

    fn locally_compatible(&self, mode: Mode) -> bool {
        Mode::ALL
            .iter()
            .all(|&m| self.holders[m as usize] == 0 || m.is_compatible(mode))
    }

    /// A local take in `mode` that may wait (and so may request the lock
    /// early: see [`Take::Early`]).
    #[cfg(test)]
    pub(crate) fn take(&mut self, mode: Mode) -> Take {
        self.take_with(mode, true)
    }

    /// A local take in `mode`; `may_request` false (a take that must not
    /// wait) never gets [`Take::Early`]: its new request would be refused
    /// at once by the cache's own lock.
    pub(crate) fn take_with(&mut self, mode: Mode, may_request: bool) -> Take {
        if self.closing || self.phase == Phase::Closed {
            return Take::Closed;
        }
        match self.phase {
            Phase::Serving | Phase::ConvertingUp if covers(self.held, mode) => {
                let beside_taker = self.converting.is_none_or(|c| c.is_compatible(mode));
                if self.locally_compatible(mode) && beside_taker {
                    self.serve(mode);
                    Take::Hit
                } else {
                    Take::Wait
                }
            }
            Phase::Serving if self.notified.is_none() && self.early.is_none() => {
                self.converting_unasked = self.held == Mode::Nl && self.take_unasked();
                self.phase = Phase::ConvertingUp;
                self.converting = Some(mode);
                // Cover the local holders too: they keep their access.
                let mut target = join(self.held, mode);
                for m in Mode::ALL {
                    if self.holders[m as usize] > 0 {
                        target = join(target, m);
                    }
                }
                Take::ConvertUp(target)
            }
            // The lock is going down to NL and the take needs it back in
            // a mode the old one excludes: request it now, queued behind
            // the waiter that caused the give-up, rather than after the
            // give-up's answer (a round trip and two thread hops later).
            Phase::Draining | Phase::GivingUp
                if may_request
                    && self.early.is_none()
                    && !self.held.is_compatible(mode)
                    && give_up_target(self.held, self.notified.flatten()) == Mode::Nl =>
            {
                self.early = Some(mode);
                self.early_unasked = self.take_unasked();
                Take::Early(mode)
            }
            _ => Take::Wait,
        }
    }

    /// Whether a granted early request can replace the cache's lock now:
    /// the give-up has answered.
    pub(crate) fn early_installable(&self) -> bool {
        self.phase == Phase::Serving
    }

    /// The early request failed or was cancelled (nothing was granted):
    /// the slot is free.
    pub(crate) fn early_failed(&mut self) {
        self.early = None;
        self.early_unasked = false;
    }

    /// The early request, granted in `held`, is the cache's DLM lock now
    /// (the old one, given up, is unlocked); the taker in `taker` is
    /// served in the same step (returns `true`), as after a conversion
    /// up ([`converted`](Self::converted)).
    pub(crate) fn early_granted(&mut self, held: Mode, taker: Mode) -> bool {
        debug_assert!(self.early_installable() && self.early.is_some());
        debug_assert_eq!(self.held, Mode::Nl);
        let unasked = std::mem::take(&mut self.early_unasked);
        self.early = None;
        self.held = held;
        self.notified = None;
        self.uses = 0;
        if covers(held, taker) && self.locally_compatible(taker) {
            self.serve(taker);
            self.after_grant(unasked);
            true
        } else {
            self.after_grant(unasked);
            false
        }
    }

    /// The conversion up answered; the DLM lock is now held in `held`.
    /// `taker` is the mode of the local take that converted, when its
    /// conversion was granted: that taker is served at once (returns
    /// `true`), before the helper can start a drain. Without this, a
    /// notification that arrived during the conversion (with a minimum
    /// hold time of zero) had the helper drain and give the lock up
    /// before the taker looked again, and the taker converted up again,
    /// for ever: every conversion must serve the take that made it.
    pub(crate) fn converted(&mut self, held: Mode, taker: Option<Mode>) -> bool {
        debug_assert_eq!(self.phase, Phase::ConvertingUp);
        let unasked = std::mem::take(&mut self.converting_unasked);
        self.held = held;
        self.phase = Phase::Serving;
        self.converting = None;
        if held == Mode::Nl {
            self.notified = None;
        }
        match taker {
            Some(mode) if covers(held, mode) && self.locally_compatible(mode) => {
                self.uses = 0;
                self.serve(mode);
                self.after_grant(unasked);
                true
            }
            _ => {
                self.after_grant(unasked);
                false
            }
        }
    }

    /// A blocking notification (with the waiter's mode when known).
    /// Returns whether it was taken into account.
    pub(crate) fn notify(&mut self, waiter: Option<Mode>) -> bool {
        // While converting up, `held` is still the old mode: the
        // notification may be for the conversion being granted (from a
        // mode above NL; from NL the take is a new lock with a channel of
        // its own, which the helper reads once the taker installed it, and
        // the old NL lock is never notified: it blocks nobody) (the grant
        // and the notification arrive back to back, and the helper may see
        // the notification before the converting taker records the grant).
        // It is kept; `converted` forgets it if the lock ends at NL. The
        // kernel sends one notification per grant, so one dropped here
        // left the lock with the cache until its last user went (seen in
        // ci/scenarios/13-cached-locks.sh: waiters on the other node held
        // up for 9.8 s).
        let relevant = match self.phase {
            Phase::ConvertingUp => true,
            Phase::Serving => self.held != Mode::Nl,
            _ => false,
        };
        if !relevant {
            return false;
        }
        if self.adaptive && self.notified.is_none() {
            // Another holder asked within a few local uses of the take:
            // the lock is contended, and keeping it after the local
            // holders are done would only make the next waiter ask (a
            // round trip) before it is given up. Give it up at the next
            // releases, as plain locks are, for a stretch that grows
            // fourfold while the contention lasts (each stretch's end
            // costs the next waiter a notification's round trip: the
            // fewer ends, the better, while a false alarm stays cheap and
            // a burst of contention ends soon: see STREAK_GROWTH).
            // Asked after many local uses:
            // the cache pays off, back to holding.
            // A stretch under way runs out (its releases give the lock up
            // after one use each, so every request that lands meanwhile
            // looks contended: it must not extend the stretch, or one
            // would never end); the next one starts only if another
            // holder asks again soon after a take with notifications.
            if self.uses > CONTENDED_USES {
                self.eager = 0;
                self.streak = FIRST_STREAK;
            } else if self.eager == 0 {
                self.eager = self.streak;
                self.streak = (self.streak * STREAK_GROWTH).min(MAX_STREAK);
            }
        }
        self.notified = Some(match (self.notified, waiter) {
            (None, w) => w,
            (Some(Some(a)), Some(b)) => Some(a.max(b)),
            _ => None,
        });
        true
    }

    /// The minimum hold time has passed with a notification pending: stop
    /// serving new local holders.
    pub(crate) fn start_drain(&mut self) -> bool {
        if self.phase == Phase::Serving && self.notified.is_some() {
            self.phase = Phase::Draining;
            true
        } else {
            false
        }
    }

    /// Draining and no local holder left: the helper gives the lock up to
    /// the mode returned.
    pub(crate) fn begin_give_up(&mut self) -> Option<Mode> {
        if self.phase == Phase::Draining && self.holders() == 0 {
            self.phase = Phase::GivingUp;
            Some(give_up_target(self.held, self.notified.flatten()))
        } else {
            None
        }
    }

    /// Unused and serving: the helper gives the lock up (to NL).
    pub(crate) fn begin_idle_release(&mut self) -> bool {
        if self.phase == Phase::Serving && self.holders() == 0 && self.held != Mode::Nl {
            self.phase = Phase::GivingUp;
            true
        } else {
            false
        }
    }

    /// The give-up answered; the DLM lock is now held in `held`. Returns
    /// whether the give-up was unasked (see `contended_releases`).
    pub(crate) fn given_up(&mut self, held: Mode) -> bool {
        debug_assert_eq!(self.phase, Phase::GivingUp);
        self.phase = Phase::Serving;
        self.held_unasked = false;
        let unasked = std::mem::take(&mut self.drain_unasked);
        let satisfied = match self.notified {
            Some(Some(w)) => held.is_compatible(w),
            _ => held == Mode::Nl,
        };
        if satisfied {
            self.notified = None;
        }
        self.held = held;
        unasked
    }

    /// A local holder in `mode` released its guard. The last local holder
    /// of a contended lock (see [`notify`](Self::notify)), with no local
    /// taker waiting for it, starts the drain
    /// itself, as if another holder had asked: the lock is given up now,
    /// so that the next waiter's request is granted without a
    /// notification's round trip.
    pub(crate) fn release(&mut self, mode: Mode) -> Wake {
        debug_assert!(self.holders[mode as usize] > 0);
        self.holders[mode as usize] -= 1;
        if self.eager > 0
            && self.holders() == 0
            && !self.others_wait()
            && self.phase == Phase::Serving
            && self.held != Mode::Nl
            && self.notified.is_none()
            && !self.closing
        {
            self.eager -= 1;
            self.notified = Some(None);
            self.phase = Phase::Draining;
            self.drain_unasked = true;
            return Wake {
                waiters: self.waiting > 0,
                helper: true,
                contended: true,
            };
        }
        let last = self.holders() == 0;
        Wake {
            waiters: self.waiting > 0,
            helper: last && (self.phase == Phase::Draining || self.closing),
            contended: last && self.held_unasked && self.phase == Phase::Draining,
        }
    }

    /// Whether the `CachedLock` was dropped.
    pub(crate) fn closing(&self) -> bool {
        self.closing
    }

    /// The `CachedLock` was dropped.
    pub(crate) fn close(&mut self) {
        self.closing = true;
    }

    /// Closing and no local holder (and no DLM call under way): the helper
    /// releases the DLM lock and stops.
    pub(crate) fn begin_close(&mut self) -> bool {
        if self.closing
            && self.holders() == 0
            && self.early.is_none()
            && matches!(self.phase, Phase::Serving | Phase::Draining)
        {
            self.phase = Phase::Closed;
            true
        } else {
            false
        }
    }

    /// The invariants (for tests).
    #[cfg(test)]
    pub(crate) fn check(&self) {
        if self.held_unasked {
            assert!(
                matches!(
                    self.phase,
                    Phase::Draining | Phase::GivingUp | Phase::Closed
                ),
                "a lock without notifications served while {:?}",
                self.phase
            );
            assert!(self.adaptive && self.held != Mode::Nl);
        }
        if self.early.is_some() {
            assert!(
                matches!(self.phase, Phase::Draining | Phase::GivingUp)
                    || (self.phase == Phase::Serving && self.held == Mode::Nl),
                "an early request while {:?} in {}",
                self.phase,
                self.held
            );
        }
        for a in Mode::ALL {
            if self.holders[a as usize] == 0 {
                continue;
            }
            assert!(covers(self.held, a), "{a} not covered by {}", self.held);
            assert!(
                !matches!(self.phase, Phase::GivingUp | Phase::Closed),
                "a local holder while {:?}",
                self.phase
            );
            for b in Mode::ALL {
                if self.holders[b as usize] > 0 && (a != b || self.holders[a as usize] > 1) {
                    assert!(a.is_compatible(b), "local {a} and {b}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The cache.

/// Counters of one cache ([`CachedLock::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CacheStats {
    /// Local takes served from the DLM lock the cache held: no system call.
    pub hits: u64,
    /// Takes of the DLM lock: new requests and conversions up that were
    /// granted.
    pub takes: u64,
    /// Times the cache gave the lock up because another holder asked
    /// (a blocking notification) or, unasked, because the lock is
    /// contended ([`contended_releases`](Self::contended_releases)).
    pub give_ups: u64,
    /// Times the cache gave the lock up because it was unused for
    /// [`CacheOptions::idle_release`].
    pub idle_releases: u64,
    /// Of [`give_ups`](Self::give_ups): the give-ups no notification
    /// asked for, made at a local release because the lock is contended
    /// (see [`CacheOptions::min_hold`]).
    pub contended_releases: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    takes: AtomicU64,
    give_ups: AtomicU64,
    idle_releases: AtomicU64,
    contended_releases: AtomicU64,
}

/// What the mutex guards.
struct Core {
    m: Machine,
    /// The DLM lock; `None` while an actor converts it, or when none is held.
    dlm: Option<LockGuard>,
    /// The DLM lock's blocking notifications, for the helper.
    bast_rx: Option<BlockingReceiver>,
    /// The value block as read at the last take, or set by a local holder.
    value: [u8; LVB_LEN],
    valid: bool,
    /// Whether `value` was read (or set) since the DLM lock was taken.
    value_known: bool,
    /// Set by a local holder, not yet published.
    dirty: bool,
    /// When the DLM lock was last taken (min hold time).
    taken_at: Option<Instant>,
    /// Bumped by every change a waiting taker may be waiting for.
    epoch: u64,
    /// Tasks waiting for a change.
    wakers: Vec<Waker>,
    /// The helper thread, once the [`CachedLock`] was dropped while local
    /// guards lived: the last guard's drop joins it (so that the DLM lock
    /// is unlocked and the lockspace handle let go when that drop returns).
    /// Put here under the same lock as `Machine::close`, so exactly one
    /// drop (the cache's or the last guard's) finds the handle to join.
    helper_thread: Option<std::thread::JoinHandle<()>>,
    /// The NL lock the cache's DLM lock replaced (a take from NL is a new
    /// request; the NL lock stays until it is granted, so that the
    /// resource and its value block stay): unlocked without waiting for
    /// the answer ([`LockGuard::unlock_without_waiting`]) by whoever makes
    /// the next give-up, right after it has answered: off the path of the
    /// take that replaced it (whose holder would otherwise write it before
    /// using the lock) and of the waiter the give-up hands the lock to;
    /// no thread hop (the reaper's, for a job and again for the answer,
    /// before); never on a future's poll (give-ups are made by the helper
    /// or by blocking callers). Until then it excludes nobody. Unlocked
    /// at the close too. One put here while another is kept (none is: a
    /// give-up comes between two takes from NL) displaces it, to be
    /// dropped (to the reaper: its drop behavior is `Background`) once the
    /// mutex is let go.
    replaced: Option<LockGuard>,
}

struct Shared {
    ls: Lockspace,
    name: Box<[u8]>,
    options: CacheOptions,
    core: Mutex<Core>,
    changed: Condvar,
    /// Wakes the helper thread.
    helper: Sender<()>,
    counters: Counters,
}

impl Shared {
    /// Wakes every waiting taker after a change (the caller holds `core`).
    fn changed(&self, core: &mut Core) {
        core.epoch = core.epoch.wrapping_add(1);
        if core.m.waiting > 0 {
            self.changed.notify_all();
        }
        for w in core.wakers.drain(..) {
            w.wake();
        }
        core.m.tasks_waiting = false;
    }

    fn wake_helper(&self) {
        let _ = self.helper.try_send(());
    }

    /// For a local caller (a take, a release) that finds no local holder:
    /// when another holder waits for the lock (a notification pending, or
    /// waiting unread in the channel) and the minimum hold time has
    /// passed, starts the drain here, as the helper would a thread hop
    /// later (about 0.4 ms under user-mode Linux, measured with case 10 of
    /// `ci/bench`): no local holder is served from then on, and a take
    /// that needs the lock back can request it at once ([`Take::Early`]),
    /// ahead of the helper's give-up. Returns whether the helper must be
    /// woken (to give the lock up, or to look at the notification read
    /// here). No system call, and a clock read only with a notification
    /// pending and a minimum hold time.
    fn drain_here(&self, core: &mut Core) -> bool {
        if core.m.holders() > 0
            || core.m.phase() != Phase::Serving
            || core.m.held() == Mode::Nl
            || core.m.closing()
        {
            return false;
        }
        let read = core
            .bast_rx
            .as_ref()
            .is_some_and(|rx| rx.try_recv().is_ok());
        if read {
            core.m.notify(None);
        }
        if !core.m.notified() {
            return read;
        }
        let min_hold = self.options.min_hold;
        if !min_hold.is_zero() && core.taken_at.is_some_and(|t| t.elapsed() < min_hold) {
            return read;
        }
        if core.m.start_drain() {
            self.changed(core);
            return true;
        }
        read
    }

    /// For a local caller on a thread that may block (a blocking take, or
    /// the release of a blocking take's guard) that finds the lock
    /// drained and no local holder: begins the give-up here
    /// ([`Machine::begin_give_up`]), to the mode returned, which the
    /// caller then makes ([`give_up`]) instead of waking the helper
    /// thread. The conversion down is written at once: the waiter that
    /// asked is granted a thread hop sooner (about 0.4 ms under user-mode
    /// Linux), which is most of what a hand-over between two nodes costs
    /// over plain locks' (case 10 of `ci/bench`). A future's take or
    /// release never does this (the write can block for a whole recovery,
    /// and an executor's thread must not), nor a forked child, nor a
    /// closing cache (the helper closes).
    fn give_up_here(&self, core: &mut Core) -> Option<Mode> {
        if core.m.closing() || self.ls.inner.forked() {
            return None;
        }
        core.m.begin_give_up()
    }

    /// The options of a request or conversion of the DLM lock.
    fn dlm_options(&self, take: LockOptions) -> LockOptions {
        let mut o = LockOptions::new();
        if take.flags.contains(LockFlags::NOQUEUE) {
            o = o.no_wait();
        }
        if let Some(t) = take.timeout {
            o = o.timeout(t);
        }
        if self.options.lvb {
            o = o.lvb();
        }
        o
    }
}

/// A DLM lock kept across local uses ([`Lockspace::cached`]): see the
/// [module docs](crate::cache).
///
/// `Send + Sync`: share it between threads by reference or in an `Arc`.
/// Dropping it unlocks the DLM lock (`dlm_ls_unlock`, after a conversion
/// to NL that publishes a value set by a local holder) and waits for the
/// unlock, as dropping a [`LockGuard`] does; while local guards live, the
/// drop returns at once, and the drop of the last of them has the cache's
/// helper thread unlock the DLM lock and waits for it. Either way, once
/// the drop of the last of the cache and its guards has returned, the DLM
/// lock is unlocked and the cache holds no lockspace handle (until then
/// it does: a [`Lockspace::release`] meanwhile is refused with
/// [`Error::HandlesOpen`]).
pub struct CachedLock {
    shared: Arc<Shared>,
    helper: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for CachedLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = self.shared.core.lock();
        f.debug_struct("CachedLock")
            .field("lockspace", &self.shared.ls.name())
            .field("name", &String::from_utf8_lossy(&self.shared.name))
            .field("held", &core.m.held())
            .field("phase", &core.m.phase())
            .field("holders", &core.m.holders())
            .finish_non_exhaustive()
    }
}

impl Lockspace {
    /// A cached lock on the resource `name` (1 to 64 bytes): one DLM lock
    /// kept across local uses and given up when another holder asks for it
    /// (see [`crate::cache`]). Takes no DLM lock yet: the first local take
    /// requests it (`dlm_ls_lock` with `LKF_NOQUEUE` off, blocking
    /// notifications on). Starts the cache's helper thread.
    ///
    /// Two caches (or a cache and plain locks) on one resource in one
    /// process are two DLM holders: they exclude each other like any two.
    ///
    /// # Errors
    /// [`Error::InvalidName`]; [`Error::LockspaceGone`];
    /// [`Error::LockspaceStopped`]; [`Error::Forked`]; [`Error::Os`] if
    /// the helper thread cannot be started.
    pub fn cached(&self, name: impl AsRef<[u8]>, options: CacheOptions) -> Result<CachedLock> {
        self.inner.check_new()?;
        let name = crate::name::resource_name(name.as_ref())?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let shared = Arc::new(Shared {
            ls: self.clone(),
            name: name.into(),
            options,
            core: Mutex::new(Core {
                m: if options.min_hold.is_zero() {
                    Machine::adaptive()
                } else {
                    Machine::new()
                },
                dlm: None,
                bast_rx: None,
                value: [0; LVB_LEN],
                valid: false,
                value_known: false,
                dirty: false,
                taken_at: None,
                epoch: 0,
                wakers: Vec::new(),
                helper_thread: None,
                replaced: None,
            }),
            changed: Condvar::new(),
            helper: tx,
            counters: Counters::default(),
        });
        let helper = Arc::clone(&shared);
        let helper = std::thread::Builder::new()
            .name("dlm-cache".into())
            .spawn(move || run_helper(&helper, &rx))
            .map_err(|source| Error::Os {
                op: "std::thread::spawn",
                source,
            })?;
        Ok(CachedLock {
            shared,
            helper: Some(helper),
        })
    }
}

/// One step of a take, decided under the mutex.
enum Step {
    Hit,
    Convert(Actor, Mode),
    Early(Actor, Mode),
    Wait(u64),
}

impl CachedLock {
    /// The resource's name.
    pub fn name(&self) -> &[u8] {
        &self.shared.name
    }

    /// The lockspace.
    pub fn lockspace(&self) -> &Lockspace {
        &self.shared.ls
    }

    /// The mode the DLM lock is held in now (NL when none is held).
    pub fn held(&self) -> Mode {
        self.shared.core.lock().m.held()
    }

    /// This cache's counters.
    pub fn stats(&self) -> CacheStats {
        let c = &self.shared.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            takes: c.takes.load(Ordering::Relaxed),
            give_ups: c.give_ups.load(Ordering::Relaxed),
            idle_releases: c.idle_releases.load(Ordering::Relaxed),
            contended_releases: c.contended_releases.load(Ordering::Relaxed),
        }
    }

    /// Takes the lock locally in `mode`, waiting as long as needed: from
    /// the cache (no system call) when the DLM lock covers it, else by
    /// converting the DLM lock up (`dlm_ls_lock` with `LKF_CONVERT`) or
    /// requesting it (`dlm_ls_lock`).
    ///
    /// # Errors
    /// See [`lock_with`](Self::lock_with).
    pub fn lock(&self, mode: Mode) -> Result<CachedGuard> {
        self.lock_with(mode, LockOptions::new())
    }

    /// Takes the lock locally in `mode` if that can be done at once: from
    /// the cache, or by a conversion or request with `LKF_NOQUEUE`.
    ///
    /// # Errors
    /// [`Error::WouldBlock`] when a local holder, a give-up under way or
    /// another holder of the DLM lock is in the way; see
    /// [`lock_with`](Self::lock_with).
    pub fn try_lock(&self, mode: Mode) -> Result<CachedGuard> {
        self.lock_with(mode, LockOptions::new().no_wait())
    }

    /// Takes the lock locally in `mode` with `options`, of which a cached
    /// take accepts [`no_wait`](LockOptions::no_wait) and
    /// [`timeout`](LockOptions::timeout) (the timeout bounds the whole
    /// take: local waits and the DLM's answer; except that once an early
    /// request (see the module docs) is granted, the take waits for the
    /// cache's give-up to be applied without the deadline: the kernel
    /// answered that give-up before it granted the request, so only this
    /// process's threads are still to run). The DLM calls are those of
    /// [`lock`](Self::lock).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for any other option (nothing is sent);
    /// [`Error::TimedOut`]; [`Error::WouldBlock`] (with `no_wait`);
    /// [`Error::Deadlock`] (a conversion deadlock converting up: the cache
    /// still holds its old mode, try again); [`Error::LockspaceGone`];
    /// [`Error::LockspaceStopped`]; [`Error::Forked`]; and the errors of
    /// [`Lockspace::lock_with`] and [`LockGuard::convert_with`].
    pub fn lock_with(&self, mode: Mode, options: LockOptions) -> Result<CachedGuard> {
        check_options(&options)?;
        let no_wait = options.flags.contains(LockFlags::NOQUEUE);
        // A take that may wait without bound (and its guard's release)
        // gives the lock up itself when it finds it drained; one with
        // `no_wait` or a timeout leaves that to the helper: the
        // conversion down is unbounded (a whole recovery, if one runs).
        let inline = !no_wait && options.timeout.is_none();
        let mut deadline = None;
        let mut took = false;
        loop {
            match self.step(mode, no_wait, options, &mut deadline, inline)? {
                Step::Hit => return Ok(self.guard(mode, took, inline)),
                Step::Convert(actor, target) => {
                    let o = self.shared.dlm_options(remaining(options, deadline)?);
                    if actor.convert_up(target, mode, o)? {
                        return Ok(self.guard(mode, true, inline));
                    }
                    took = true;
                }
                Step::Early(mut actor, target) => {
                    let o = self.shared.dlm_options(remaining(options, deadline)?);
                    actor.request_early(target, o)?;
                    let served = loop {
                        match actor.install(mode) {
                            Ok(served) => break served,
                            // The give-up's answer is on its way (it
                            // came before this grant): no deadline.
                            Err(epoch) => self.wait(epoch, None)?,
                        }
                    };
                    if served {
                        return Ok(self.guard(mode, true, inline));
                    }
                    took = true;
                }
                Step::Wait(epoch) => self.wait(epoch, deadline)?,
            }
        }
    }

    /// [`lock`](Self::lock) as a future. Cancel-safe: dropping it while it
    /// takes the DLM lock cancels the conversion or the new request (as dropping
    /// [`LockGuard::convert_async`]'s future does) and the cache goes on.
    ///
    /// # Errors
    /// As [`lock_with`](Self::lock_with).
    pub async fn lock_async(&self, mode: Mode) -> Result<CachedGuard> {
        self.lock_with_async(mode, LockOptions::new()).await
    }

    /// [`try_lock`](Self::try_lock) as a future.
    ///
    /// # Errors
    /// As [`try_lock`](Self::try_lock).
    pub async fn try_lock_async(&self, mode: Mode) -> Result<CachedGuard> {
        self.lock_with_async(mode, LockOptions::new().no_wait())
            .await
    }

    /// [`lock_with`](Self::lock_with) as a future: local waits wake the
    /// task; the DLM calls are [`Lockspace::lock_with_async`] and
    /// [`LockGuard::convert_with_async`].
    ///
    /// # Errors
    /// As [`lock_with`](Self::lock_with).
    pub async fn lock_with_async(&self, mode: Mode, options: LockOptions) -> Result<CachedGuard> {
        check_options(&options)?;
        let no_wait = options.flags.contains(LockFlags::NOQUEUE);
        let mut deadline = None;
        let mut took = false;
        loop {
            match self.step(mode, no_wait, options, &mut deadline, false)? {
                Step::Hit => return Ok(self.guard(mode, took, false)),
                Step::Convert(actor, target) => {
                    let o = self.shared.dlm_options(remaining(options, deadline)?);
                    if actor.convert_up_async(target, mode, o).await? {
                        return Ok(self.guard(mode, true, false));
                    }
                    took = true;
                }
                Step::Early(mut actor, target) => {
                    let o = self.shared.dlm_options(remaining(options, deadline)?);
                    actor.request_early_async(target, o).await?;
                    let served = loop {
                        match actor.install(mode) {
                            Ok(served) => break served,
                            Err(epoch) => {
                                LocalWait {
                                    shared: &self.shared,
                                    epoch,
                                    deadline: None,
                                    timer: crate::timer::Timer::default(),
                                }
                                .await?
                            }
                        }
                    };
                    if served {
                        return Ok(self.guard(mode, true, false));
                    }
                    took = true;
                }
                Step::Wait(epoch) => {
                    LocalWait {
                        shared: &self.shared,
                        epoch,
                        deadline,
                        timer: crate::timer::Timer::default(),
                    }
                    .await?
                }
            }
        }
    }

    fn guard(&self, mode: Mode, took: bool, blocking: bool) -> CachedGuard {
        if !took {
            self.shared.counters.hits.fetch_add(1, Ordering::Relaxed);
        }
        CachedGuard {
            shared: Arc::clone(&self.shared),
            mode,
            pending: None,
            blocking,
        }
    }

    /// One take decision under the mutex (after starting the drain when
    /// another holder waits and nobody here holds the lock:
    /// [`Shared::drain_here`]; and, for a `blocking` take (a thread's,
    /// with no `no_wait` and no timeout), after giving the lock up here:
    /// [`Shared::give_up_here`]).
    fn step(
        &self,
        mode: Mode,
        no_wait: bool,
        options: LockOptions,
        deadline: &mut Option<Instant>,
        blocking: bool,
    ) -> Result<Step> {
        let shared = &self.shared;
        // A take can wait: refused on a handle whose reader refused an
        // answer (the lock may have missed a blocking notification; the
        // helper still gives it up when idle).
        shared.ls.inner.check_new()?;
        let mut core = shared.core.lock();
        let drained = shared.drain_here(&mut core);
        if blocking {
            if let Some(target) = shared.give_up_here(&mut core) {
                give_up(shared, core, target, false);
                core = shared.core.lock();
            } else if drained {
                shared.wake_helper();
            }
        } else if drained {
            shared.wake_helper();
        }
        match core.m.take_with(mode, !no_wait) {
            Take::Hit => Ok(Step::Hit),
            Take::Early(target) => {
                let unasked = core.m.unasked(true);
                drop(core);
                Ok(Step::Early(
                    Actor {
                        shared: Arc::clone(shared),
                        guard: None,
                        done: false,
                        early: true,
                        unasked,
                        replaced: None,
                    },
                    target,
                ))
            }
            Take::ConvertUp(target) => {
                let guard = core.dlm.take();
                let unasked = core.m.unasked(false);
                drop(core);
                Ok(Step::Convert(
                    Actor {
                        shared: Arc::clone(shared),
                        guard,
                        done: false,
                        early: false,
                        unasked,
                        replaced: None,
                    },
                    target,
                ))
            }
            Take::Wait if no_wait => Err(Error::WouldBlock),
            Take::Wait => {
                if deadline.is_none() {
                    *deadline = options.timeout.and_then(|t| Instant::now().checked_add(t));
                }
                Ok(Step::Wait(core.epoch))
            }
            Take::Closed => Err(Error::InvalidArgument("the cache is closed")),
        }
    }

    /// Waits (a thread) for a change after `epoch`.
    fn wait(&self, epoch: u64, deadline: Option<Instant>) -> Result<()> {
        let shared = &self.shared;
        let mut core = shared.core.lock();
        core.m.waiting += 1;
        let result = loop {
            if core.epoch != epoch {
                break Ok(());
            }
            let now = Instant::now();
            let limit = now + Duration::from_secs(1);
            let until = match deadline {
                Some(d) if d <= now => break Err(Error::TimedOut),
                Some(d) => d.min(limit),
                None => limit,
            };
            let timed_out = shared.changed.wait_until(&mut core, until).timed_out();
            if timed_out && !shared.ls.inner.is_alive() {
                let inner = &shared.ls.inner;
                break Err(inner.check().err().unwrap_or_else(|| inner.gone_error()));
            }
        };
        core.m.waiting -= 1;
        result
    }
}

impl Drop for CachedLock {
    fn drop(&mut self) {
        if self.shared.ls.inner.forked() {
            return;
        }
        let guards_live = {
            let mut core = self.shared.core.lock();
            core.m.close();
            let live = core.m.holders() > 0;
            if live {
                // The last guard's drop joins the helper.
                core.helper_thread = self.helper.take();
            }
            live
        };
        self.shared.wake_helper();
        // With no local guard left, the helper unlocks the DLM lock and
        // stops now: wait for it, so that the lock is gone and the
        // lockspace handle free (for a release) when the drop returns.
        if !guards_live {
            if let Some(h) = self.helper.take() {
                let _ = h.join();
            }
        }
    }
}

fn check_options(options: &LockOptions) -> Result<()> {
    if !options.flags.without(LockFlags::NOQUEUE).is_empty() || options.notify_blocking {
        return Err(Error::InvalidArgument(
            "a cached lock's take accepts only no_wait and timeout",
        ));
    }
    Ok(())
}

/// `options` with the time left before `deadline` (set by a local wait).
fn remaining(options: LockOptions, deadline: Option<Instant>) -> Result<LockOptions> {
    match deadline {
        None => Ok(options),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(Error::TimedOut)
            } else {
                Ok(options.timeout(left))
            }
        }
    }
}

/// The local taker converting the DLM lock up, holding it out of the
/// mutex; dropping it unfinished (a panic, a dropped future) puts the lock
/// back as the kernel holds it.
struct Actor {
    shared: Arc<Shared>,
    guard: Option<LockGuard>,
    done: bool,
    /// An early request ([`Take::Early`]): `guard` is the new lock, once
    /// granted; the cache's own lock stays with the cache.
    early: bool,
    /// The new request is made without blocking notifications
    /// ([`Machine::unasked`]).
    unasked: bool,
    /// The NL lock the new one replaced (see [`Core::replaced`]), moved
    /// into the cache's core when the take finishes.
    replaced: Option<LockGuard>,
}

impl Actor {
    /// The options of a new request: with blocking notifications, unless
    /// the lock is contended and is to be given up at its release anyway
    /// ([`Machine::unasked`]).
    fn notifications(&self, options: LockOptions) -> LockOptions {
        if self.unasked {
            options
        } else {
            options.notify_blocking()
        }
    }

    /// Takes the DLM lock in `target` for a local take in `mode`: a
    /// conversion up from a granted mode, a new request otherwise. Returns
    /// whether the local taker was served by it (see
    /// [`Machine::converted`]).
    ///
    /// A DLM lock the cache gave up to NL is not converted up: the kernel
    /// grants conversions before new requests (its convert queue is served
    /// first), so two caches converting up from NL in turn kept a third
    /// holder's new request waiting for ever (seen: one grant in 20
    /// minutes). A new request queues behind the waiters in the order they
    /// came; the NL lock is kept until it is granted (so the resource and
    /// its value block stay), and unlocked after the new lock's next
    /// give-up, or at the close ([`Core::replaced`]).
    fn convert_up(mut self, target: Mode, mode: Mode, options: LockOptions) -> Result<bool> {
        let result = match self.guard.as_mut() {
            Some(g) if g.mode() != Mode::Nl => g.convert_with(target, options).map(|_| ()),
            _ => self
                .shared
                .ls
                .lock_with(&*self.shared.name, target, self.notifications(options))
                .map(|g| self.replace(g)),
        };
        self.finish(result, mode)
    }

    async fn convert_up_async(
        mut self,
        target: Mode,
        mode: Mode,
        options: LockOptions,
    ) -> Result<bool> {
        let result = match self.guard.as_mut() {
            Some(g) if g.mode() != Mode::Nl => {
                g.convert_with_async(target, options).await.map(|_| ())
            }
            _ => {
                let ls = self.shared.ls.clone();
                ls.lock_with_async(&*self.shared.name, target, self.notifications(options))
                    .await
                    .map(|mut g| {
                        g.set_drop_behavior(crate::DropBehavior::Wait);
                        self.replace(g)
                    })
            }
        };
        self.finish(result, mode)
    }

    /// A new request was granted: it is the cache's DLM lock now; the NL
    /// lock it replaces, if any, is unlocked after the next give-up (see
    /// [`Core::replaced`]).
    fn replace(&mut self, granted: LockGuard) {
        if let Some(mut old) = self.guard.replace(granted) {
            // Dropped with an unfinished take (a panic, a dropped future):
            // released by the reaper, never waited for there.
            old.set_drop_behavior(crate::DropBehavior::Background);
            self.replaced = Some(old);
        }
    }

    /// Puts the DLM lock back and leaves `ConvertingUp`; on a grant, the
    /// local taker in `mode` is served if the DLM mode covers it.
    fn finish(&mut self, result: Result<()>, mode: Mode) -> Result<bool> {
        self.done = true;
        let granted = result.is_ok();
        let shared = &self.shared;
        let mut core = shared.core.lock();
        let displaced = self
            .replaced
            .take()
            .and_then(|old| core.replaced.replace(old));
        let guard = self.guard.take().filter(LockGuard::is_held);
        let held = guard.as_ref().map_or(Mode::Nl, LockGuard::mode);
        let new_rx = match (&guard, &core.bast_rx) {
            (Some(g), Some(rx)) => !g.blocking().is_some_and(|b| b.same_channel(rx)),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if new_rx || guard.is_none() {
            core.bast_rx = guard.as_ref().and_then(|g| g.blocking().cloned());
        }
        if granted {
            shared.counters.takes.fetch_add(1, Ordering::Relaxed);
            crate::stats::count(&crate::stats::CACHE_TAKES);
            core.taken_at = Some(Instant::now());
            // A value a local holder set under PW and not yet published
            // is newer than the resource's: a conversion PW -> EX reads
            // the resource's block (the kernel's lvb table), it does not
            // write the lock's, and nobody else can have written it while
            // this cache held PW. Keep the local value (it is published at
            // the give-up, from EX).
            if shared.options.lvb && !core.dirty {
                if let Some(v) = guard.as_ref().and_then(LockGuard::lvb) {
                    core.value = v.bytes;
                    core.valid = v.valid;
                    core.value_known = true;
                    core.dirty = false;
                }
            }
        }
        core.dlm = guard;
        let served = core.m.converted(held, granted.then_some(mode));
        // A conversion deadlock: another holder converts and waits for
        // this lock. Its blocking notification may not have reached the
        // helper yet; act as if it had, so a retry waits for the give-up
        // instead of converting into the same deadlock.
        if matches!(&result, Err(Error::Deadlock)) {
            core.m.notify(None);
        }
        shared.changed(&mut core);
        drop(core);
        drop(displaced);
        // A lock without notifications that serves its taker needs no
        // helper: its release gives it up (or wakes the helper to).
        if !(self.unasked && served) {
            shared.wake_helper();
        }
        result.map(|()| served)
    }
}

impl Actor {
    /// Sends the early request (a new lock in `target`, queued behind the
    /// waiter the cache gives its lock up to) and waits for its grant. On
    /// failure the slot is freed.
    fn request_early(&mut self, target: Mode, options: LockOptions) -> Result<()> {
        let granted =
            self.shared
                .ls
                .lock_with(&*self.shared.name, target, self.notifications(options));
        self.early_answered(granted)
    }

    async fn request_early_async(&mut self, target: Mode, options: LockOptions) -> Result<()> {
        let ls = self.shared.ls.clone();
        let granted = ls
            .lock_with_async(&*self.shared.name, target, self.notifications(options))
            .await
            .map(|mut g| {
                g.set_drop_behavior(crate::DropBehavior::Wait);
                g
            });
        self.early_answered(granted)
    }

    fn early_answered(&mut self, granted: Result<LockGuard>) -> Result<()> {
        match granted {
            Ok(g) => {
                self.guard = Some(g);
                Ok(())
            }
            Err(e) => {
                self.abandon_early();
                Err(e)
            }
        }
    }

    /// Frees the early slot; a granted lock not installed is unlocked in
    /// the background.
    fn abandon_early(&mut self) {
        self.done = true;
        if let Some(g) = self.guard.as_mut() {
            g.set_drop_behavior(crate::DropBehavior::Background);
        }
        let guard = self.guard.take();
        let shared = &self.shared;
        let mut core = shared.core.lock();
        core.m.early_failed();
        shared.changed(&mut core);
        drop(core);
        drop(guard);
        shared.wake_helper();
    }

    /// Installs the granted early lock as the cache's, once the give-up
    /// has answered (`Err(epoch)`: not yet, wait for a change after
    /// `epoch`): the given-up lock is kept as [`Core::replaced`], the
    /// value block read, and the taker in `mode` served (returns whether
    /// it was).
    fn install(&mut self, mode: Mode) -> std::result::Result<bool, u64> {
        let shared = &self.shared;
        let mut core = shared.core.lock();
        if !core.m.early_installable() {
            return Err(core.epoch);
        }
        self.done = true;
        let granted = self.guard.take().expect("an early lock is installed once");
        let displaced = core.dlm.take().and_then(|mut old| {
            old.set_drop_behavior(crate::DropBehavior::Background);
            core.replaced.replace(old)
        });
        core.bast_rx = granted.blocking().cloned();
        shared.counters.takes.fetch_add(1, Ordering::Relaxed);
        crate::stats::count(&crate::stats::CACHE_TAKES);
        core.taken_at = Some(Instant::now());
        if shared.options.lvb && !core.dirty {
            if let Some(v) = granted.lvb() {
                core.value = v.bytes;
                core.valid = v.valid;
                core.value_known = true;
            }
        }
        let held = granted.mode();
        core.dlm = Some(granted);
        let served = core.m.early_granted(held, mode);
        shared.changed(&mut core);
        drop(core);
        drop(displaced);
        if !(self.unasked && served) {
            shared.wake_helper();
        }
        Ok(served)
    }
}

impl Drop for Actor {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.early {
            self.abandon_early();
        } else {
            let _ = self.finish(Err(Error::Cancelled), Mode::Nl);
        }
    }
}

/// A task's local wait for a change after `epoch`.
struct LocalWait<'a> {
    shared: &'a Shared,
    epoch: u64,
    deadline: Option<Instant>,
    timer: crate::timer::Timer,
}

impl Future for LocalWait<'_> {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if let Err(e) = self.shared.ls.inner.check_new() {
            return Poll::Ready(Err(e));
        }
        let now = Instant::now();
        {
            let mut core = self.shared.core.lock();
            if core.epoch != self.epoch {
                return Poll::Ready(Ok(()));
            }
            if self.deadline.is_some_and(|d| d <= now) {
                return Poll::Ready(Err(Error::TimedOut));
            }
            if !core.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                core.wakers.push(cx.waker().clone());
            }
            core.m.tasks_waiting = true;
        }
        // Wake at the deadline, and once a second to check the lockspace.
        let tick = now + Duration::from_secs(1);
        let at = self.deadline.map_or(tick, |d| d.min(tick));
        let waker = cx.waker().clone();
        self.timer.set(at, &waker);
        Poll::Pending
    }
}

/// A local holder of a [`CachedLock`]: its mode is covered by the DLM lock
/// the cache holds. Dropping it releases the local hold (no system call);
/// the DLM lock stays with the cache, except when another holder asked for
/// it, or the lock is contended (see [`CacheOptions::min_hold`]), and this
/// was the last local holder: then the drop of a guard that a blocking
/// take without a timeout ([`CachedLock::lock`], or
/// [`lock_with`](CachedLock::lock_with) with neither `no_wait` nor a
/// timeout) returned gives the DLM lock up itself, converting it down
/// (`dlm_ls_lock` with `LKF_CONVERT`) or unlocking it as
/// [configured](GiveUp), and waits for the answer, as a [`LockGuard`]'s
/// drop does (during a recovery the kernel holds that call until the
/// recovery ends; so drop such a guard on a thread that may block, not in
/// an async task: take with [`CachedLock::lock_async`] there); the guard
/// of a future's take leaves that to the cache's helper thread. Dropping the last guard of a
/// [`CachedLock`] that was dropped already waits, as the cache's own drop
/// would have, for the cache's helper thread to unlock the DLM lock and
/// stop (see [`CachedLock`]).
#[must_use = "dropping the guard releases the local hold at once"]
pub struct CachedGuard {
    shared: Arc<Shared>,
    mode: Mode,
    /// A value set by this holder, stored in the cache on release.
    pending: Option<[u8; LVB_LEN]>,
    /// Taken by a blocking call with no `no_wait` and no timeout: its
    /// drop may give the DLM lock up itself (see
    /// [`Shared::give_up_here`]).
    blocking: bool,
}

impl fmt::Debug for CachedGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedGuard")
            .field("lockspace", &self.shared.ls.name())
            .field("name", &String::from_utf8_lossy(&self.shared.name))
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl CachedGuard {
    /// The local mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The value block: as set by this holder, else as the cache knows it
    /// (read at the last take of the DLM lock, or set by an earlier local
    /// holder). `None` unless the cache was made with
    /// [`CacheOptions::lvb`] and the value was read.
    pub fn lvb(&self) -> Option<Lvb> {
        if let Some(bytes) = self.pending {
            return Some(Lvb { bytes, valid: true });
        }
        let core = self.shared.core.lock();
        core.value_known.then_some(Lvb {
            bytes: core.value,
            valid: core.valid,
        })
    }

    /// Sets the value block to `value` (at most 32 bytes; the rest is
    /// zeroed): stored in the cache when this guard is released, published
    /// to the DLM when the cache gives the lock up (see the module docs).
    /// No system call.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless the local mode is PW or EX, the
    /// cache was made with [`CacheOptions::lvb`], and `value` has at most
    /// 32 bytes.
    pub fn set_lvb(&mut self, value: &[u8]) -> Result<()> {
        if !self.mode.writes_lvb() {
            return Err(Error::InvalidArgument(
                "only a PW or EX holder can write the lock value block",
            ));
        }
        if !self.shared.options.lvb {
            return Err(Error::InvalidArgument(
                "the cache was made without CacheOptions::lvb",
            ));
        }
        if value.len() > LVB_LEN {
            return Err(Error::InvalidArgument(
                "a lock value block holds at most 32 bytes",
            ));
        }
        let mut bytes = [0; LVB_LEN];
        bytes[..value.len()].copy_from_slice(value);
        self.pending = Some(bytes);
        Ok(())
    }

    /// Releases the local hold (as dropping the guard does).
    pub fn unlock(self) {}
}

impl Drop for CachedGuard {
    fn drop(&mut self) {
        let shared = &self.shared;
        let mut core = shared.core.lock();
        if let Some(v) = self.pending.take() {
            if !std::thread::panicking() {
                core.value = v;
                core.valid = true;
                core.value_known = true;
                core.dirty = true;
            }
        }
        let wake = core.m.release(self.mode);
        if wake.waiters || !core.wakers.is_empty() {
            shared.changed(&mut core);
        } else {
            core.epoch = core.epoch.wrapping_add(1);
        }
        let drained = shared.drain_here(&mut core);
        // A blocking take's guard, the last local holder of a drained
        // lock: give it up here (a conversion down, as a plain guard's
        // drop unlocks), not a thread hop later on the helper.
        if self.blocking {
            if let Some(target) = shared.give_up_here(&mut core) {
                give_up(shared, core, target, false);
                return;
            }
        }
        // The last guard of a dropped cache: the helper unlocks the DLM
        // lock and stops now; wait for it, as the cache's own drop would
        // have (no take can be under way: takes borrow the CachedLock).
        // In a forked child the helper is the parent's: leave it.
        let helper = if core.m.closing() && core.m.holders() == 0 && !shared.ls.inner.forked() {
            core.helper_thread.take()
        } else {
            None
        };
        drop(core);
        if wake.helper || drained || helper.is_some() {
            shared.wake_helper();
        }
        if let Some(h) = helper {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------
// The helper thread.

fn run_helper(shared: &Arc<Shared>, wake: &Receiver<()>) {
    let mut idle = Idle::default();
    loop {
        let (bast_rx, timeout) = {
            let mut core = shared.core.lock();
            if core.m.begin_close() {
                let guard = core.dlm.take();
                let replaced = core.replaced.take();
                let dirty = core.dirty.then_some(core.value);
                shared.changed(&mut core);
                drop(core);
                if let Some(old) = replaced {
                    let _ = old.unlock();
                }
                if let Some(mut g) = guard {
                    if let Some(v) = dirty {
                        if g.mode().writes_lvb() {
                            let _ = g.set_lvb(&v);
                        }
                    }
                    let _ = g.unlock();
                }
                return;
            }
            let now = Instant::now();
            let mut timeout: Option<Duration> = None;
            if core.m.notified() && core.m.phase() == Phase::Serving {
                let until = core
                    .taken_at
                    .and_then(|t| t.checked_add(shared.options.min_hold))
                    .unwrap_or(now);
                if until <= now {
                    core.m.start_drain();
                    shared.changed(&mut core);
                } else {
                    timeout = Some(until - now);
                }
            }
            if let Some(target) = core.m.begin_give_up() {
                give_up(shared, core, target, false);
                continue;
            }
            if let Some(period) = shared.options.idle_release {
                match idle.check(shared, &core.m, now, period) {
                    IdleCheck::Release => {
                        if core.m.begin_idle_release() {
                            give_up(shared, core, Mode::Nl, true);
                            continue;
                        }
                    }
                    IdleCheck::After(d) => timeout = Some(timeout.map_or(d, |t| t.min(d))),
                    IdleCheck::Nothing => {}
                }
            }
            (core.bast_rx.clone(), timeout)
        };
        let never = crossbeam_channel::never();
        let bast = bast_rx.as_ref().unwrap_or(&never);
        let timeout = timeout.unwrap_or(Duration::from_secs(3600));
        crossbeam_channel::select! {
            recv(bast) -> msg => {
                if msg.is_ok() {
                    let mut core = shared.core.lock();
                    // Only a notification of the lock the cache holds now
                    // counts: this wait began on a copy of the channel,
                    // and the lock may have been replaced since (an early
                    // request installed, a take from NL), leaving the old
                    // lock's notifications unread in the old channel.
                    if core.bast_rx.as_ref().is_some_and(|rx| rx.same_channel(bast)) {
                        core.m.notify(None);
                    }
                }
            }
            recv(wake) -> _ => {}
            default(timeout) => {}
        }
    }
}

/// Gives the DLM lock up to `target` (the machine is `GivingUp`).
fn give_up(shared: &Shared, mut core: MutexGuard<'_, Core>, target: Mode, idle: bool) {
    let guard = core.dlm.take();
    let dirty = core.dirty.then_some(core.value);
    drop(core);
    let mut published = false;
    let guard = match guard {
        None => None,
        Some(mut g) => {
            if let Some(v) = dirty {
                published = g.mode().writes_lvb() && g.set_lvb(&v).is_ok();
            }
            let result = match shared.options.give_up {
                GiveUp::Unlock if target == Mode::Nl => g.unlock().map(|()| None),
                _ => g.convert(target).map(|_| Some(g)),
            };
            // Not converted (a conversion keeps the old mode), or the
            // unlock failed: the guard, if any, went with the error (its
            // drop released the lock). A lockspace gone or stopped has
            // nothing left to give up.
            result.ok().flatten()
        }
    };
    let mut core = shared.core.lock();
    let held = guard
        .as_ref()
        .filter(|g| g.is_held())
        .map_or(Mode::Nl, LockGuard::mode);
    if guard.is_none() {
        core.bast_rx = None;
        if shared.options.give_up == GiveUp::Unlock {
            core.value_known = false;
        }
    }
    if published || held == Mode::Nl {
        core.dirty = false;
    }
    core.dlm = guard.filter(LockGuard::is_held);
    let unasked = core.m.given_up(held);
    if idle {
        shared
            .counters
            .idle_releases
            .fetch_add(1, Ordering::Relaxed);
    } else {
        shared.counters.give_ups.fetch_add(1, Ordering::Relaxed);
        if unasked {
            shared
                .counters
                .contended_releases
                .fetch_add(1, Ordering::Relaxed);
        }
    }
    crate::stats::count(&crate::stats::CACHE_GIVE_UPS);
    shared.changed(&mut core);
    let replaced = core.replaced.take();
    // A give-up made by a local caller (`Shared::give_up_here`), not the
    // helper: the cache may have been dropped meanwhile, and its drop
    // waits for the helper, which found the lock being given up and went
    // back to sleep: wake it to close (the close is seen here, under the
    // mutex, or it wakes the helper itself after this).
    let closing = core.m.closing();
    drop(core);
    if let Some(old) = replaced {
        // The helper's thread or a blocking caller's (never a future's):
        // it may write.
        old.unlock_without_waiting();
    }
    if closing {
        shared.wake_helper();
    }
}

/// The helper's idle watch: the cache's use counters compared across
/// checks (no clock read on the hit path).
#[derive(Debug, Default)]
struct Idle {
    uses: u64,
    since: Option<Instant>,
}

enum IdleCheck {
    Release,
    After(Duration),
    Nothing,
}

impl Idle {
    fn check(&mut self, shared: &Shared, m: &Machine, now: Instant, period: Duration) -> IdleCheck {
        if m.phase() != Phase::Serving || m.held() == Mode::Nl {
            self.since = None;
            return IdleCheck::Nothing;
        }
        if m.holders() > 0 {
            // In use now; a release wakes nobody (the hit path stays free
            // of system calls), so look again a period later.
            self.since = None;
            return IdleCheck::After(period);
        }
        let c = &shared.counters;
        let uses = c.hits.load(Ordering::Relaxed) + c.takes.load(Ordering::Relaxed);
        match self.since {
            Some(since) if uses == self.uses => {
                let until = since + period;
                if until <= now {
                    self.since = None;
                    IdleCheck::Release
                } else {
                    IdleCheck::After(until - now)
                }
            }
            _ => {
                self.uses = uses;
                self.since = Some(now);
                IdleCheck::After(period)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_table() {
        for m in Mode::ALL {
            assert!(covers(Mode::Ex, m));
            assert!(covers(m, Mode::Nl));
            assert!(covers(m, m));
        }
        assert!(!covers(Mode::Pr, Mode::Cw));
        assert!(!covers(Mode::Cw, Mode::Pr));
        assert!(covers(Mode::Pw, Mode::Pr));
        assert!(covers(Mode::Pw, Mode::Cw));
        assert!(!covers(Mode::Nl, Mode::Cr));
        assert_eq!(join(Mode::Pr, Mode::Cw), Mode::Pw);
        assert_eq!(join(Mode::Cr, Mode::Pr), Mode::Pr);
        assert_eq!(join(Mode::Nl, Mode::Ex), Mode::Ex);
    }

    #[test]
    fn give_up_targets() {
        assert_eq!(give_up_target(Mode::Ex, None), Mode::Nl);
        assert_eq!(give_up_target(Mode::Ex, Some(Mode::Pr)), Mode::Pr);
        assert_eq!(give_up_target(Mode::Ex, Some(Mode::Ex)), Mode::Nl);
        assert_eq!(give_up_target(Mode::Pr, Some(Mode::Cw)), Mode::Cr);
        assert_eq!(give_up_target(Mode::Pw, Some(Mode::Pr)), Mode::Pr);
    }

    #[test]
    fn hit_after_take_and_give_up() {
        let mut m = Machine::new();
        assert_eq!(m.take(Mode::Ex), Take::ConvertUp(Mode::Ex));
        // A second taker waits while the first converts.
        assert_eq!(m.take(Mode::Pr), Take::Wait);
        m.converted(Mode::Ex, None);
        assert_eq!(m.take(Mode::Ex), Take::Hit);
        m.check();
        assert_eq!(m.take(Mode::Ex), Take::Wait);
        assert_eq!(m.release(Mode::Ex), Wake::default());
        assert_eq!(m.take(Mode::Pr), Take::Hit);
        assert_eq!(m.take(Mode::Pr), Take::Hit);
        m.check();
        // A notification: still served (min hold) until draining starts.
        assert!(m.notify(None));
        assert_eq!(m.take(Mode::Cr), Take::Hit);
        assert!(m.start_drain());
        assert_eq!(m.take_with(Mode::Cr, false), Take::Wait);
        assert_eq!(m.begin_give_up(), None);
        m.release(Mode::Pr);
        m.release(Mode::Pr);
        let w = m.release(Mode::Cr);
        assert!(w.helper);
        assert_eq!(m.begin_give_up(), Some(Mode::Nl));
        m.check();
        assert_eq!(m.take_with(Mode::Pr, false), Take::Wait);
        m.given_up(Mode::Nl);
        assert!(!m.notified());
        assert_eq!(m.take(Mode::Pr), Take::ConvertUp(Mode::Pr));
    }

    #[test]
    fn early_request_while_giving_up() {
        let mut m = Machine::new();
        assert_eq!(m.take(Mode::Ex), Take::ConvertUp(Mode::Ex));
        assert!(m.converted(Mode::Ex, Some(Mode::Ex)));
        assert!(m.notify(None));
        assert!(m.start_drain());
        // A taker that may wait requests the lock anew at once; one that
        // may not, and any second taker, wait.
        assert_eq!(m.take_with(Mode::Ex, false), Take::Wait);
        assert_eq!(m.take(Mode::Ex), Take::Early(Mode::Ex));
        assert_eq!(m.take(Mode::Pr), Take::Wait);
        m.check();
        m.release(Mode::Ex);
        assert_eq!(m.begin_give_up(), Some(Mode::Nl));
        assert!(!m.early_installable());
        m.given_up(Mode::Nl);
        m.check();
        // Given up, the early request still in flight: no second request.
        assert_eq!(m.take(Mode::Pr), Take::Wait);
        assert!(m.early_installable());
        assert!(m.early_granted(Mode::Ex, Mode::Ex));
        assert_eq!(m.held(), Mode::Ex);
        assert_eq!(m.phase(), Phase::Serving);
        m.check();
        // A failed early request frees the slot.
        assert!(m.notify(None));
        assert!(m.start_drain());
        assert_eq!(m.take(Mode::Ex), Take::Early(Mode::Ex));
        m.early_failed();
        assert_eq!(m.take(Mode::Ex), Take::Early(Mode::Ex));
        m.release(Mode::Ex);
        m.early_failed();
        // A give-up to a mode above NL (the waiter's mode known) and a
        // take that mode covers, or that the old mode admits: no early
        // request (the next take converts up, or is a hit).
        let mut m = Machine::new();
        assert_eq!(m.take(Mode::Ex), Take::ConvertUp(Mode::Ex));
        assert!(!m.converted(Mode::Ex, None));
        assert!(m.notify(Some(Mode::Cr)));
        assert!(m.start_drain());
        assert_eq!(m.take(Mode::Ex), Take::Wait);
        let mut m = Machine::new();
        assert_eq!(m.take(Mode::Pr), Take::ConvertUp(Mode::Pr));
        assert!(!m.converted(Mode::Pr, None));
        assert!(m.notify(None));
        assert!(m.start_drain());
        assert_eq!(m.take(Mode::Pr), Take::Wait);
        assert_eq!(m.take(Mode::Ex), Take::Early(Mode::Ex));
        // Closing waits for the early request's end.
        m.close();
        assert_eq!(m.begin_give_up(), Some(Mode::Nl));
        m.given_up(Mode::Nl);
        assert!(!m.begin_close());
        m.early_failed();
        assert!(m.begin_close());
    }

    #[test]
    fn conversion_covers_local_holders() {
        let mut m = Machine::new();
        m.take(Mode::Pr);
        m.converted(Mode::Pr, None);
        assert_eq!(m.take(Mode::Pr), Take::Hit);
        // A CW taker needs a mode covering PR and CW: PW.
        assert_eq!(m.take(Mode::Cw), Take::ConvertUp(Mode::Pw));
        m.converted(Mode::Pw, None);
        // Covered now, but a local PR holder is in the way.
        assert_eq!(m.take(Mode::Cw), Take::Wait);
        m.release(Mode::Pr);
        assert_eq!(m.take(Mode::Cw), Take::Hit);
        m.check();
    }

    #[test]
    fn failed_conversion_keeps_mode() {
        let mut m = Machine::new();
        m.take(Mode::Pr);
        m.converted(Mode::Pr, None);
        assert_eq!(m.take(Mode::Ex), Take::ConvertUp(Mode::Ex));
        m.converted(Mode::Pr, None); // EDEADLK: still PR
        assert_eq!(m.take(Mode::Pr), Take::Hit);
        m.check();
    }

    #[test]
    fn notification_blocks_conversion_up() {
        let mut m = Machine::new();
        m.take(Mode::Pr);
        m.converted(Mode::Pr, None);
        m.notify(None);
        // Needs a conversion, but a waiter is first: wait for the give-up.
        assert_eq!(m.take(Mode::Ex), Take::Wait);
        assert!(m.start_drain());
        assert_eq!(m.begin_give_up(), Some(Mode::Nl));
        m.given_up(Mode::Nl);
        assert_eq!(m.take(Mode::Ex), Take::ConvertUp(Mode::Ex));
    }

    #[test]
    fn notification_during_conversion_from_nl_is_kept() {
        // The grant of a conversion up and the notification for it come
        // back to back: the helper may see the notification while the
        // taker has not recorded the grant yet (held still NL).
        let mut m = Machine::new();
        assert_eq!(m.take(Mode::Ex), Take::ConvertUp(Mode::Ex));
        assert!(m.notify(None));
        m.converted(Mode::Ex, None);
        assert!(m.notified());
        assert!(m.start_drain());
        assert_eq!(m.begin_give_up(), Some(Mode::Nl));
        m.given_up(Mode::Nl);
        assert!(!m.notified());
        // A conversion that ends at NL (refused) forgets it.
        assert_eq!(m.take(Mode::Ex), Take::ConvertUp(Mode::Ex));
        assert!(m.notify(None));
        m.converted(Mode::Nl, None);
        assert!(!m.notified());
        m.check();
    }

    #[test]
    fn notifications_while_given_up_are_ignored() {
        let mut m = Machine::new();
        assert!(!m.notify(None));
        m.take(Mode::Ex);
        m.converted(Mode::Ex, None);
        m.notify(Some(Mode::Pr));
        m.notify(Some(Mode::Cr));
        m.start_drain();
        assert_eq!(m.begin_give_up(), Some(Mode::Pr));
        assert!(!m.notify(None));
        m.given_up(Mode::Pr);
        assert!(!m.notified());
        assert_eq!(m.take(Mode::Pr), Take::Hit);
    }

    #[test]
    fn idle_release_and_close() {
        let mut m = Machine::new();
        assert!(!m.begin_idle_release());
        m.take(Mode::Ex);
        m.converted(Mode::Ex, None);
        assert_eq!(m.take(Mode::Ex), Take::Hit);
        assert!(!m.begin_idle_release());
        m.release(Mode::Ex);
        assert!(m.begin_idle_release());
        m.given_up(Mode::Nl);
        m.take(Mode::Pr);
        m.converted(Mode::Pr, None);
        m.take(Mode::Pr);
        m.close();
        assert_eq!(m.take(Mode::Pr), Take::Closed);
        assert!(!m.begin_close());
        assert!(m.release(Mode::Pr).helper);
        assert!(m.begin_close());
        assert_eq!(m.phase(), Phase::Closed);
    }

    /// A notification that arrives while a taker converts up (minimum
    /// hold time zero) cannot drain the lock before that taker is served:
    /// every conversion serves the take that made it.
    #[test]
    fn a_granted_conversion_serves_its_taker_before_a_drain() {
        let mut m = Machine::new();
        assert_eq!(m.take(Mode::Ex), Take::ConvertUp(Mode::Ex));
        assert!(m.notify(None));
        assert!(m.converted(Mode::Ex, Some(Mode::Ex)));
        assert_eq!(m.holders(), 1);
        assert!(m.start_drain());
        assert_eq!(m.begin_give_up(), None, "the served taker still holds it");
        m.release(Mode::Ex);
        assert_eq!(m.begin_give_up(), Some(Mode::Nl));
        m.given_up(Mode::Nl);
        // Refused (a timeout): nobody is served, the old mode stays.
        assert_eq!(m.take(Mode::Pr), Take::ConvertUp(Mode::Pr));
        assert!(!m.converted(Mode::Nl, None));
        assert_eq!(m.holders(), 0);
        m.check();
    }

    /// While a taker converts PR up to EX, a local PR take is not served
    /// from the old mode: it would keep the converted taker from being
    /// served by its own conversion.
    #[test]
    fn takes_beside_a_conversion_must_be_compatible_with_its_taker() {
        let mut m = Machine::new();
        assert_eq!(m.take(Mode::Pr), Take::ConvertUp(Mode::Pr));
        assert!(m.converted(Mode::Pr, Some(Mode::Pr)));
        m.release(Mode::Pr);
        assert_eq!(m.take(Mode::Ex), Take::ConvertUp(Mode::Ex));
        assert_eq!(m.take(Mode::Pr), Take::Wait);
        assert_eq!(m.take(Mode::Nl), Take::Hit);
        assert!(m.notify(None));
        assert!(m.converted(Mode::Ex, Some(Mode::Ex)));
        m.check();
    }

    /// A cache with no minimum hold: a notification within a few uses of
    /// the take makes the next releases give the lock up unasked, for a
    /// stretch that grows; one after many uses ends that.
    #[test]
    fn contention_gives_up_at_release() {
        // Takes the lock in EX (from NL: a new request granted).
        fn take_ex(m: &mut Machine) {
            assert_eq!(m.take(Mode::Ex), Take::ConvertUp(Mode::Ex));
            assert!(m.converted(Mode::Ex, Some(Mode::Ex)));
        }
        fn give_up(m: &mut Machine) {
            assert_eq!(m.begin_give_up(), Some(Mode::Nl));
            m.given_up(Mode::Nl);
        }
        let mut m = Machine::adaptive();
        take_ex(&mut m);
        // Asked while the first local holder holds: contended.
        assert!(m.notify(None));
        assert_eq!(m.eager(), FIRST_STREAK);
        let w = m.release(Mode::Ex);
        assert!(!w.contended, "asked: an ordinary drain");
        assert!(m.start_drain());
        give_up(&mut m);
        // The next takes request the lock without notifications: each
        // serves only its taker (a second take waits) and is given up at
        // its release, once.
        for _ in 0..FIRST_STREAK {
            assert_eq!(m.take(Mode::Ex), Take::ConvertUp(Mode::Ex));
            assert!(m.unasked(false));
            assert!(m.converted(Mode::Ex, Some(Mode::Ex)));
            assert!(m.held_unasked && m.phase() == Phase::Draining);
            assert_eq!(m.take_with(Mode::Nl, false), Take::Wait);
            assert!(!m.notify(None), "the kernel sends none; ignored");
            let w = m.release(Mode::Ex);
            assert!(w.contended && w.helper);
            assert_eq!(m.phase(), Phase::Draining);
            give_up(&mut m);
            assert_eq!(m.held(), Mode::Nl);
        }
        take_ex(&mut m);
        assert!(!m.held_unasked, "the first stretch is over");
        assert!(!m.release(Mode::Ex).contended);
        // Asked again soon after the take: a longer stretch.
        let second = (FIRST_STREAK * STREAK_GROWTH).min(MAX_STREAK);
        assert!(m.notify(None));
        assert_eq!(m.eager(), second);
        assert!(m.start_drain());
        give_up(&mut m);
        for _ in 0..second {
            take_ex(&mut m);
            assert!(m.release(Mode::Ex).contended);
            give_up(&mut m);
        }
        // Many local uses, then asked: the cache pays off, back to holding.
        take_ex(&mut m);
        m.release(Mode::Ex);
        for _ in 0..CONTENDED_USES {
            assert_eq!(m.take(Mode::Ex), Take::Hit);
            m.release(Mode::Ex);
        }
        assert!(m.notify(None));
        assert_eq!(m.eager(), 0);
        assert!(m.start_drain());
        give_up(&mut m);
        take_ex(&mut m);
        assert!(!m.release(Mode::Ex).contended);
        // The stretch never passes MAX_STREAK.
        for _ in 0..20 {
            assert!(m.notify(None));
            assert!(m.eager() <= MAX_STREAK);
            m.eager = 0;
            assert!(m.start_drain());
            give_up(&mut m);
            take_ex(&mut m);
            m.release(Mode::Ex);
        }
        // A cache with a minimum hold never gives up unasked.
        let mut m = Machine::new();
        take_ex(&mut m);
        assert!(m.notify(None));
        assert_eq!(m.eager(), 0);
        assert!(!m.release(Mode::Ex).contended);
    }

    /// A xorshift generator of pseudo-random numbers from `seed`.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    /// One local use of an adaptive machine; `remote`: another holder
    /// waits for the lock (the kernel notifies a lock requested with
    /// notifications). Returns whether the use was a hit, and whether the
    /// lock was given up (the waiter then took and released it).
    fn use_once(m: &mut Machine, remote: bool) -> (bool, bool) {
        let hit = match m.take(Mode::Ex) {
            Take::Hit => true,
            Take::ConvertUp(t) => {
                assert!(m.converted(t, Some(Mode::Ex)));
                false
            }
            other => panic!("{other:?}"),
        };
        if remote && !m.held_unasked {
            m.notify(None);
        }
        m.release(Mode::Ex);
        m.start_drain();
        let gave = match m.begin_give_up() {
            Some(t) => {
                m.given_up(t);
                true
            }
            None => false,
        };
        m.check();
        (hit, gave)
    }

    /// After a burst of contention, a lock used mostly here is cached
    /// again: a stretch runs out instead of renewing itself (the review's
    /// case: ping-pong, then another holder asking once in 30 local uses;
    /// every stretch release takes the lock with one use, so each request
    /// landing meanwhile looked contended and kept the stretch at 64).
    #[test]
    fn contention_stretches_run_out() {
        let mut m = Machine::adaptive();
        for _ in 0..200 {
            use_once(&mut m, true);
        }
        let (mut hits, mut waiting) = (0, false);
        for i in 0..2800 {
            waiting |= i % 30 == 0;
            let (hit, gave) = use_once(&mut m, waiting);
            hits += u32::from(hit);
            if gave {
                waiting = false;
            }
        }
        assert!(hits > 2000, "{hits} hits of 2800 uses");
    }

    /// Another holder asks for the lock at random, once in `n` local uses
    /// on average: a lock used mostly here stays a cached one. A false
    /// alarm (an ask that comes soon after a take by chance) starts a
    /// stretch that gives the lock up at the next releases; the first
    /// stretch is one release long, so a false alarm costs one give-up,
    /// and hits stay near what holding the lock until asked would give
    /// (at most 1 - 1/n). With stretches starting at 4 this was 28% hits
    /// at n = 6 and 89% at n = 20 (the review's simulation); starting at
    /// 1 and doubling, 62% and 94%.
    #[test]
    fn random_asks_keep_a_mostly_local_lock() {
        for (n, at_least) in [(20u64, 0.90), (100, 0.97)] {
            for seed in [0x2545_f491_4f6c_dd1d_u64, 0x9e37_79b9_7f4a_7c15] {
                let mut next = xorshift(seed);
                let mut m = Machine::adaptive();
                let (mut hits, mut waiting) = (0u32, false);
                let uses = 20_000;
                for _ in 0..uses {
                    waiting |= next() % n == 0;
                    let (hit, gave) = use_once(&mut m, waiting);
                    hits += u32::from(hit);
                    if gave {
                        waiting = false;
                    }
                }
                let share = f64::from(hits) / f64::from(uses);
                println!("seed {seed:#x}, an ask per {n} uses: {share:.3} hits");
                assert!(share >= at_least, "seed {seed:#x}, n {n}: {share:.3} hits");
            }
        }
    }

    /// Random sequences of every transition keep the invariants.
    #[test]
    fn random_transitions_keep_invariants() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for i in 0..400 {
            // Half the runs adapt to contention (no minimum hold).
            let mut m = if i % 2 == 0 {
                Machine::new()
            } else {
                Machine::adaptive()
            };
            let mut held: Vec<Mode> = Vec::new();
            // An early request in flight: (its mode, the taker's).
            let mut early: Option<(Mode, Mode)> = None;
            for _ in 0..200 {
                let r = next();
                let mode = Mode::ALL[(r >> 8) as usize % 6];
                if let Some((t, taker)) = early {
                    // Its answer: refused, or granted (installed once the
                    // give-up has answered).
                    if next() % 8 == 0 {
                        m.early_failed();
                        early = None;
                    } else if m.early_installable() && next() % 2 == 0 {
                        if m.early_granted(t, taker) {
                            held.push(taker);
                        }
                        early = None;
                    }
                    m.check();
                }
                match r % 8 {
                    0 | 1 => match m.take(mode) {
                        Take::Hit => held.push(mode),
                        Take::ConvertUp(t) => {
                            assert!(covers(t, mode));
                            // Granted, or refused (old mode kept).
                            if next() % 4 == 0 {
                                // Refused: the old mode is kept.
                                let h = m.held();
                                m.converted(h, None);
                            } else if m.converted(t, Some(mode)) {
                                held.push(mode);
                            }
                        }
                        Take::Early(t) => {
                            assert!(early.is_none());
                            assert!(!m.held().is_compatible(t) || m.held() == Mode::Nl);
                            early = Some((t, mode));
                        }
                        Take::Wait | Take::Closed => {}
                    },
                    2 | 3 => {
                        if !held.is_empty() {
                            let i = (next() as usize) % held.len();
                            let w = m.release(held.swap_remove(i));
                            if w.contended {
                                assert!(m.adaptive);
                                assert_eq!(m.phase(), Phase::Draining);
                                assert!(w.helper && m.holders() == 0);
                            }
                        }
                    }
                    4 => {
                        let w = if next() % 2 == 0 { None } else { Some(mode) };
                        m.notify(w);
                    }
                    5 => {
                        m.start_drain();
                        if m.phase() == Phase::Draining {
                            assert_eq!(m.take_with(mode, false), Take::Wait);
                        }
                    }
                    6 => {
                        if let Some(t) = m.begin_give_up() {
                            m.check();
                            m.given_up(t);
                        }
                    }
                    _ => {
                        if m.begin_idle_release() {
                            m.check();
                            m.given_up(Mode::Nl);
                        }
                    }
                }
                m.check();
            }
        }
    }
}

/// The cache's state machine under the loom model checker: local takers,
/// releases, a notification and the helper's give-up, in every
/// interleaving, with the same transitions and the same wake-up rules as
/// the cache (a mutex, a condition variable, the helper woken by the
/// release that lets it go on). The DLM is a model: a conversion is
/// granted at once. The `loom_cache_*` tests model the whole cache
/// (`whole`: the helper's loop, `drain_here` on takes and releases,
/// notification channels, `no_wait`, failed early requests, the minimum
/// hold, idle releases, close), each with a preemption bound (2 with two
/// local users, 4 with one; at most about 70 s each in release). Run with
/// `RUSTFLAGS="--cfg dlm_loom" cargo test -p libdlm --lib --release loom_`.
#[cfg(all(test, dlm_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::{Arc, Condvar, Mutex};
    use loom::thread;

    struct Model {
        m: Mutex<(Machine, u64, bool)>,
        changed: Condvar,
        /// The helper's wake-up (a flag under the mutex, with its own
        /// condition variable).
        helper: Condvar,
    }

    impl Model {
        fn new(held: Mode) -> Model {
            let mut m = Machine::new();
            if held != Mode::Nl {
                assert_eq!(m.take(held), Take::ConvertUp(held));
                assert!(m.converted(held, Some(held)));
                m.release(held);
            }
            Model {
                m: Mutex::new((m, 0, false)),
                changed: Condvar::new(),
                helper: Condvar::new(),
            }
        }

        /// A local take, waiting as the cache does; the conversion is
        /// granted at once.
        fn take(&self, mode: Mode) {
            let mut g = self.m.lock().unwrap();
            loop {
                match g.0.take(mode) {
                    Take::Hit => {
                        g.0.check();
                        return;
                    }
                    Take::ConvertUp(t) => {
                        drop(g);
                        thread::yield_now();
                        g = self.m.lock().unwrap();
                        let served = g.0.converted(t, Some(mode));
                        g.1 += 1;
                        self.changed.notify_all();
                        self.helper.notify_all();
                        if served {
                            g.0.check();
                            return;
                        }
                    }
                    Take::Early(t) => {
                        // The request is sent; the model DLM grants it
                        // once the old lock is down, and the taker
                        // installs it once the give-up has answered.
                        drop(g);
                        thread::yield_now();
                        g = self.m.lock().unwrap();
                        while !g.0.early_installable() {
                            let epoch = g.1;
                            g.0.waiting += 1;
                            while g.1 == epoch {
                                g = self.changed.wait(g).unwrap();
                            }
                            g.0.waiting -= 1;
                        }
                        let served = g.0.early_granted(t, mode);
                        g.1 += 1;
                        self.changed.notify_all();
                        self.helper.notify_all();
                        if served {
                            g.0.check();
                            return;
                        }
                    }
                    Take::Wait => {
                        let epoch = g.1;
                        g.0.waiting += 1;
                        while g.1 == epoch {
                            g = self.changed.wait(g).unwrap();
                        }
                        g.0.waiting -= 1;
                    }
                    Take::Closed => unreachable!(),
                }
            }
        }

        /// A release; the last local holder starts the drain itself when
        /// a notification is pending (`Shared::drain_here`, min hold 0).
        fn release(&self, mode: Mode) {
            let mut g = self.m.lock().unwrap();
            let w = g.0.release(mode);
            g.1 += 1;
            let drained = g.0.holders() == 0
                && g.0.phase() == Phase::Serving
                && g.0.held() != Mode::Nl
                && g.0.notified()
                && g.0.start_drain();
            if w.waiters || drained {
                self.changed.notify_all();
            }
            if w.helper || drained {
                self.helper.notify_all();
            }
        }

        /// The helper: a notification came; drain (min hold 0), give up,
        /// then stop.
        fn helper(&self) {
            let mut g = self.m.lock().unwrap();
            if !g.0.notify(None) {
                return;
            }
            // A taker converting up finishes first; a releaser may have
            // started the drain already.
            while g.0.phase() != Phase::Draining && !g.0.start_drain() {
                g = self.helper.wait(g).unwrap();
            }
            g.1 += 1;
            self.changed.notify_all();
            let target = loop {
                if let Some(t) = g.0.begin_give_up() {
                    break t;
                }
                g = self.helper.wait(g).unwrap();
            };
            g.0.check();
            drop(g);
            thread::yield_now();
            let mut g = self.m.lock().unwrap();
            g.0.given_up(target);
            g.2 = true;
            g.1 += 1;
            self.changed.notify_all();
        }
    }

    /// Two local EX users and a notification: exclusion holds, the helper
    /// gives the lock up once both are done with it (no local user can
    /// starve it: loom would report the helper never woken), and nobody
    /// is left waiting.
    #[test]
    fn loom_drain_and_give_up_with_local_takers() {
        loom::model(|| {
            let model = Arc::new(Model::new(Mode::Ex));
            let users: Vec<_> = [Mode::Ex, Mode::Ex]
                .into_iter()
                .map(|mode| {
                    let model = model.clone();
                    thread::spawn(move || {
                        model.take(mode);
                        model.release(mode);
                    })
                })
                .collect();
            model.helper();
            for u in users {
                u.join().unwrap();
            }
            let g = model.m.lock().unwrap();
            assert!(g.2, "the lock was given up");
            assert_eq!(g.0.holders(), 0);
        });
    }

    /// Shared and exclusive local users, one converting the lock up, while
    /// a notification arrives: every interleaving ends with everyone done.
    #[test]
    fn loom_conversion_up_races_notification() {
        loom::model(|| {
            let model = Arc::new(Model::new(Mode::Pr));
            let users: Vec<_> = [Mode::Pr, Mode::Ex]
                .into_iter()
                .map(|mode| {
                    let model = model.clone();
                    thread::spawn(move || {
                        model.take(mode);
                        model.release(mode);
                    })
                })
                .collect();
            model.helper();
            for u in users {
                u.join().unwrap();
            }
            let g = model.m.lock().unwrap();
            assert_eq!(g.0.holders(), 0);
            assert!(g.2);
        });
    }

    /// The cache as a whole, for the scenarios the model above leaves
    /// out: the helper runs the loop of `run_helper` (close, drain, give
    /// up, idle release, then waits for its wake-up or a notification),
    /// local takes and releases start the drain themselves
    /// (`Shared::drain_here`), notifications go through the DLM lock's
    /// channel (a new lock has a new one: the old lock's unread ones are
    /// dropped), takes may be `no_wait`, an early request may fail, the
    /// minimum hold time is a clock thread's tick, and the cache closes
    /// (the helper stops only then). The DLM grants every conversion and
    /// request at once (after a yield); an early request is installed once
    /// the give-up has answered.
    mod whole {
        use super::*;
        use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
        use loom::thread;

        /// A local user's steps, run on a thread of its own.
        pub(super) type User = Box<dyn FnOnce(&Cache) + Send>;

        /// How an early request ends.
        #[derive(Clone, Copy, PartialEq, Eq)]
        pub(super) enum Early {
            /// Granted and installed.
            Granted,
            /// Failed (a timeout, a cancel) as soon as it was sent.
            Fails,
            /// The future dropped while waiting to install it, once the
            /// give-up answered (`abandon_early` from `Serving`).
            DroppedAfterGiveUp,
        }

        #[derive(Default, Debug)]
        pub(super) struct Seen {
            pub(super) early_failed: u32,
            pub(super) early_failed_serving: u32,
            pub(super) installs: u32,
            pub(super) give_ups: u32,
            pub(super) idle_releases: u32,
            pub(super) early_in_idle_release: u32,
            pub(super) drains_by_take: u32,
            pub(super) drains_by_release: u32,
            pub(super) no_wait_refused: u32,
            pub(super) no_wait_conversion_refused: u32,
            pub(super) hits_while_notified: u32,
            pub(super) close_with_early: u32,
            pub(super) notified_after_install: u32,
            pub(super) early_after_failed: u32,
            pub(super) second_give_up_after_install: u32,
            pub(super) give_ups_here: u32,
            pub(super) contended_releases: u32,
            pub(super) unasked_takes: u32,
        }

        impl Seen {
            /// Adds another execution's counts.
            pub(super) fn add(&mut self, o: &Seen) {
                self.early_failed += o.early_failed;
                self.early_failed_serving += o.early_failed_serving;
                self.installs += o.installs;
                self.give_ups += o.give_ups;
                self.idle_releases += o.idle_releases;
                self.early_in_idle_release += o.early_in_idle_release;
                self.drains_by_take += o.drains_by_take;
                self.drains_by_release += o.drains_by_release;
                self.no_wait_refused += o.no_wait_refused;
                self.no_wait_conversion_refused += o.no_wait_conversion_refused;
                self.hits_while_notified += o.hits_while_notified;
                self.close_with_early += o.close_with_early;
                self.notified_after_install += o.notified_after_install;
                self.early_after_failed += o.early_after_failed;
                self.second_give_up_after_install += o.second_give_up_after_install;
                self.give_ups_here += o.give_ups_here;
                self.contended_releases += o.contended_releases;
                self.unasked_takes += o.unasked_takes;
            }
        }

        pub(super) struct State {
            pub(super) m: Machine,
            epoch: u64,
            /// The DLM lock's generation: a new lock has a new channel.
            gen: u32,
            /// Unread notifications in the current lock's channel.
            bast: u32,
            /// The helper's wake-up (a channel of one).
            wake: bool,
            /// The minimum hold time has passed since the last take.
            hold_passed: bool,
            min_hold: bool,
            idle: u32,
            /// The current lock is an installed early request.
            installed: bool,
            /// Seen `Draining` since the last give-up answered.
            drained: bool,
            /// An early request failed since the last give-up.
            early_failed_since: bool,
            /// The users are blocking calls: a take or release that finds
            /// the lock drained and no local holder gives it up itself
            /// (`Shared::give_up_here`).
            inline: bool,
            pub(super) seen: Seen,
        }

        pub(super) struct Cache {
            pub(super) s: Mutex<State>,
            changed: Condvar,
            helper: Condvar,
        }

        impl Cache {
            /// A cache holding `held`; `min_hold`: the hold time has not
            /// passed yet (a clock thread's `tick` says when it has);
            /// `idle`: how many idle releases the helper may make.
            pub(super) fn new(held: Mode, min_hold: bool, idle: u32) -> Cache {
                let mut m = Machine::new();
                if held != Mode::Nl {
                    assert_eq!(m.take(held), Take::ConvertUp(held));
                    assert!(m.converted(held, Some(held)));
                    m.release(held);
                }
                Cache {
                    s: Mutex::new(State {
                        m,
                        epoch: 0,
                        gen: 0,
                        bast: 0,
                        wake: false,
                        hold_passed: !min_hold,
                        min_hold,
                        idle,
                        installed: false,
                        drained: false,
                        early_failed_since: false,
                        inline: false,
                        seen: Seen::default(),
                    }),
                    changed: Condvar::new(),
                    helper: Condvar::new(),
                }
            }

            /// The same cache with no minimum hold time, adapting to
            /// contention (`Machine::adaptive`).
            pub(super) fn adaptive(self) -> Cache {
                self.s.lock().unwrap().m.adaptive = true;
                self
            }

            /// The same cache, its users blocking calls (which give the
            /// lock up themselves).
            pub(super) fn inline(self) -> Cache {
                self.s.lock().unwrap().inline = true;
                self
            }

            /// `Shared::give_up_here`: the give-up's target, begun here.
            fn give_up_here(s: &mut State) -> Option<Mode> {
                if !s.inline || s.m.closing() {
                    return None;
                }
                let target = s.m.begin_give_up()?;
                s.seen.give_ups_here += 1;
                Some(target)
            }

            /// The invariants after a step; `served`: a local holder was
            /// just added.
            fn check(s: &mut State, served: bool) {
                s.m.check();
                // (Served before the drain flag is taken: a lock requested
                // without notifications serves its taker, then drains, in
                // one step.)
                if served {
                    assert!(!s.drained, "a new local holder after the drain began");
                    if s.m.notified() && !s.m.held_unasked {
                        s.seen.hits_while_notified += 1;
                    }
                    if s.m.held_unasked {
                        s.seen.unasked_takes += 1;
                    }
                }
                if s.m.phase == Phase::Draining {
                    s.drained = true;
                }
                if s.m.phase == Phase::Closed {
                    assert_eq!(s.m.holders(), 0);
                    assert!(s.m.early.is_none(), "closed beside an early request");
                }
            }

            fn changed(&self, s: &mut State) {
                s.epoch += 1;
                self.changed.notify_all();
            }

            fn wake_helper(&self, s: &mut State) {
                s.wake = true;
                self.helper.notify_all();
            }

            fn wait<'a>(&'a self, mut g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
                let epoch = g.epoch;
                g.m.waiting += 1;
                while g.epoch == epoch {
                    g = self.changed.wait(g).unwrap();
                }
                g.m.waiting -= 1;
                g
            }

            /// `Shared::drain_here`.
            fn drain_here(&self, s: &mut State) -> bool {
                if s.m.holders() > 0
                    || s.m.phase() != Phase::Serving
                    || s.m.held() == Mode::Nl
                    || s.m.closing()
                {
                    return false;
                }
                let read = s.bast > 0;
                if read {
                    s.bast -= 1;
                    s.m.notify(None);
                }
                if !s.m.notified() || !s.hold_passed {
                    return read;
                }
                if s.m.start_drain() {
                    Self::check(s, false);
                    self.changed(s);
                    return true;
                }
                read
            }

            /// A new DLM lock (a request granted): a new channel, a new
            /// hold.
            fn new_lock(s: &mut State) {
                s.gen += 1;
                s.bast = 0;
                if s.min_hold {
                    s.hold_passed = false;
                }
            }

            /// A local take (`CachedLock::lock_with`); returns whether it
            /// was served (then the caller releases).
            pub(super) fn take(&self, mode: Mode, no_wait: bool, early: Early) -> bool {
                let mut g = self.s.lock().unwrap();
                loop {
                    let drained = self.drain_here(&mut g);
                    if drained {
                        g.seen.drains_by_take += 1;
                    }
                    if let Some(target) = Self::give_up_here(&mut g) {
                        g = self.give_up(g, target, false);
                    } else if drained {
                        self.wake_helper(&mut g);
                    }
                    let idle_give_up = g.m.phase() == Phase::GivingUp && !g.drained;
                    match g.m.take_with(mode, !no_wait) {
                        Take::Hit => {
                            Self::check(&mut g, true);
                            return true;
                        }
                        Take::ConvertUp(t) => {
                            let unasked = g.m.unasked(false);
                            Self::check(&mut g, false);
                            drop(g);
                            thread::yield_now();
                            g = self.s.lock().unwrap();
                            if no_wait {
                                // Refused (`LKF_NOQUEUE`: the holder that
                                // notified is in the way): the old mode
                                // stays.
                                let held = g.m.held();
                                let served = g.m.converted(held, None);
                                assert!(!served);
                                g.seen.no_wait_conversion_refused += 1;
                                Self::check(&mut g, false);
                                self.changed(&mut g);
                                self.wake_helper(&mut g);
                                return false;
                            }
                            if g.m.held() == Mode::Nl {
                                Self::new_lock(&mut g);
                                g.installed = false;
                            }
                            let served = g.m.converted(t, Some(mode));
                            Self::check(&mut g, served);
                            self.changed(&mut g);
                            if !(unasked && served) {
                                self.wake_helper(&mut g);
                            }
                            if served {
                                return true;
                            }
                        }
                        Take::Early(t) => {
                            assert!(!no_wait, "a no_wait take made an early request");
                            let unasked = g.m.unasked(true);
                            if idle_give_up {
                                g.seen.early_in_idle_release += 1;
                            }
                            if g.early_failed_since {
                                g.seen.early_after_failed += 1;
                            }
                            Self::check(&mut g, false);
                            drop(g);
                            thread::yield_now();
                            g = self.s.lock().unwrap();
                            if early == Early::Fails {
                                g.m.early_failed();
                                g.seen.early_failed += 1;
                                g.early_failed_since = true;
                                Self::check(&mut g, false);
                                self.changed(&mut g);
                                self.wake_helper(&mut g);
                                return false;
                            }
                            while !g.m.early_installable() {
                                g = self.wait(g);
                            }
                            if early == Early::DroppedAfterGiveUp {
                                g.m.early_failed();
                                g.seen.early_failed += 1;
                                g.seen.early_failed_serving += 1;
                                g.early_failed_since = true;
                                Self::check(&mut g, false);
                                self.changed(&mut g);
                                self.wake_helper(&mut g);
                                return false;
                            }
                            Self::new_lock(&mut g);
                            g.installed = true;
                            g.seen.installs += 1;
                            let served = g.m.early_granted(t, mode);
                            Self::check(&mut g, served);
                            self.changed(&mut g);
                            if !(unasked && served) {
                                self.wake_helper(&mut g);
                            }
                            if served {
                                return true;
                            }
                        }
                        Take::Wait if no_wait => {
                            g.seen.no_wait_refused += 1;
                            return false;
                        }
                        Take::Wait => g = self.wait(g),
                        Take::Closed => return false,
                    }
                }
            }

            /// A local guard dropped (`CachedGuard::drop`).
            pub(super) fn release(&self, mode: Mode) {
                let mut g = self.s.lock().unwrap();
                let w = g.m.release(mode);
                if w.contended {
                    g.seen.contended_releases += 1;
                }
                Self::check(&mut g, false);
                if w.waiters {
                    self.changed(&mut g);
                } else {
                    g.epoch += 1;
                }
                let drained = self.drain_here(&mut g);
                if drained && g.m.phase() == Phase::Draining {
                    g.seen.drains_by_release += 1;
                }
                if let Some(target) = Self::give_up_here(&mut g) {
                    drop(self.give_up(g, target, false));
                    return;
                }
                if w.helper || drained {
                    self.wake_helper(&mut g);
                }
            }

            /// The kernel sends a blocking notification to the lock of
            /// generation `gen` (dropped if it was replaced).
            pub(super) fn notify(&self, gen: u32) {
                let mut g = self.s.lock().unwrap();
                // (The kernel sends none to a lock requested without.)
                if g.gen == gen && !g.m.held_unasked {
                    g.bast += 1;
                    self.helper.notify_all();
                }
            }

            /// The kernel sends a blocking notification to the lock held
            /// now.
            pub(super) fn notify_now(&self) {
                let gen = self.s.lock().unwrap().gen;
                self.notify(gen);
            }

            /// The helper's timeout: the minimum hold time has passed (an
            /// idle release is tried whenever the helper looks).
            pub(super) fn tick(&self) {
                let mut g = self.s.lock().unwrap();
                g.hold_passed = true;
                self.wake_helper(&mut g);
            }

            /// The `CachedLock` dropped (no guard left: its drop waits for
            /// the helper).
            pub(super) fn close(&self) {
                let mut g = self.s.lock().unwrap();
                if g.m.early.is_some() {
                    g.seen.close_with_early += 1;
                }
                g.m.close();
                Self::check(&mut g, false);
                self.changed(&mut g);
                self.wake_helper(&mut g);
            }

            fn give_up<'a>(
                &'a self,
                mut g: MutexGuard<'a, State>,
                target: Mode,
                idle: bool,
            ) -> MutexGuard<'a, State> {
                Self::check(&mut g, false);
                drop(g);
                thread::yield_now();
                let mut g = self.s.lock().unwrap();
                g.m.given_up(target);
                g.drained = false;
                g.early_failed_since = false;
                if idle {
                    g.seen.idle_releases += 1;
                } else {
                    g.seen.give_ups += 1;
                    if g.installed && g.seen.notified_after_install > 0 {
                        g.seen.second_give_up_after_install += 1;
                    }
                }
                Self::check(&mut g, false);
                self.changed(&mut g);
                // `give_up`: a closing cache's helper is woken (it may
                // have found the lock being given up here and slept).
                if g.m.closing() {
                    self.wake_helper(&mut g);
                }
                g
            }

            /// `run_helper`.
            pub(super) fn helper(&self) {
                let mut g = self.s.lock().unwrap();
                loop {
                    if g.m.begin_close() {
                        Self::check(&mut g, false);
                        self.changed(&mut g);
                        return;
                    }
                    if g.m.notified() && g.m.phase() == Phase::Serving && g.hold_passed {
                        g.m.start_drain();
                        Self::check(&mut g, false);
                        self.changed(&mut g);
                    }
                    if let Some(target) = g.m.begin_give_up() {
                        g = self.give_up(g, target, false);
                        continue;
                    }
                    if g.idle > 0 && g.m.begin_idle_release() {
                        g.idle -= 1;
                        g = self.give_up(g, Mode::Nl, true);
                        continue;
                    }
                    // Wait for the channel or the wake-up (the timeout is
                    // the clock thread's tick).
                    while !g.wake && g.bast == 0 {
                        g = self.helper.wait(g).unwrap();
                    }
                    if g.bast > 0 {
                        g.bast -= 1;
                        if g.m.notify(None) && g.installed {
                            g.seen.notified_after_install += 1;
                        }
                        Self::check(&mut g, false);
                    } else {
                        g.wake = false;
                    }
                }
            }
        }

        /// Runs `users` (each with the cache) beside the helper, the
        /// notifications `notes` (of lock generations, sent at once) and, with a
        /// minimum hold, the clock's tick (from this thread); `close_early`: the cache closes
        /// while the users run (else after them). Returns what was seen.
        pub(super) fn run(
            cache: Cache,
            users: Vec<User>,
            notes: &[u32],
            close_early: bool,
        ) -> Seen {
            let cache = Arc::new(cache);
            let helper = {
                let c = cache.clone();
                thread::spawn(move || c.helper())
            };
            let mut others = Vec::new();
            if !notes.is_empty() {
                let c = cache.clone();
                let notes = notes.to_vec();
                others.push(thread::spawn(move || {
                    for n in notes {
                        c.notify(n);
                    }
                }));
            }
            let users: Vec<_> = users
                .into_iter()
                .map(|u| {
                    let c = cache.clone();
                    thread::spawn(move || u(&c))
                })
                .collect();
            // The clock (loom allows five threads: this one ticks): the
            // helper's timeout, for the minimum hold or the idle time.
            let timed = {
                let g = cache.s.lock().unwrap();
                g.min_hold || g.idle > 0
            };
            if timed {
                cache.tick();
            }
            if close_early {
                cache.close();
            }
            for u in users {
                u.join().unwrap();
            }
            if !close_early {
                cache.close();
            }
            for t in others {
                t.join().unwrap();
            }
            helper.join().unwrap();
            let mut g = cache.s.lock().unwrap();
            assert_eq!(g.m.phase(), Phase::Closed);
            assert_eq!(g.m.holders(), 0);
            assert_eq!(g.m.waiting, 0);
            std::mem::take(&mut g.seen)
        }
    }

    /// A test of the whole cache: every interleaving with at most
    /// `bound` preemptions; returns the counts summed over them.
    fn check_whole(
        bound: usize,
        f: impl Fn() -> (whole::Cache, Vec<whole::User>, Vec<u32>, bool) + Send + Sync + 'static,
    ) -> whole::Seen {
        let total = std::sync::Arc::new(std::sync::Mutex::new(whole::Seen::default()));
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(bound);
        let t = total.clone();
        model.check(move || {
            let (cache, users, notes, close_early) = f();
            let seen = whole::run(cache, users, &notes, close_early);
            t.lock().unwrap().add(&seen);
        });
        let mut seen = total.lock().unwrap();
        std::mem::take(&mut *seen)
    }

    /// A user's steps, one after another.
    enum Step {
        /// A take (mode, `no_wait`, how an early request ends), released
        /// at once when served.
        Take(Mode, bool, whole::Early),
        /// A take; while it holds, the kernel notifies the lock held now
        /// (another holder asks for it).
        TakeNotified(Mode),
    }

    fn user(steps: Vec<Step>) -> whole::User {
        Box::new(move |c: &whole::Cache| {
            for step in steps {
                match step {
                    Step::Take(mode, no_wait, early) => {
                        if c.take(mode, no_wait, early) {
                            c.release(mode);
                        }
                    }
                    Step::TakeNotified(mode) => {
                        if c.take(mode, false, Granted) {
                            c.notify_now();
                            c.release(mode);
                        }
                    }
                }
            }
        })
    }

    use whole::Early::{DroppedAfterGiveUp, Fails, Granted};

    /// An early request fails (a timeout, a cancel) during the give-up;
    /// its taker tries again and another takes beside it: the slot is
    /// freed, a later take requests again, the give-up goes on, nobody
    /// waits for ever.
    #[test]
    fn loom_cache_early_fails_then_retry() {
        let seen = check_whole(2, || {
            (
                whole::Cache::new(Mode::Ex, false, 0),
                vec![
                    user(vec![
                        Step::Take(Mode::Ex, false, Fails),
                        Step::Take(Mode::Ex, false, Granted),
                    ]),
                    user(vec![Step::Take(Mode::Ex, false, Granted)]),
                ],
                vec![0],
                false,
            )
        });
        assert!(seen.early_failed > 0 && seen.early_after_failed > 0 && seen.installs > 0);
    }

    /// An early request dropped once the give-up answered
    /// (`early_failed` from `Serving` in NL) while another take waits
    /// for the slot: the waiter is woken and takes the lock.
    #[test]
    fn loom_cache_early_dropped_after_give_up() {
        let seen = check_whole(2, || {
            (
                whole::Cache::new(Mode::Ex, false, 0),
                vec![
                    user(vec![Step::Take(Mode::Ex, false, DroppedAfterGiveUp)]),
                    user(vec![Step::Take(Mode::Ex, false, Granted)]),
                ],
                vec![0],
                false,
            )
        });
        assert!(seen.early_failed_serving > 0);
    }

    /// A `no_wait` take beside a waiting one while a notification comes:
    /// it never requests early; it is served, refused locally, or its
    /// request (after the give-up) refused by the DLM (the holder that
    /// notified is in the way); a take (not only a release) reads the
    /// notification and starts the drain.
    #[test]
    fn loom_cache_no_wait_take_and_take_drains() {
        let seen = check_whole(2, || {
            (
                whole::Cache::new(Mode::Ex, false, 0),
                vec![
                    user(vec![Step::Take(Mode::Ex, true, Granted)]),
                    user(vec![Step::Take(Mode::Ex, false, Granted)]),
                ],
                vec![0],
                false,
            )
        });
        assert!(seen.no_wait_refused > 0 && seen.no_wait_conversion_refused > 0);
        assert!(seen.drains_by_take > 0);
    }

    /// A minimum hold time: a notification is remembered while local
    /// takes go on being served; a take that needs a conversion waits for
    /// the give-up; the drain starts once the hold has passed.
    #[test]
    fn loom_cache_min_hold_serves_while_notified() {
        let seen = check_whole(2, || {
            (
                whole::Cache::new(Mode::Pr, true, 0),
                vec![
                    user(vec![Step::Take(Mode::Pr, false, Granted)]),
                    user(vec![Step::Take(Mode::Ex, false, Granted)]),
                ],
                vec![0],
                false,
            )
        });
        assert!(seen.hits_while_notified > 0 && seen.give_ups > 0);
    }

    /// A take while the helper gives the lock up for idleness requests
    /// early and installs its lock once the give-up answered; a
    /// notification comes before, during or after the idle release.
    #[test]
    fn loom_cache_early_during_idle_release() {
        let seen = check_whole(4, || {
            (
                whole::Cache::new(Mode::Ex, false, 1),
                vec![user(vec![Step::Take(Mode::Ex, false, Granted)])],
                vec![0],
                false,
            )
        });
        assert!(seen.early_in_idle_release > 0 && seen.installs > 0);
    }

    /// The cache closes while an early request is in flight: the helper
    /// closes only once it was installed (and released) or failed.
    #[test]
    fn loom_cache_close_waits_for_early() {
        let seen = check_whole(4, || {
            (
                whole::Cache::new(Mode::Ex, false, 0),
                vec![user(vec![Step::Take(Mode::Ex, false, Granted)])],
                vec![0],
                true,
            )
        });
        assert!(seen.close_with_early > 0);
    }

    /// The cache closes while an early request is in flight that fails,
    /// and its taker tries again: the helper closes only once the slot is
    /// free, and the retry is refused or served before the close.
    #[test]
    fn loom_cache_close_waits_for_failed_early() {
        let seen = check_whole(4, || {
            (
                whole::Cache::new(Mode::Ex, false, 0),
                vec![user(vec![
                    Step::Take(Mode::Ex, false, Fails),
                    Step::Take(Mode::Ex, false, Granted),
                ])],
                vec![0],
                true,
            )
        });
        assert!(seen.close_with_early > 0 && seen.early_failed > 0);
    }

    /// A second notification, for the lock an early request installed,
    /// drains and gives it up again (one for the replaced lock is
    /// dropped).
    #[test]
    fn loom_cache_second_notification_after_install() {
        let seen = check_whole(4, || {
            (
                whole::Cache::new(Mode::Ex, false, 0),
                vec![user(vec![Step::TakeNotified(Mode::Ex)])],
                vec![0],
                false,
            )
        });
        assert!(seen.second_give_up_after_install > 0);
    }
    /// Blocking users give the lock up themselves (a release or a take
    /// that finds it drained and no local holder), racing the helper that
    /// would: exactly one of them gives it up, a second user's take waits
    /// or requests early, a second notification (of the new lock) is
    /// given up too, and nobody waits for ever.
    #[test]
    fn loom_cache_blocking_users_give_up_here() {
        let seen = check_whole(2, || {
            (
                whole::Cache::new(Mode::Ex, false, 0).inline(),
                vec![
                    user(vec![Step::TakeNotified(Mode::Ex)]),
                    user(vec![Step::Take(Mode::Ex, false, Granted)]),
                ],
                vec![0],
                false,
            )
        });
        assert!(seen.give_ups_here > 0 && seen.give_ups > seen.give_ups_here);
        assert!(seen.drains_by_release > 0 && seen.drains_by_take > 0);
    }

    /// Blocking users with a minimum hold: no give-up here before the
    /// hold has passed (the drain waits for it), and the close after them
    /// is not given up here.
    #[test]
    fn loom_cache_blocking_users_min_hold() {
        let seen = check_whole(2, || {
            (
                whole::Cache::new(Mode::Pr, true, 0).inline(),
                vec![
                    user(vec![Step::Take(Mode::Pr, false, Granted)]),
                    user(vec![Step::Take(Mode::Ex, false, Granted)]),
                ],
                vec![0],
                false,
            )
        });
        assert!(seen.hits_while_notified > 0 && seen.give_ups > 0);
    }
    /// A cache adapting to contention (no minimum hold): a notification
    /// soon after the take makes a later release give the lock up unasked
    /// (blocking users give it up themselves, else the helper does),
    /// racing a second user's takes and the helper: the invariants hold
    /// and nobody waits for ever.
    #[test]
    fn loom_cache_contended_releases() {
        for inline in [false, true] {
            let seen = check_whole(2, move || {
                let c = whole::Cache::new(Mode::Ex, false, 0).adaptive();
                (
                    if inline { c.inline() } else { c },
                    vec![
                        user(vec![
                            Step::TakeNotified(Mode::Ex),
                            Step::Take(Mode::Ex, false, Granted),
                        ]),
                        user(vec![Step::Take(Mode::Ex, false, Granted)]),
                    ],
                    vec![],
                    false,
                )
            });
            assert!(seen.contended_releases > 0, "inline {inline}");
            assert!(seen.unasked_takes > 0, "inline {inline}");
            assert!(seen.give_ups > 0);
        }
    }
    /// The cache is dropped while a blocking user's release gives the lock
    /// up itself: the helper, which found the lock being given up, is
    /// woken once it is given up, and closes (the review found the close
    /// waiting an hour for the helper's timeout before that wake-up).
    #[test]
    fn loom_cache_close_during_give_up_here() {
        let seen = check_whole(4, || {
            (
                whole::Cache::new(Mode::Ex, false, 0).inline(),
                vec![user(vec![Step::TakeNotified(Mode::Ex)])],
                vec![],
                true,
            )
        });
        assert!(seen.give_ups_here > 0);
    }
}
