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

/// The receivers of one route waiting for a grant, by receiver id.
type Waiting = Vec<(usize, Recipient<Wake>)>;

/// The shared state: the scheduler, and per route the receivers waiting.
struct Shared {
    scheduler: Mutex<Scheduler>,
    waiting: Mutex<Vec<Waiting>>,
}

/// The slots of every route.
#[derive(Clone)]
pub(crate) struct Slots(Arc<Shared>);

impl Slots {
    /// `slots`: receivers × workers; one [`Share`] per route, in order.
    pub fn new(policy: Policy, slots: usize, routes: &[Share]) -> Slots {
        Slots(Arc::new(Shared {
            scheduler: Mutex::new(Scheduler::new(policy, slots.max(1), routes)),
            waiting: Mutex::new(vec![Vec::new(); routes.len()]),
        }))
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
        // The scheduler's state stays consistent between calls: a panic elsewhere cannot leave
        // it half-updated, so a poisoned lock is still usable.
        self.shared
            .scheduler
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// May receiver `id` receive up to `want` messages now? On [`Grant::Wait`] it is woken with
    /// [`Wake`] when its route may ask again.
    pub fn ask(&self, id: usize, want: usize, me: Recipient<Wake>) -> Grant {
        let grant = self.scheduler().ask(self.route, want);
        if let Grant::Receive(_) = grant {
            // What this grant left may be room for the next route in line.
            self.wake();
        }
        if grant == Grant::Wait {
            let mut waiting = self
                .shared
                .waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let list = &mut waiting[self.route];
            if !list.iter().any(|(w, _)| *w == id) {
                list.push((id, me));
            }
        }
        grant
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

    /// Wakes the waiting receivers of every route the scheduler names.
    fn wake(&self) {
        let routes = self.scheduler().wakeable();
        if routes.is_empty() {
            return;
        }
        let mut woken: Vec<Recipient<Wake>> = Vec::new();
        {
            let mut waiting = self
                .shared
                .waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for r in routes {
                if let Some(list) = waiting.get_mut(r) {
                    woken.extend(list.drain(..).map(|(_, w)| w));
                }
            }
        }
        for w in woken {
            w.do_send(Wake);
        }
    }
}
