//! The delivery slots all routes share (SPEC 5.3), as the receivers see them: the one
//! [`Scheduler`] behind a lock (receivers run on several threads), and the receivers waiting for
//! a grant, woken with [`Wake`] when the scheduler says their route may ask again.
//!
//! A receiver asks before each receive ([`RouteSlots::ask`]), says how the receive went
//! ([`RouteSlots::received`]) and how many messages it holds ([`RouteSlots::holding`]); it never
//! knows other routes exist. The rules live in `scheduler.rs`; this file only wires them.

use std::sync::{Arc, Mutex, MutexGuard};

use actix::prelude::*;

use crate::scheduler::{Grant, Policy, RouteId, Scheduler, Share};

/// Your route may ask for slots again.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Wake;

/// Each route's receivers, by id, as they asked: how to wake them.
type Receivers = Vec<Vec<Option<Recipient<Wake>>>>;

/// The shared state: the scheduler, and how to wake each receiver.
struct Shared {
    scheduler: Mutex<Scheduler>,
    receivers: Mutex<Receivers>,
}

impl Shared {
    fn scheduler(&self) -> MutexGuard<'_, Scheduler> {
        // The scheduler's state stays consistent between calls: a panic elsewhere cannot leave
        // it half-updated, so a poisoned lock is still usable.
        self.scheduler.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The slots of every route.
#[derive(Clone)]
pub(crate) struct Slots(Arc<Shared>);

impl Slots {
    /// `slots`: receivers × workers; one [`Share`] per route, in order.
    pub fn new(policy: Policy, slots: usize, routes: &[Share]) -> Slots {
        Slots(Arc::new(Shared {
            scheduler: Mutex::new(Scheduler::new(policy, slots.max(1), routes)),
            receivers: Mutex::new(vec![Vec::new(); routes.len()]),
        }))
    }

    /// Every route's last receive came back empty and no receiver waits for a slot: what
    /// `CARRIER_EXIT_WHEN_IDLE` needs besides an unchanged count.
    pub fn all_idle(&self) -> bool {
        self.0.scheduler().all_idle()
    }

    /// One route's view.
    pub fn route(&self, route: RouteId) -> RouteSlots {
        RouteSlots {
            route,
            shared: self.0.clone(),
        }
    }
}

/// What one receiver holds: its route's view of the shared slots.
#[derive(Clone)]
pub(crate) struct RouteSlots {
    route: RouteId,
    shared: Arc<Shared>,
}

impl RouteSlots {
    fn scheduler(&self) -> MutexGuard<'_, Scheduler> {
        self.shared.scheduler()
    }

    /// May receiver `id` receive up to `want` messages now? On [`Grant::Wait`] it is woken with
    /// [`Wake`] when its route may ask again.
    /// With a `Receive`, whether it should be a short poll (see [`Scheduler::short_poll`]).
    pub fn ask(&self, id: usize, want: usize, me: Recipient<Wake>) -> (Grant, bool) {
        // Known before it can be told to wait: a wake between the two would be lost.
        {
            let mut receivers = self
                .shared
                .receivers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let list = &mut receivers[self.route];
            if list.len() <= id {
                list.resize(id + 1, None);
            }
            list[id].get_or_insert(me);
        }
        let (grant, short) = {
            let mut scheduler = self.scheduler();
            let grant = scheduler.ask_as(self.route, id, want);
            let short = matches!(grant, Grant::Receive(_)) && scheduler.short_poll(self.route);
            (grant, short)
        };
        if let Grant::Receive(_) = grant {
            // What this grant left may be room for the next route in line.
            self.wake();
        }
        (grant, short)
    }

    /// Receiver `id` was woken (or told to wait) but will not ask now: its route's turn is not
    /// kept for it.
    pub fn not_asking(&self, id: usize) {
        self.scheduler().stop_waiting(self.route, id);
        self.wake();
    }

    /// A receive came back with `got` messages (`ok`: the call succeeded). Call it after those
    /// messages were counted with [`RouteSlots::holding`] (the messages held are what the
    /// receivers report): the grant's reservation goes back.
    pub fn received(&self, grant: Grant, got: usize, ok: bool) {
        self.scheduler().received(self.route, grant, got, ok);
        self.wake();
    }

    /// The receiver's holding went from `before` to `now` messages.
    pub fn holding(&self, before: usize, now: usize) {
        if now == before {
            return;
        }
        {
            let mut scheduler = self.scheduler();
            if now > before {
                scheduler.admitted(self.route, now - before);
            } else {
                scheduler.released(self.route, before - now);
            }
        }
        if now < before {
            self.wake();
        }
    }

    /// The route's queue cannot be resolved yet: it counts as empty (strict order must not wait
    /// for a route that cannot receive), until its first receive.
    pub fn unavailable(&self) {
        self.scheduler().unavailable(self.route);
        self.wake();
    }

    /// Wakes the receivers the scheduler names.
    fn wake(&self) {
        let woken = self.scheduler().wakeable();
        if woken.is_empty() {
            return;
        }
        let receivers = self
            .shared
            .receivers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (route, id) in woken {
            if let Some(Some(r)) = receivers.get(route).and_then(|list| list.get(id)) {
                r.do_send(Wake);
            }
        }
    }
}
