//! The slot scheduler: when several routes (SPEC 5.3) share one worker's delivery slots, which
//! route may receive next, and how many messages.
//!
//! It owns the counts behind that choice, per route: the messages held, the messages reserved by
//! open receives, whether the route's last receive came back empty, whether a probe of it is open,
//! how many of its receivers wait for a grant, and its stride pass. Nothing else.
//!
//! It never does I/O and never knows about SQS, actors, threads or time: it is plain data and
//! logic, tested without a runtime. The wiring (`slots.rs`, for the routes of `route.rs`) calls it
//! around each receive and wakes the receivers [`Scheduler::wakeable`] names.
//!
//! Accounting is in messages. A route holding `h` messages with `r` reserved occupies
//! `ceil((h + r) / slot_size)` slots (a Lambda batch fills one slot). A route may take what the
//! other routes leave of the slots, less what it already uses. The policies follow Shoryuken's
//! polling strategies, where a queue that comes back empty is paused and loses its extra weight:
//! - [`Policy::Weighted`]: stride scheduling. Each grant advances the route's pass by the slots it
//!   granted divided by the route's weight; the lowest pass among the asking route and the waiting
//!   routes goes first. A route does not bank credit while idle or empty: when it comes back, its
//!   pass is raised to the pass of the latest grant. Under the stride, every route that is not
//!   empty has a floor: half its share of the slots (`slots × weight ÷ the weights of the routes
//!   that are not empty`, rounded down). Below it, a route is granted whatever the passes say, and
//!   the others' grants leave it room while it is busy. So a route whose deliveries or deletes
//!   are slow (it holds its slots long, and the stride gives it a grant only now and then) never
//!   drags the others down to its pace: each keeps at least half its share of the slots.
//! - [`Policy::Strict`]: routes in order; a route receives only while every earlier route's last
//!   receive came back empty (or failed). What is already in flight finishes; nothing is
//!   preempted.
//!
//! An empty route is not given slots; it *probes*: one receive of one message at a time, which
//! needs no free slot and reserves nothing, so a long poll on an empty queue holds nothing other
//! routes could use. The price is a bounded over-commit: an open probe may bring one message more
//! than the slots allow, and a route has at most one probe open. With one route none of this
//! applies: it is granted whatever room it has, as before routes existed.

/// A route: its index in the order the routes were given (their `CARRIER_ROUTES` order).
pub(crate) type RouteId = usize;

/// How routes share the slots (`CARRIER_ROUTES_POLICY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Slots in proportion to the routes' weights, among the routes that have messages.
    #[default]
    Weighted,
    /// Routes in order: a later route receives only while every earlier one is empty.
    Strict,
}

/// What one route brings to the scheduler.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Share {
    /// CARRIER_ROUTE_<NAME>_WEIGHT, 1–1000 (only used by Weighted).
    pub weight: u32,
    /// Messages per delivery slot: 1 for the one-message format, the Lambda batch size for batches.
    pub slot_size: usize,
}

/// The scheduler's answer to [`Scheduler::ask`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
    /// Receive up to n messages; n are reserved for this receive until `received`.
    Receive(usize),
    /// The route's last receive came back empty (or failed): receive at most n (always 1) without
    /// reserving anything (a long poll on an empty queue must not hold slots others could use).
    Probe(usize),
    /// Not now; the route is marked waiting, and `wakeable` will name it when it may ask again.
    Wait,
}

/// The unit of a stride pass: one slot granted to a route of weight 1. lcm(1..=16) × 2³², so
/// the strides of common weights and batch sizes are exact; the pass is a u128, which no run
/// will exhaust.
const PASS_PER_SLOT: u128 = 720_720 << 32;

/// One route's counts.
#[derive(Debug, Clone)]
struct Route {
    weight: u32,
    slot_size: usize,
    /// Messages received (or admitted) and not yet released.
    held: usize,
    /// Messages reserved by open `Receive` grants.
    reserved: usize,
    /// The last receive came back empty or failed (a route that has not received is not empty).
    empty: bool,
    /// A probe of this route is open.
    probing: bool,
    /// The last receive brought all it was granted: its queue likely has more. While such a
    /// route's next receive is open it keeps its turn (see [`Scheduler::first_in_line`]).
    full: bool,
    /// Receivers (by id) told to wait and not yet woken.
    waiting: Vec<usize>,
    /// Receivers woken that have not asked again yet: the route keeps its turn for them.
    woken: Vec<usize>,
    /// The stride pass (Weighted): lower goes first.
    pass: u128,
}

impl Route {
    /// Messages held or reserved.
    fn used(&self) -> usize {
        self.held.saturating_add(self.reserved)
    }

    /// Slots occupied.
    fn occupied(&self) -> usize {
        self.used().div_ceil(self.slot_size)
    }

    /// Messages that fit in the slot it is filling (a Lambda batch not yet full): taking them
    /// occupies no more slots.
    fn partial(&self) -> usize {
        (self.slot_size - self.used() % self.slot_size) % self.slot_size
    }

    /// Nothing of this route is open or waiting: it is not competing for slots.
    fn idle(&self) -> bool {
        self.reserved == 0 && !self.probing && self.waiting.is_empty() && self.woken.is_empty()
    }

    /// How far `n` messages advance the pass: their slots divided by the weight.
    fn stride(&self, n: usize) -> u128 {
        let per = self.slot_size as u128 * u128::from(self.weight);
        (n as u128).saturating_mul(PASS_PER_SLOT) / per
    }

    /// Messages this route may still take, given the slots all routes occupy (`total`).
    fn room(&self, slots: usize, total: usize) -> usize {
        let others = total.saturating_sub(self.occupied());
        slots
            .saturating_sub(others)
            .saturating_mul(self.slot_size)
            .saturating_sub(self.used())
    }

    /// The key of Weighted's choice: lowest pass, then lowest route.
    fn key(&self, id: RouteId) -> (u128, RouteId) {
        (self.pass, id)
    }
}

/// The delivery slots of one worker, shared by its routes.
#[derive(Debug, Clone)]
pub(crate) struct Scheduler {
    policy: Policy,
    slots: usize,
    routes: Vec<Route>,
    /// Weighted's virtual time: the pass at which the latest grant was made.
    now: u128,
}

impl Scheduler {
    /// `slots`: the worker's capacity in delivery slots (CARRIER_SQS_RECEIVERS ×
    /// CARRIER_SQS_RECEIVER_WORKERS), ≥ 1; one [`Share`] per route, in route order. A zero slot
    /// count, weight or slot size is taken as 1.
    pub(crate) fn new(policy: Policy, slots: usize, routes: &[Share]) -> Scheduler {
        Scheduler {
            policy,
            slots: slots.max(1),
            routes: routes
                .iter()
                .map(|share| Route {
                    weight: share.weight.max(1),
                    slot_size: share.slot_size.max(1),
                    held: 0,
                    reserved: 0,
                    empty: false,
                    probing: false,
                    full: false,
                    waiting: Vec::new(),
                    woken: Vec::new(),
                    pass: 0,
                })
                .collect(),
            now: 0,
        }
    }

    /// Receiver 0 of `route` asks (tests: most have one receiver per route).
    #[cfg(test)]
    pub(crate) fn ask(&mut self, route: RouteId, want: usize) -> Grant {
        self.ask_as(route, 0, want)
    }

    /// Receiver `receiver` of `route` may receive up to `want` (≥ 1) messages (its own free
    /// room, capped to one receive). A `Wait` counts it as waiting until `wakeable` names it (or
    /// `stop_waiting`); a woken receiver keeps its route's turn until it asks again. Asking for
    /// nothing, or for an unknown route, is a `Wait` that counts no one.
    pub(crate) fn ask_as(&mut self, route: RouteId, receiver: usize, want: usize) -> Grant {
        if route >= self.routes.len() {
            return Grant::Wait;
        }
        {
            let r = &mut self.routes[route];
            r.waiting.retain(|&w| w != receiver);
            r.woken.retain(|&w| w != receiver);
        }
        if want == 0 {
            return Grant::Wait;
        }
        let grant = self.decide(route, want);
        let r = &mut self.routes[route];
        match grant {
            Grant::Receive(n) => {
                r.reserved = r.reserved.saturating_add(n);
                self.now = r.pass;
                r.pass = r.pass.saturating_add(r.stride(n));
            }
            Grant::Probe(_) => r.probing = true,
            Grant::Wait => r.waiting.push(receiver),
        }
        grant
    }

    /// That receive came back: the grant it had (`Receive(n)` or `Probe(n)`), how many messages it
    /// brought (`got`), and whether the call succeeded (`ok`: false for an SQS error; treated
    /// like an empty receive: the route is empty). Its reservation goes back, and in Weighted the
    /// pass of what it did not bring. The messages themselves count as held through
    /// [`Scheduler::admitted`], which the wiring calls first (so their slots are never free in
    /// between): `received` does not count them again.
    pub(crate) fn received(&mut self, route: RouteId, grant: Grant, got: usize, ok: bool) {
        let now = self.now;
        let Some(r) = self.routes.get_mut(route) else {
            return;
        };
        match grant {
            Grant::Receive(n) => {
                r.reserved = r.reserved.saturating_sub(n);
                // Undo the grant's stride; what was received is charged below.
                r.pass = r.pass.saturating_sub(r.stride(n));
            }
            Grant::Probe(_) => r.probing = false,
            Grant::Wait => {}
        }
        r.full = ok
            && match grant {
                Grant::Receive(n) | Grant::Probe(n) => got >= n,
                Grant::Wait => false,
            };
        if ok && got > 0 {
            if r.empty {
                // Back from empty: its weight again, but no credit banked while it was away.
                r.empty = false;
                r.pass = r.pass.max(now);
            }
        } else {
            r.empty = true;
        }
        r.pass = r.pass.saturating_add(r.stride(got));
    }

    /// `n` held messages of `route` ended (deleted, released, ...): their slots are free.
    pub(crate) fn released(&mut self, route: RouteId, n: usize) {
        if let Some(r) = self.routes.get_mut(route) {
            r.held = r.held.saturating_sub(n);
        }
    }

    /// `n` messages joined `route`'s holdings: received (before their `received`), or handed to
    /// it by a peer receiver. Held now; they may take the route over its room (a probe's message,
    /// a hand-over), and later grants wait until they are gone.
    pub(crate) fn admitted(&mut self, route: RouteId, n: usize) {
        if let Some(r) = self.routes.get_mut(route) {
            r.held = r.held.saturating_add(n);
        }
    }

    /// The waiting receivers that would now be granted something if they asked, chosen as `ask`
    /// would choose; they count as woken until they ask again (the caller wakes them). Call
    /// after every `received` and `released`, and after an `ask` that granted something (the
    /// next route in line may then have room too). O(routes); no allocation when nothing waits.
    pub(crate) fn wakeable(&mut self) -> Vec<(RouteId, usize)> {
        if self.routes.iter().all(|r| r.waiting.is_empty()) {
            return Vec::new();
        }
        let total = self.occupied();
        let (receiver, probers) = if self.routes.len() == 1 {
            let only = &self.routes[0];
            let receiver = (only.room(self.slots, total) > 0).then_some(0);
            (receiver, 0)
        } else {
            match self.policy {
                Policy::Weighted => {
                    // Below their floors, waiting routes are woken whatever the passes say.
                    let mut woken = Vec::new();
                    for id in 0..self.routes.len() {
                        let r = &self.routes[id];
                        if !r.waiting.is_empty()
                            && !r.empty
                            && r.room(self.slots, total) > 0
                            && self.below_floor(id)
                        {
                            let r = &mut self.routes[id];
                            woken.extend(r.waiting.iter().map(|&w| (id, w)));
                            let waiting = std::mem::take(&mut r.waiting);
                            r.woken.extend(waiting);
                        }
                    }
                    let first = self
                        .first_in_line(None, total)
                        .filter(|&f| self.spare(f, total) > 0 || self.routes[f].partial() > 0);
                    if !woken.is_empty() && first.is_none() {
                        woken.extend(self.wake_probes());
                        return woken;
                    }
                    let mut rest = self.wake(first, self.routes.len());
                    woken.append(&mut rest);
                    return woken;
                }
                Policy::Strict => {
                    let first = self.first_not_empty();
                    let receiver = first.filter(|&f| {
                        let r = &self.routes[f];
                        r.woken.is_empty() && r.room(self.slots, total) > 0
                    });
                    (receiver, first.unwrap_or(self.routes.len()))
                }
            }
        };
        self.wake(receiver, probers)
    }

    /// Wakes the waiting receivers of `receiver`, and of the empty routes among the first
    /// `probers` that may probe.
    fn wake(&mut self, receiver: Option<RouteId>, probers: usize) -> Vec<(RouteId, usize)> {
        let mut woken = Vec::new();
        for (id, r) in self.routes.iter_mut().enumerate() {
            let probes = id < probers && r.empty && !r.probing && r.woken.is_empty();
            if !r.waiting.is_empty() && (receiver == Some(id) || probes) {
                woken.extend(r.waiting.iter().map(|&w| (id, w)));
                let waiting = std::mem::take(&mut r.waiting);
                r.woken.extend(waiting);
            }
        }
        woken
    }

    /// Waiting empty routes without an open probe: woken to probe.
    fn wake_probes(&mut self) -> Vec<(RouteId, usize)> {
        let probers = self.routes.len();
        self.wake(None, probers)
    }

    /// Whether `route`'s next receive should answer at once (no long poll): with other routes, one
    /// whose last receive came back full keeps its turn while that receive is out, so it must
    /// not hold the turn for a 20 s wait on a queue that has just run dry. An empty answer then
    /// marks it empty, and its probe is the long poll.
    pub(crate) fn short_poll(&self, route: RouteId) -> bool {
        self.routes.len() > 1 && self.routes.get(route).is_some_and(|r| r.full && !r.empty)
    }

    /// `route` cannot receive yet (its queue is not resolved): it counts as empty, so strict
    /// order moves past it and weighted shares leave it out, until its first receive says
    /// otherwise.
    pub(crate) fn unavailable(&mut self, route: RouteId) {
        if let Some(r) = self.routes.get_mut(route) {
            r.empty = true;
        }
    }

    /// With several routes: every route's last receive came back empty (or failed), none holds
    /// or reserves anything, and no receiver waits for a slot. With one route, always (its
    /// receivers never wait; the received count alone tells idle).
    pub(crate) fn all_idle(&self) -> bool {
        self.routes.len() == 1
            || self
                .routes
                .iter()
                .all(|r| r.empty && r.used() == 0 && r.waiting.is_empty() && r.woken.is_empty())
    }

    /// `wakeable`, by route (tests).
    #[cfg(test)]
    pub(crate) fn wakeable_routes(&mut self) -> Vec<RouteId> {
        let mut routes: Vec<RouteId> = self.wakeable().into_iter().map(|(r, _)| r).collect();
        routes.dedup();
        routes
    }

    /// Receiver `receiver` of `route` was told to wait, or woken, and will not ask now (paused,
    /// draining, its own slots full): it no longer holds its route's turn. Safe to call when
    /// it neither waits nor was woken.
    pub(crate) fn stop_waiting(&mut self, route: RouteId, receiver: usize) {
        if let Some(r) = self.routes.get_mut(route) {
            r.waiting.retain(|&w| w != receiver);
            r.woken.retain(|&w| w != receiver);
        }
    }

    /// For metrics and tests: the messages `route` holds plus those reserved for its receives.
    /// (Only tests use it so far: drop the `cfg` to use it for metrics.)
    #[cfg(test)]
    pub(crate) fn held(&self, route: RouteId) -> usize {
        self.routes.get(route).map_or(0, Route::used)
    }

    /// For metrics and tests: the slots occupied by all routes (over `slots` only by what probes
    /// and `admitted` brought).
    pub(crate) fn occupied(&self) -> usize {
        self.routes
            .iter()
            .fold(0, |sum, r| sum.saturating_add(r.occupied()))
    }

    /// What `ask` answers, before its bookkeeping. `route` is known.
    fn decide(&mut self, route: RouteId, want: usize) -> Grant {
        let total = self.occupied();
        if self.routes.len() == 1 {
            return self.receive(route, want, total);
        }
        match self.policy {
            Policy::Weighted => {
                if self.routes[route].empty {
                    return self.probe(route);
                }
                let now = self.now;
                let r = &mut self.routes[route];
                if r.idle() {
                    // Coming back from idle: no credit banked while away.
                    r.pass = r.pass.max(now);
                }
                let r = &self.routes[route];
                let below = r.room(self.slots, total) > 0 && self.below_floor(route);
                let floor_left = self
                    .floor(route)
                    .saturating_mul(r.slot_size)
                    .saturating_sub(r.used());
                if self.first_in_line(Some(route), total) == Some(route) {
                    // Its turn: what the others' floors leave (and its own floor at least).
                    let spare = self.spare(route, total).saturating_mul(r.slot_size);
                    let cap = spare.saturating_add(r.partial());
                    let cap = if below { cap.max(floor_left) } else { cap };
                    self.receive(route, want.min(cap), total)
                } else if below {
                    // Not its turn, but below its floor: whatever the passes say, up to its
                    // share (a receive for its floor alone would often be of one message, an
                    // SQS call each).
                    let share = (self.entitled(route).ceil() as usize).saturating_mul(r.slot_size);
                    let share_left = share.saturating_sub(r.used()).max(floor_left);
                    self.receive(route, want.min(share_left.max(1)), total)
                } else {
                    Grant::Wait
                }
            }
            Policy::Strict => match self.first_not_empty() {
                Some(first) if first < route => Grant::Wait,
                _ if self.routes[route].empty => self.probe(route),
                _ => self.receive(route, want, total),
            },
        }
    }

    /// `Receive` as much of `want` as the route has room for, or `Wait` if none.
    fn receive(&self, route: RouteId, want: usize, total: usize) -> Grant {
        match self.routes[route].room(self.slots, total).min(want) {
            0 => Grant::Wait,
            n => Grant::Receive(n),
        }
    }

    /// An empty route's `Probe(1)`, unless one is open already.
    fn probe(&self, route: RouteId) -> Grant {
        if self.routes[route].probing {
            Grant::Wait
        } else {
            Grant::Probe(1)
        }
    }

    /// Weighted: the route to receive next among `asking`, the waiting routes and the routes
    /// whose receive is open after one that came back full (a receiver has one receive open at a
    /// time: without this, every slot freed while a busy route's receive is out would go to the
    /// others whatever their weights), of those that are not empty and have room: the lowest
    /// pass, then the lowest route. When that is a route still receiving, nobody is granted: the
    /// slot waits one receive for it.
    fn first_in_line(&self, asking: Option<RouteId>, total: usize) -> Option<RouteId> {
        self.routes
            .iter()
            .enumerate()
            .filter(|&(id, r)| {
                let receiving = r.reserved > 0 && r.full;
                let turn = !r.waiting.is_empty() || !r.woken.is_empty() || receiving;
                (asking == Some(id) || turn) && !r.empty && r.room(self.slots, total) > 0
            })
            .min_by_key(|&(id, r)| r.key(id))
            .map(|(id, _)| id)
    }

    /// Weighted: `route`'s share of the slots while the routes that are not empty share them:
    /// slots × its weight ÷ their weights.
    fn entitled(&self, route: RouteId) -> f64 {
        let weights: f64 = self
            .routes
            .iter()
            .enumerate()
            .filter(|&(id, r)| id == route || !r.empty)
            .map(|(_, r)| f64::from(r.weight))
            .sum();
        self.slots as f64 * f64::from(self.routes[route].weight) / weights.max(1.0)
    }

    /// Weighted: the slots `route` always may fill: half its share, rounded down (none while
    /// its share is below 2 slots: the passes alone decide then).
    fn floor(&self, route: RouteId) -> usize {
        (self.entitled(route) / 2.0).floor() as usize
    }

    /// Weighted: `route` occupies fewer slots than its floor.
    fn below_floor(&self, route: RouteId) -> bool {
        self.routes[route].occupied() < self.floor(route)
    }

    /// Weighted: the free slots `route` may take beyond its floor: those left once every other
    /// busy route (not empty, and holding messages or about to ask) has the rest of its floor.
    /// An empty or idle route lends its floor out.
    fn spare(&self, route: RouteId, total: usize) -> usize {
        let free = self.slots.saturating_sub(total);
        if (self.routes[route].occupied() as f64) < self.entitled(route) {
            // Within its own share it takes nobody's floor.
            return free;
        }
        let protected: usize = (0..self.routes.len())
            .filter(|&id| id != route)
            .filter(|&id| {
                let r = &self.routes[id];
                let receiving = r.reserved > 0;
                !r.empty
                    && (r.occupied() > 0
                        || receiving
                        || !r.waiting.is_empty()
                        || !r.woken.is_empty())
            })
            .map(|id| self.floor(id).saturating_sub(self.routes[id].occupied()))
            .sum();
        self.slots.saturating_sub(total).saturating_sub(protected)
    }

    /// Strict: the first route that is not empty (every route before it is).
    fn first_not_empty(&self) -> Option<RouteId> {
        self.routes.iter().position(|r| !r.empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(weight: u32, slot_size: usize) -> Share {
        Share { weight, slot_size }
    }

    /// A receive comes back as the wiring reports it: its messages held, then the grant back.
    fn back(s: &mut Scheduler, route: RouteId, grant: Grant, got: usize, ok: bool) {
        s.admitted(route, got);
        s.received(route, grant, got, ok);
    }

    /// Asks for `route` and, on a `Receive`, completes it at once with everything granted.
    fn take(s: &mut Scheduler, route: RouteId, want: usize) -> Grant {
        let grant = s.ask(route, want);
        if let Grant::Receive(n) = grant {
            back(s, route, grant, n, true);
        }
        grant
    }

    /// A deterministic xorshift64* generator: the simulations repeat exactly.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
        }
    }

    /// Routes with one receiver each, which asks for `want` messages until it is told to wait.
    /// A queue is full (a receive brings everything granted, at once) or empty (a receive brings
    /// nothing; a probe stays open, like a long poll, until `fill` gives it a message). Each step
    /// frees one slot, of a route chosen in proportion to the slots it occupies, then wakes.
    struct Sim {
        s: Scheduler,
        rng: Rng,
        want: usize,
        slot_size: Vec<usize>,
        full: Vec<bool>,
        probe_open: Vec<bool>,
        /// Messages received, per route.
        got: Vec<usize>,
    }

    impl Sim {
        fn new(policy: Policy, slots: usize, shares: &[Share], want: usize) -> Sim {
            let mut sim = Sim {
                s: Scheduler::new(policy, slots, shares),
                rng: Rng(0x9e37_79b9_7f4a_7c15),
                want,
                slot_size: shares.iter().map(|s| s.slot_size).collect(),
                full: vec![true; shares.len()],
                probe_open: vec![false; shares.len()],
                got: vec![0; shares.len()],
            };
            for route in 0..shares.len() {
                sim.pump(route);
            }
            sim.settle();
            sim
        }

        /// `route`'s receiver asks until it is told to wait or its probe stays open.
        fn pump(&mut self, route: RouteId) {
            for _ in 0..1000 {
                let grant = self.s.ask(route, self.want);
                let n = match grant {
                    Grant::Wait => return,
                    Grant::Probe(_) if !self.full[route] => {
                        self.probe_open[route] = true;
                        return;
                    }
                    Grant::Receive(n) | Grant::Probe(n) => n,
                };
                let got = if self.full[route] { n } else { 0 };
                back(&mut self.s, route, grant, got, true);
                self.got[route] += got;
            }
            panic!("route {route} asked 1000 times without waiting");
        }

        /// Wakes whoever `wakeable` names, until it names no one.
        fn settle(&mut self) {
            for _ in 0..1000 {
                let woken = self.s.wakeable_routes();
                if woken.is_empty() {
                    return;
                }
                for route in woken {
                    self.pump(route);
                }
            }
            panic!("wakeable never settled");
        }

        /// `route`'s queue has messages again: its open probe brings one.
        fn fill(&mut self, route: RouteId) {
            self.full[route] = true;
            if std::mem::take(&mut self.probe_open[route]) {
                back(&mut self.s, route, Grant::Probe(1), 1, true);
                self.got[route] += 1;
            }
            self.pump(route);
            self.settle();
        }

        /// Frees one slot of a route chosen in proportion to the slots it occupies, then wakes.
        fn step(&mut self) {
            let occupied: Vec<usize> = (0..self.slot_size.len())
                .map(|r| self.s.held(r).div_ceil(self.slot_size[r]))
                .collect();
            let mut pick = self.rng.below(occupied.iter().sum());
            let route = occupied
                .iter()
                .position(|&o| {
                    let here = pick < o;
                    pick = pick.saturating_sub(o);
                    here
                })
                .expect("something is held");
            let held = self.s.held(route);
            let partial = held % self.slot_size[route];
            let n = if partial == 0 {
                self.slot_size[route]
            } else {
                partial
            };
            self.s.released(route, n);
            self.settle();
        }

        /// The share of the slots granted to `route` so far.
        fn slot_share(&self, route: RouteId) -> f64 {
            let slots = |r: usize| self.got[r] as f64 / self.slot_size[r] as f64;
            slots(route) / (0..self.got.len()).map(slots).sum::<f64>()
        }
    }

    #[test]
    fn one_route_passes_every_ask_through_up_to_its_capacity_and_never_probes() {
        let mut s = Scheduler::new(Policy::Weighted, 4, &[share(1, 1)]);
        assert_eq!(s.ask(0, 3), Grant::Receive(3));
        // Empty and failed receives change nothing for a lone route.
        back(&mut s, 0, Grant::Receive(3), 0, true);
        assert_eq!(s.ask(0, 3), Grant::Receive(3));
        back(&mut s, 0, Grant::Receive(3), 0, false);
        assert_eq!(take(&mut s, 0, 3), Grant::Receive(3));
        assert_eq!(take(&mut s, 0, 3), Grant::Receive(1));
        assert_eq!(s.ask(0, 3), Grant::Wait);
        assert_eq!(s.wakeable_routes(), Vec::<RouteId>::new());
        s.released(0, 2);
        assert_eq!(s.wakeable_routes(), vec![0]);
        assert_eq!(s.ask(0, 10), Grant::Receive(2));

        // Lambda batches: capacity is slots × batch size, whatever the policy.
        let mut s = Scheduler::new(Policy::Strict, 2, &[share(1, 10)]);
        assert_eq!(s.ask(0, 10), Grant::Receive(10));
        back(&mut s, 0, Grant::Receive(10), 0, true);
        assert_eq!(s.ask(0, 10), Grant::Receive(10));
        assert_eq!(s.ask(0, 25), Grant::Receive(10));
        assert_eq!(s.ask(0, 1), Grant::Wait);
    }

    #[test]
    fn weighted_three_to_one_with_both_routes_saturated_shares_slots_three_to_one() {
        let mut sim = Sim::new(Policy::Weighted, 8, &[share(3, 1), share(1, 1)], 10);
        for _ in 0..20_000 {
            sim.step();
            assert_eq!(sim.s.occupied(), 8, "no slot idles");
        }
        let share = sim.slot_share(0);
        assert!((share - 0.75).abs() < 0.75 * 0.05, "share {share}");
    }

    #[test]
    fn weights_with_lambda_slot_sizes_are_shares_of_slots() {
        // Route 0 sends Lambda batches of 10 with weight 3; route 1 one message at a time.
        let mut sim = Sim::new(Policy::Weighted, 8, &[share(3, 10), share(1, 1)], 10);
        for _ in 0..20_000 {
            sim.step();
            assert_eq!(sim.s.occupied(), 8, "no slot idles");
        }
        let share = sim.slot_share(0);
        assert!((share - 0.75).abs() < 0.75 * 0.05, "share {share}");
        // In messages that is 30 : 1.
        assert!(sim.got[0] > 25 * sim.got[1], "{:?}", sim.got);
    }

    #[test]
    fn an_empty_route_probes_one_message_and_reserves_nothing_so_the_other_fills_every_slot() {
        let mut s = Scheduler::new(Policy::Weighted, 8, &[share(1000, 1), share(1, 1)]);
        back(&mut s, 0, Grant::Receive(0), 0, true);
        assert_eq!(s.ask(0, 10), Grant::Probe(1));
        assert_eq!((s.held(0), s.occupied()), (0, 0));
        assert_eq!(s.ask(1, 10), Grant::Receive(8));
        assert_eq!(s.occupied(), 8);

        // Over time too: the empty route gets nothing and no slot idles.
        let mut sim = Sim::new(Policy::Weighted, 8, &[share(3, 1), share(1, 1)], 10);
        sim.full[0] = false;
        for _ in 0..1000 {
            sim.step();
            assert_eq!(sim.s.occupied(), 8);
        }
        assert!(sim.probe_open[0]);
        assert!(sim.s.held(0) <= 1);
    }

    #[test]
    fn a_probe_that_brings_a_message_may_exceed_the_slots_by_one() {
        let mut s = Scheduler::new(Policy::Weighted, 2, &[share(1, 1), share(1, 1)]);
        back(&mut s, 0, Grant::Receive(0), 0, true);
        assert_eq!(take(&mut s, 1, 10), Grant::Receive(2));
        assert_eq!(s.ask(0, 10), Grant::Probe(1));
        back(&mut s, 0, Grant::Probe(1), 1, true);
        assert_eq!((s.held(0), s.occupied()), (1, 3));
        assert_eq!(s.ask(0, 10), Grant::Wait);
        assert_eq!(s.ask(1, 10), Grant::Wait);
        s.released(1, 1);
        assert_eq!(s.wakeable_routes(), Vec::<RouteId>::new(), "still full");
        s.released(1, 1);
        // One slot free: the route first in line (the probe's message cost route 0 one slot's
        // pass, route 1 has had two).
        assert_eq!(s.wakeable_routes(), vec![0]);
        assert_eq!(s.ask(0, 10), Grant::Receive(1));
    }

    #[test]
    fn only_one_probe_per_route_is_open() {
        let mut s = Scheduler::new(Policy::Weighted, 8, &[share(1, 1), share(1, 1)]);
        back(&mut s, 0, Grant::Receive(0), 0, true);
        assert_eq!(s.ask(0, 10), Grant::Probe(1));
        assert_eq!(s.ask(0, 10), Grant::Wait);
        assert_eq!(s.wakeable_routes(), Vec::<RouteId>::new());
        // The probe comes back empty: the waiting receiver may probe next.
        back(&mut s, 0, Grant::Probe(1), 0, true);
        assert_eq!(s.wakeable_routes(), vec![0]);
        assert_eq!(s.ask(0, 10), Grant::Probe(1));
        assert_eq!(s.ask(0, 10), Grant::Wait);
    }

    #[test]
    fn a_route_back_from_empty_regains_its_weight_but_no_banked_credit() {
        let mut sim = Sim::new(Policy::Weighted, 8, &[share(1, 1), share(1, 1)], 10);
        sim.full[1] = false;
        for _ in 0..5000 {
            sim.step();
        }
        assert!(sim.probe_open[1]);
        sim.fill(1);
        // No burst: of the next 20 slots route 1 gets about half, not all.
        let before = sim.got.clone();
        for _ in 0..20 {
            sim.step();
        }
        let gained = sim.got[1] - before[1];
        assert!((8..=12).contains(&gained), "route 1 got {gained} of 20");
        // And its weight: half of the slots from then on.
        let before = sim.got.clone();
        for _ in 0..4000 {
            sim.step();
        }
        let (a, b) = (sim.got[0] - before[0], sim.got[1] - before[1]);
        let share = b as f64 / (a + b) as f64;
        assert!((share - 0.5).abs() < 0.5 * 0.05, "share {share}");
    }

    #[test]
    fn an_idle_route_banks_no_credit() {
        // Route 1 asks nothing for a long while (its receivers are busy), then asks again.
        let mut s = Scheduler::new(Policy::Weighted, 2, &[share(1, 1), share(1, 1)]);
        for _ in 0..100 {
            assert_eq!(take(&mut s, 0, 1), Grant::Receive(1));
            s.released(0, 1);
        }
        assert_eq!(take(&mut s, 1, 1), Grant::Receive(1));
        assert_eq!(take(&mut s, 0, 1), Grant::Receive(1));
        // From then on both routes want every slot that frees: they take turns, route 1 does not
        // catch up on the hundred grants it did not ask for.
        let mut wins = [0; 2];
        for _ in 0..10 {
            assert_eq!(s.ask(0, 1), Grant::Wait);
            assert_eq!(s.ask(1, 1), Grant::Wait);
            s.released(if s.held(0) >= s.held(1) { 0 } else { 1 }, 1);
            let woken = s.wakeable_routes();
            assert_eq!(woken.len(), 1, "{woken:?}");
            assert_eq!(take(&mut s, woken[0], 1), Grant::Receive(1));
            wins[woken[0]] += 1;
        }
        assert_eq!(wins, [5, 5]);
    }

    #[test]
    fn weighted_grants_the_lowest_pass_among_the_asking_and_waiting_routes() {
        let mut s = Scheduler::new(Policy::Weighted, 2, &[share(1, 1), share(1, 1)]);
        assert_eq!(take(&mut s, 0, 2), Grant::Receive(2));
        assert_eq!(s.ask(1, 1), Grant::Wait);
        s.released(0, 1);
        // Route 1 waits with the lower pass: another receiver of route 0 must not jump it.
        assert_eq!(s.ask(0, 1), Grant::Wait);
        assert_eq!(s.wakeable_routes(), vec![1]);
        assert_eq!(s.ask(1, 1), Grant::Receive(1));
    }

    #[test]
    fn a_route_whose_full_receive_is_out_keeps_its_turn() {
        let mut s = Scheduler::new(Policy::Weighted, 2, &[share(3, 1), share(1, 1)]);
        assert_eq!(take(&mut s, 0, 1), Grant::Receive(1)); // pass 1/3, came back full
        assert_eq!(take(&mut s, 1, 1), Grant::Receive(1)); // pass 1
        s.released(0, 1);
        let open = s.ask(0, 1); // pass 2/3, its receive out
        assert_eq!(open, Grant::Receive(1));
        s.released(1, 1);
        // A slot is free, but route 0 is first in line and about to ask again: it waits for it
        // (without the rule, every slot freed while route 0 receives would go to route 1).
        assert_eq!(s.ask(1, 1), Grant::Wait);
        assert!(s.wakeable_routes().is_empty());
        // Once route 0's receive is back, route 1 is named (route 0 asks again on its own).
        back(&mut s, 0, open, 1, true);
        assert_eq!(s.wakeable_routes(), [1]);
    }

    #[test]
    fn only_a_route_whose_last_receive_came_back_full_polls_short_and_never_alone() {
        let mut alone = Scheduler::new(Policy::Weighted, 4, &[share(1, 1)]);
        assert_eq!(take(&mut alone, 0, 2), Grant::Receive(2));
        assert!(!alone.short_poll(0), "one route: today's long polls");
        let mut s = Scheduler::new(Policy::Weighted, 8, &[share(1, 1), share(1, 1)]);
        assert!(!s.short_poll(0), "nothing received yet");
        assert_eq!(take(&mut s, 0, 2), Grant::Receive(2));
        assert!(s.short_poll(0), "came back full: its queue likely has more");
        let partial = s.ask(0, 4);
        back(&mut s, 0, partial, 1, true);
        assert!(!s.short_poll(0), "came back with less: a long poll");
        let empty = s.ask(0, 4);
        back(&mut s, 0, empty, 0, true);
        assert!(!s.short_poll(0), "empty: it probes, a long poll");
    }

    #[test]
    fn a_route_whose_slots_turn_over_slowly_leaves_the_other_half_its_share() {
        // Route 0's deletes never come back; route 1 turns over one message at a time, asking
        // again each time. Weights 3 : 1, 20 slots: route 1's share is 5, its floor 2.
        let mut s = Scheduler::new(Policy::Weighted, 20, &[share(3, 1), share(1, 1)]);
        let mut delivered = 0;
        for _ in 0..1_000 {
            let _ = take(&mut s, 0, 10);
            if let Grant::Receive(n) = take(&mut s, 1, 10) {
                delivered += n;
            }
            let _ = take(&mut s, 0, 10);
            s.released(1, 1);
        }
        assert!(
            s.held(0) <= 18,
            "route 0 leaves route 1 its floor: {}",
            s.held(0)
        );
        assert!(
            delivered >= 1_000,
            "route 1 went on at its own pace: {delivered}"
        );
    }

    #[test]
    fn a_lambda_route_fills_the_batch_it_started_without_another_slot() {
        let mut s = Scheduler::new(Policy::Weighted, 3, &[share(1, 10), share(1, 1)]);
        assert_eq!(take(&mut s, 0, 5), Grant::Receive(5));
        assert_eq!(take(&mut s, 1, 2), Grant::Receive(2));
        assert_eq!(s.occupied(), 3);
        assert_eq!(s.ask(1, 1), Grant::Wait, "no slot left");
        assert_eq!(s.ask(0, 10), Grant::Receive(5), "the rest of its batch");
    }

    #[test]
    fn weighted_ties_go_to_the_lower_route() {
        let mut s = Scheduler::new(Policy::Weighted, 1, &[share(1, 1), share(1, 1)]);
        assert_eq!(s.ask(1, 1), Grant::Receive(1));
        back(&mut s, 1, Grant::Receive(1), 1, true);
        assert_eq!(s.ask(0, 1), Grant::Wait);
        assert_eq!(s.ask(1, 1), Grant::Wait);
        s.released(1, 1);
        // Route 0 (pass 0, raised to the last grant's 0) against route 1 (pass 1): route 0.
        assert_eq!(s.wakeable_routes(), vec![0]);
        assert_eq!(take(&mut s, 0, 1), Grant::Receive(1));
        assert_eq!(s.ask(0, 1), Grant::Wait);
        s.released(0, 1);
        // Both at pass 1 now: the lower route.
        assert_eq!(s.wakeable_routes(), vec![0]);
    }

    #[test]
    fn strict_a_later_route_waits_while_an_earlier_one_is_not_empty() {
        let mut s = Scheduler::new(Policy::Strict, 8, &[share(1, 1), share(1, 1)]);
        // At start no route has received: the first goes first, whatever the room.
        assert_eq!(s.ask(1, 10), Grant::Wait);
        assert_eq!(s.ask(0, 2), Grant::Receive(2));
        back(&mut s, 0, Grant::Receive(2), 2, true);
        assert_eq!(s.ask(1, 10), Grant::Wait);
        assert_eq!(s.wakeable_routes(), Vec::<RouteId>::new());
        // Route 0 comes back empty: route 1 is woken and granted.
        assert_eq!(s.ask(0, 6), Grant::Receive(6));
        back(&mut s, 0, Grant::Receive(6), 0, true);
        assert_eq!(s.wakeable_routes(), vec![1]);
        assert_eq!(s.ask(1, 10), Grant::Receive(6));
        // Route 0 still probes; when its probe brings a message, route 1 waits again.
        assert_eq!(s.ask(0, 10), Grant::Probe(1));
        back(&mut s, 0, Grant::Probe(1), 1, true);
        s.released(0, 2);
        assert_eq!(s.ask(1, 1), Grant::Wait);
        assert_eq!(s.ask(0, 10), Grant::Receive(1));
        // What route 1 had in flight finishes and is held: nothing is preempted.
        back(&mut s, 1, Grant::Receive(6), 6, true);
        assert_eq!(s.held(1), 6);
    }

    #[test]
    fn strict_a_later_empty_route_does_not_probe_while_an_earlier_one_is_not_empty() {
        let mut s = Scheduler::new(Policy::Strict, 8, &[share(1, 1), share(1, 1), share(1, 1)]);
        back(&mut s, 0, Grant::Receive(0), 0, true);
        back(&mut s, 2, Grant::Receive(0), 0, true);
        assert_eq!(s.ask(2, 10), Grant::Wait);
        assert_eq!(s.ask(0, 10), Grant::Probe(1));
        assert_eq!(take(&mut s, 1, 3), Grant::Receive(3));
        assert_eq!(s.wakeable_routes(), Vec::<RouteId>::new());
        // Route 1 runs dry too: route 2 may probe.
        assert_eq!(s.ask(1, 10), Grant::Receive(5));
        back(&mut s, 1, Grant::Receive(5), 0, true);
        assert_eq!(s.wakeable_routes(), vec![2]);
        assert_eq!(s.ask(2, 10), Grant::Probe(1));
    }

    #[test]
    fn a_failed_receive_counts_as_empty() {
        let mut s = Scheduler::new(Policy::Strict, 8, &[share(1, 1), share(1, 1)]);
        assert_eq!(s.ask(0, 4), Grant::Receive(4));
        assert_eq!(s.ask(1, 4), Grant::Wait);
        back(&mut s, 0, Grant::Receive(4), 0, false);
        assert_eq!(s.wakeable_routes(), vec![1]);
        assert_eq!(s.ask(1, 4), Grant::Receive(4));

        let mut s = Scheduler::new(Policy::Weighted, 8, &[share(1, 1), share(1, 1)]);
        assert_eq!(s.ask(0, 4), Grant::Receive(4));
        back(&mut s, 0, Grant::Receive(4), 0, false);
        assert_eq!(s.ask(0, 4), Grant::Probe(1));
    }

    #[test]
    fn a_receive_that_brings_less_than_granted_gives_the_rest_back() {
        let mut s = Scheduler::new(Policy::Weighted, 8, &[share(1, 1), share(1, 1)]);
        assert_eq!(s.ask(0, 8), Grant::Receive(8));
        assert_eq!((s.held(0), s.occupied()), (8, 8));
        assert_eq!(s.ask(1, 8), Grant::Wait);
        back(&mut s, 0, Grant::Receive(8), 3, true);
        assert_eq!((s.held(0), s.occupied()), (3, 3));
        assert_eq!(s.wakeable_routes(), vec![1]);
        assert_eq!(s.ask(1, 8), Grant::Receive(5));

        // Lambda slots: 25 messages of batches of 10 occupy 3 slots; the partial one is still
        // the route's own room.
        let mut s = Scheduler::new(Policy::Weighted, 4, &[share(1, 10), share(1, 1)]);
        assert_eq!(s.ask(0, 40), Grant::Receive(40));
        back(&mut s, 0, Grant::Receive(40), 25, true);
        assert_eq!(s.occupied(), 3);
        assert_eq!(take(&mut s, 1, 10), Grant::Receive(1));
        assert_eq!(s.ask(1, 10), Grant::Wait);
        assert_eq!(s.ask(0, 10), Grant::Receive(5));
    }

    #[test]
    fn weighted_charges_a_route_only_for_what_its_receive_brought() {
        // 3 slots: shares of 1.5, floors of none: the passes alone decide.
        let mut s = Scheduler::new(Policy::Weighted, 3, &[share(1, 1), share(1, 1)]);
        assert_eq!(s.ask(0, 3), Grant::Receive(3));
        back(&mut s, 0, Grant::Receive(3), 1, true);
        assert_eq!(take(&mut s, 1, 2), Grant::Receive(2));
        assert_eq!(s.ask(0, 1), Grant::Wait);
        assert_eq!(s.ask(1, 1), Grant::Wait);
        s.released(1, 1);
        // Route 0 paid for the 1 message it got, not the 3 it was granted; route 1 for 2.
        assert_eq!(s.wakeable_routes(), vec![0]);
    }

    #[test]
    fn released_and_admitted_never_underflow_or_panic() {
        let mut s = Scheduler::new(Policy::Weighted, 2, &[share(1, 1), share(1, 1)]);
        s.released(0, 5);
        assert_eq!(s.held(0), 0);
        s.admitted(0, usize::MAX);
        s.admitted(0, 1);
        s.admitted(1, usize::MAX);
        assert_eq!(s.held(0), usize::MAX);
        assert_eq!(s.occupied(), usize::MAX);
        assert_eq!(s.ask(0, 1), Grant::Wait);
        assert_eq!(s.ask(1, 1), Grant::Wait);
        back(&mut s, 1, Grant::Receive(usize::MAX), usize::MAX, true);
        s.released(0, usize::MAX);
        s.released(1, usize::MAX);
        assert_eq!(s.occupied(), 0);
        assert_eq!(s.wakeable_routes(), vec![0]);
        // A message handed over by a peer is held, over the room if need be.
        assert_eq!(take(&mut s, 0, 2), Grant::Receive(2));
        s.admitted(0, 1);
        assert_eq!(s.occupied(), 3);
        assert_eq!(s.ask(1, 1), Grant::Wait);
    }

    #[test]
    fn wakeable_names_the_route_that_would_be_granted_and_clears_its_mark() {
        let mut s = Scheduler::new(Policy::Weighted, 2, &[share(1, 1), share(1, 1)]);
        assert_eq!(take(&mut s, 0, 2), Grant::Receive(2));
        assert_eq!(s.ask(1, 1), Grant::Wait);
        assert_eq!(s.ask(0, 1), Grant::Wait);
        assert_eq!(s.wakeable_routes(), Vec::<RouteId>::new(), "no room");
        s.released(0, 1);
        // Route 1 has the lower pass.
        assert_eq!(s.wakeable_routes(), vec![1]);
        assert_eq!(take(&mut s, 1, 1), Grant::Receive(1));
        assert_eq!(s.wakeable_routes(), Vec::<RouteId>::new(), "no room");
        s.released(0, 1);
        assert_eq!(s.wakeable_routes(), vec![0]);
        assert_eq!(s.wakeable_routes(), Vec::<RouteId>::new(), "mark cleared");
    }

    #[test]
    fn stop_waiting_forgets_one_waiting_receiver() {
        let mut s = Scheduler::new(Policy::Weighted, 1, &[share(1, 1), share(1, 1)]);
        assert_eq!(take(&mut s, 0, 1), Grant::Receive(1));
        assert_eq!(s.ask_as(1, 0, 1), Grant::Wait);
        assert_eq!(s.ask_as(1, 1, 1), Grant::Wait);
        assert_eq!(s.ask_as(1, 1, 1), Grant::Wait, "asking again counts once");
        s.stop_waiting(1, 0);
        s.released(0, 1);
        assert_eq!(s.wakeable(), [(1, 1)], "receiver 1 still waits");
        // Woken, it keeps route 1's turn until it asks or gives up.
        assert_eq!(
            s.ask_as(0, 0, 1),
            Grant::Wait,
            "route 0 waits behind the woken one"
        );
        s.stop_waiting(1, 1);
        assert_eq!(s.wakeable(), [(0, 0)]);
        assert_eq!(s.ask_as(0, 0, 1), Grant::Receive(1));
        s.stop_waiting(1, 5);
        s.stop_waiting(9, 0);
    }

    #[test]
    fn unknown_routes_and_zero_wants_are_refused_without_panicking() {
        let mut s = Scheduler::new(Policy::Strict, 0, &[share(0, 0), share(1, 1)]);
        assert_eq!(s.ask(7, 1), Grant::Wait);
        assert_eq!(s.ask(0, 0), Grant::Wait);
        back(&mut s, 7, Grant::Receive(1), 1, true);
        s.released(7, 1);
        s.admitted(7, 1);
        s.stop_waiting(7, 0);
        assert_eq!(s.held(7), 0);
        assert_eq!(
            s.wakeable_routes(),
            Vec::<RouteId>::new(),
            "a zero want waits for nothing"
        );
        // Zero slots, weight and slot size are taken as one.
        assert_eq!(s.ask(0, 5), Grant::Receive(1));

        let mut none = Scheduler::new(Policy::Weighted, 4, &[]);
        assert_eq!(none.ask(0, 1), Grant::Wait);
        assert_eq!((none.occupied(), none.wakeable_routes()), (0, vec![]));
    }

    #[test]
    fn a_receive_grant_never_takes_the_slots_over_capacity() {
        // Random asks, receives and releases on three routes of mixed slot sizes: a Receive is
        // only ever granted within the slots, and everything given back leaves nothing occupied.
        for policy in [Policy::Weighted, Policy::Strict] {
            let mut rng = Rng(0x2545_f491_4f6c_dd1d);
            let shares = [share(5, 1), share(2, 10), share(1, 3)];
            let mut s = Scheduler::new(policy, 6, &shares);
            let mut open: Vec<(RouteId, Grant)> = Vec::new();
            let mut held = [0usize; 3];
            for _ in 0..20_000 {
                let route = rng.below(3);
                match rng.below(4) {
                    0 => match s.ask(route, 1 + rng.below(12)) {
                        Grant::Wait => {}
                        grant => {
                            if let Grant::Receive(_) = grant {
                                assert!(s.occupied() <= 6, "{policy:?}: over capacity");
                            }
                            open.push((route, grant));
                        }
                    },
                    1 if !open.is_empty() => {
                        let (route, grant) = open.swap_remove(rng.below(open.len()));
                        let (Grant::Receive(n) | Grant::Probe(n)) = grant else {
                            unreachable!()
                        };
                        let got = rng.below(n + 1);
                        back(&mut s, route, grant, got, rng.below(8) > 0);
                        held[route] += got;
                    }
                    _ => {
                        let n = rng.below(held[route] + 1);
                        s.released(route, n);
                        held[route] -= n;
                    }
                }
                s.wakeable_routes();
            }
            for (route, grant) in open.drain(..) {
                back(&mut s, route, grant, 0, true);
            }
            for (route, n) in held.iter().enumerate() {
                assert_eq!(s.held(route), *n);
                s.released(route, *n);
            }
            assert_eq!(s.occupied(), 0);
        }
    }
}
