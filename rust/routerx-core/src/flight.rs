//! Single flight: while one caller's model call for a request is in flight (routed, not yet
//! recorded), the same request from other threads waits for its answer instead of paying for the
//! same call again.
//!
//! The leader's decision carries a [`FlightGuard`]; `record()` lands it, and so does dropping the
//! decision unrecorded, so waiters are never left waiting for a call that will not come. A waiter
//! gives up after the timeout and routes for itself; the leader's own thread never waits (it would
//! wait for itself), and a flight older than the timeout is taken over by the next caller.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use parking_lot::{Condvar, Mutex};

use crate::fingerprint::Key;

pub struct Flight {
    landed: Mutex<bool>,
    cv: Condvar,
    /// Who leads: the calling thread in-process, the call in a server (see `Request::caller`).
    leader: u64,
    started: Instant,
}

impl Flight {
    /// Waits until the flight lands or `deadline`; whether it landed.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        let mut landed = self.landed.lock();
        while !*landed {
            if self.cv.wait_until(&mut landed, deadline).timed_out() {
                return *landed;
            }
        }
        true
    }
}

/// What a caller does about a miss.
pub enum Role {
    /// Make the call; the guard releases the waiters.
    Lead(FlightGuard),
    /// Another thread's call is in flight: wait for it.
    Wait(Arc<Flight>),
    /// Neither (the leader's own thread asking again).
    Alone,
}

#[derive(Clone, Default)]
pub struct Flights(Arc<DashMap<Key, Arc<Flight>>>);

impl Flights {
    /// `caller` identifies who asks (the leader asking again must not wait for itself).
    pub fn join(&self, key: Key, timeout: Duration, caller: u64) -> Role {
        use dashmap::mapref::entry::Entry;
        let me = caller;
        let flight = || Arc::new(Flight { landed: Mutex::new(false), cv: Condvar::new(), leader: me, started: Instant::now() });
        let f = match self.0.entry(key) {
            Entry::Vacant(v) => v.insert(flight()).value().clone(),
            Entry::Occupied(mut o) => {
                let f = o.get().clone();
                if f.leader == me {
                    return Role::Alone;
                }
                if f.started.elapsed() < timeout {
                    return Role::Wait(f);
                }
                // A lost leader: release its waiters and take over.
                f.land();
                let new = flight();
                o.insert(new.clone());
                new
            }
        };
        Role::Lead(FlightGuard { key, flight: f, flights: self.clone() })
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Flight {
    fn land(&self) {
        *self.landed.lock() = true;
        self.cv.notify_all();
    }
}

/// Held by the leader's decision: landing (on record or drop) releases the waiters.
pub struct FlightGuard {
    key: Key,
    flight: Arc<Flight>,
    flights: Flights,
}

impl FlightGuard {
    pub fn land(&self) {
        // Only our own flight: a takeover may have replaced it.
        self.flights.0.remove_if(&self.key, |_, f| Arc::ptr_eq(f, &self.flight));
        self.flight.land();
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.land();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_leader_many_waiters_and_release_on_drop() {
        let fl = Flights::default();
        let Role::Lead(g) = fl.join(1, Duration::from_secs(5), 100) else { panic!("first caller leads") };
        assert!(matches!(fl.join(1, Duration::from_secs(5), 100), Role::Alone), "the leader never waits for itself");
        let waiters: Vec<_> = (0..8u64)
            .map(|i| {
                let fl = fl.clone();
                std::thread::spawn(move || match fl.join(1, Duration::from_secs(5), i) {
                    Role::Wait(f) => f.wait_until(Instant::now() + Duration::from_secs(5)),
                    _ => false,
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        drop(g);
        assert!(waiters.into_iter().all(|w| w.join().unwrap()), "every waiter saw the landing");
        assert!(fl.is_empty());
    }

    #[test]
    fn a_stale_flight_is_taken_over() {
        let fl = Flights::default();
        let Role::Lead(g) = fl.join(2, Duration::from_millis(1), 1) else { panic!() };
        std::thread::sleep(Duration::from_millis(5));
        let fl2 = fl.clone();
        let took = std::thread::spawn(move || matches!(fl2.join(2, Duration::from_millis(1), 2), Role::Lead(_))).join().unwrap();
        assert!(took);
        // The new leader's guard was dropped with its thread; the old guard removes nothing new.
        drop(g);
        assert!(fl.is_empty());
    }
}

/// The calling thread as a flight caller id (in-process callers are their threads).
pub fn thread_caller() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::thread::current().id().hash(&mut h);
    h.finish() | 1 << 63
}
