//! Micro-batcher: coalesces concurrent submissions into batches for one handler call.
//!
//! Semantic-cache lookups need an embedding and a similarity search, both far cheaper per item in
//! batches (one BERT forward pass for many texts; one faiss call, and in the Python extension one
//! GIL acquisition per batch instead of per request). Callers block in [`Batcher::submit`]; a
//! dedicated worker thread closes a batch when it holds `max_batch` items or when `max_wait` has
//! passed since its first item was queued, whichever comes first, runs the handler on it and hands
//! each caller exactly its own response.
//!
//! Submission is a lock-free `try_send` into a bounded crossbeam channel plus two atomic
//! counters; a full queue is an immediate [`BatchError::Full`], never a blocked caller.
//!
//! With `max_wait` zero a lookup never waits for company, so a caller that finds nothing queued
//! and the handler idle runs its own batch of one on its own thread: two thread hand-offs (each a
//! futex wake-up, tens of µs on a busy machine) cost more than the lookup itself. The handler
//! runs under one lock either way, so batches never overlap, and whoever arrives while it is busy
//! queues for the worker, which still coalesces them.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::{Error, Result};

/// How batches are formed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatcherConfig {
    /// A batch is closed as soon as it holds this many requests.
    pub max_batch: usize,
    /// A batch is closed at the latest this long after its first request was queued.
    pub max_wait: Duration,
    /// Requests queued but not yet taken by the worker; beyond it submissions get `Full`.
    pub queue_capacity: usize,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        BatcherConfig { max_batch: 64, max_wait: Duration::from_micros(200), queue_capacity: 4096 }
    }
}

impl BatcherConfig {
    pub fn validate(&self) -> Result<()> {
        if self.max_batch < 1 {
            return Err(Error::invalid_constraint("max_batch", "must be at least 1"));
        }
        if self.queue_capacity < self.max_batch {
            return Err(Error::invalid_constraint(
                "queue_capacity",
                format!("must be at least max_batch ({}), got {}", self.max_batch, self.queue_capacity),
            ));
        }
        if self.max_wait > Duration::from_secs(1) {
            return Err(Error::invalid_constraint("max_wait", format!("must be at most 1 s, got {:?}", self.max_wait)));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("the batcher is shut down")]
    Closed,
    #[error("queue full: {0} requests waiting")]
    Full(usize),
    #[error("batch handler failed: {0}")]
    Handler(String),
}

/// Counters since the batcher started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatcherStats {
    /// Requests accepted into the queue (rejected ones are in `rejected_full`).
    pub submitted: u64,
    /// Handler calls.
    pub batches: u64,
    /// Requests handed to the handler.
    pub items: u64,
    pub largest_batch: u64,
    /// Requests refused with [`BatchError::Full`].
    pub rejected_full: u64,
}

/// The caller's one-shot reply slot. A parking_lot Mutex+Condvar in one `Arc` costs one
/// allocation and an uncontended CAS per side, less than a crossbeam `bounded(1)` channel (its own
/// counters, buffer and two waker lists), and one slot serves a whole `submit_many` call with a
/// single wake-up.
struct Slot<Resp> {
    state: Mutex<SlotState<Resp>>,
    ready: Condvar,
}

struct SlotState<Resp> {
    /// Results not yet written.
    pending: usize,
    /// `submit`'s result; `many` stays empty (unallocated) then.
    one: Option<Result<Resp, BatchError>>,
    /// `submit_many`'s results, in request order.
    many: Vec<Option<Result<Resp, BatchError>>>,
}

impl<Resp> SlotState<Resp> {
    fn entry(&mut self, i: usize) -> &mut Option<Result<Resp, BatchError>> {
        if self.many.is_empty() {
            &mut self.one
        } else {
            &mut self.many[i]
        }
    }
}

impl<Resp> Slot<Resp> {
    fn new(pending: usize, many: usize) -> Arc<Self> {
        let many = (0..many).map(|_| None).collect();
        Arc::new(Slot { state: Mutex::new(SlotState { pending, one: None, many }), ready: Condvar::new() })
    }

    /// Writes `len` results from `start` and wakes the caller once nothing is pending.
    fn fill(&self, start: usize, len: usize, mut results: impl Iterator<Item = Result<Resp, BatchError>>) {
        let mut st = self.state.lock();
        for i in start..start + len {
            *st.entry(i) = Some(results.next().unwrap_or(Err(BatchError::Closed)));
        }
        st.pending -= len;
        let done = st.pending == 0;
        drop(st);
        if done {
            self.ready.notify_one();
        }
    }

    fn wait(&self) -> MutexGuard<'_, SlotState<Resp>> {
        let mut st = self.state.lock();
        while st.pending > 0 {
            self.ready.wait(&mut st);
        }
        st
    }
}

/// Where a queued submission's results go. Dropped unanswered (in any path, including a
/// panic in the worker), it answers `Closed`, so no caller can wait forever.
struct ReplyTo<Resp> {
    slot: Arc<Slot<Resp>>,
    start: usize,
    len: usize,
    done: bool,
}

impl<Resp> ReplyTo<Resp> {
    fn send(&mut self, results: impl Iterator<Item = Result<Resp, BatchError>>) {
        if !self.done {
            self.slot.fill(self.start, self.len, results);
            self.done = true;
        }
    }
}

impl<Resp> Drop for ReplyTo<Resp> {
    fn drop(&mut self) {
        self.send(std::iter::empty());
    }
}

enum Payload<Req> {
    One(Req),
    /// One `submit_many` chunk (at most `max_batch` requests), kept together in one batch.
    Many(Vec<Req>),
}

struct Job<Req, Resp> {
    payload: Payload<Req>,
    reply: ReplyTo<Resp>,
    /// When it was queued: `max_wait` counts from here, so a request that waited behind a busy
    /// handler is not held back for another full `max_wait`.
    queued_at: Instant,
}

impl<Req, Resp> Job<Req, Resp> {
    fn len(&self) -> usize {
        self.reply.len
    }
}

/// Counters written by submitters, on their own cache line, apart from the worker's.
#[repr(align(128))]
#[derive(Default)]
struct SubmitCounters {
    /// Requests reserved in or sitting in the queue; this, not the channel, enforces
    /// `queue_capacity` in requests (a `submit_many` chunk is one channel message).
    queued: AtomicUsize,
    submitted: AtomicU64,
    rejected_full: AtomicU64,
}

#[repr(align(128))]
#[derive(Default)]
struct WorkerCounters {
    batches: AtomicU64,
    items: AtomicU64,
    largest_batch: AtomicU64,
}

#[derive(Default)]
struct Counters {
    submit: SubmitCounters,
    worker: WorkerCounters,
}

/// Coalesces concurrent requests into batches for one handler running on a worker thread.
/// Share it behind an `Arc`; dropping it stops and joins the worker.
pub struct Batcher<Req: Send + 'static, Resp: Send + 'static> {
    /// `None` only inside `drop`: dropping the only Sender is how the worker is told to stop.
    tx: Option<Sender<Job<Req, Resp>>>,
    handler: Handler<Req, Resp>,
    /// Held while the handler runs, by the worker or by a caller running its own batch.
    running: Arc<Mutex<()>>,
    worker: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    cfg: BatcherConfig,
}

// Many threads share one Batcher; fail the build, not the caller, if a field ever breaks that.
const _: () = {
    fn assert_send_sync<T: Send + Sync>() {}
    #[allow(dead_code)]
    fn check<Req: Send + 'static, Resp: Send + 'static>() {
        assert_send_sync::<Batcher<Req, Resp>>();
    }
};

type Handler<Req, Resp> = Arc<dyn Fn(Vec<Req>) -> Vec<Resp> + Send + Sync>;

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts the worker thread ("routerx-batcher").
    pub fn new(cfg: BatcherConfig, handler: impl Fn(Vec<Req>) -> Vec<Resp> + Send + Sync + 'static) -> Result<Self> {
        cfg.validate()?;
        // Messages never outnumber queued requests, so `queued` refuses before the channel fills.
        let (tx, rx) = crossbeam_channel::bounded(cfg.queue_capacity);
        let counters = Arc::new(Counters::default());
        let handler: Handler<Req, Resp> = Arc::new(handler);
        let running = Arc::new(Mutex::new(()));
        let worker = {
            let (counters, handler, running) = (Arc::clone(&counters), Arc::clone(&handler), Arc::clone(&running));
            thread::Builder::new()
                .name("routerx-batcher".into())
                .spawn(move || worker_loop(rx, cfg, &*handler, &running, &counters))
                .map_err(|e| Error::config("routerx-batcher", format!("cannot start the worker thread: {e}")))?
        };
        Ok(Batcher { tx: Some(tx), handler, running, worker: Some(worker), counters, cfg })
    }

    /// Runs `reqs` as one batch on this thread when nobody would share it: `max_wait` is zero,
    /// nothing is queued and the handler is idle. Gives the requests back otherwise. No reply slot:
    /// the caller is the one waiting.
    fn run_here(&self, reqs: Vec<Req>) -> Result<Result<Vec<Resp>, BatchError>, Vec<Req>> {
        if !self.cfg.max_wait.is_zero() || self.counters.submit.queued.load(Relaxed) != 0 {
            return Err(reqs);
        }
        let Some(_running) = self.running.try_lock() else { return Err(reqs) };
        self.counters.submit.submitted.fetch_add(reqs.len() as u64, Relaxed);
        Ok(call(&*self.handler, reqs, &self.counters.worker))
    }

    /// Blocks the calling thread until its response is ready. Never blocks on a full queue:
    /// returns `Full` instead.
    pub fn submit(&self, req: Req) -> Result<Resp, BatchError> {
        let req = match self.run_here(vec![req]) {
            Ok(done) => return done.and_then(|mut r| r.pop().ok_or(BatchError::Closed)),
            Err(mut back) => back.pop().expect("one request"),
        };
        let slot = Slot::new(1, 0);
        self.enqueue(Payload::One(req), &slot, 0, 1)?;
        let mut st = slot.wait();
        st.one.take().unwrap_or(Err(BatchError::Closed))
    }

    /// Submits many at once; responses in request order. The requests go as chunks of up to
    /// `max_batch`, each handled within one batch; a chunk that finds the queue full gets `Full`
    /// for each of its requests while the others are still answered.
    pub fn submit_many(&self, reqs: Vec<Req>) -> Vec<Result<Resp, BatchError>> {
        let n = reqs.len();
        if n == 0 {
            return Vec::new();
        }
        let reqs = if n <= self.cfg.max_batch {
            match self.run_here(reqs) {
                Ok(Ok(resps)) => return resps.into_iter().map(Ok).collect(),
                Ok(Err(e)) => return (0..n).map(|_| Err(e.clone())).collect(),
                Err(back) => back,
            }
        } else {
            reqs
        };
        let slot = Slot::new(n, n);
        let mut rest = reqs.into_iter();
        let mut start = 0;
        while start < n {
            let chunk: Vec<Req> = rest.by_ref().take(self.cfg.max_batch).collect();
            let len = chunk.len();
            if let Err(e) = self.enqueue(Payload::Many(chunk), &slot, start, len) {
                slot.fill(start, len, (0..len).map(|_| Err(e.clone())));
            }
            start += len;
        }
        let mut st = slot.wait();
        st.many.iter_mut().map(|r| r.take().unwrap_or(Err(BatchError::Closed))).collect()
    }

    /// Queues `len` requests whose results go to `slot[start..start + len]`.
    fn enqueue(&self, payload: Payload<Req>, slot: &Arc<Slot<Resp>>, start: usize, len: usize) -> Result<(), BatchError> {
        let Some(tx) = &self.tx else { return Err(BatchError::Closed) };
        let c = &self.counters.submit;
        let before = c.queued.fetch_add(len, Relaxed);
        if before + len > self.cfg.queue_capacity {
            c.queued.fetch_sub(len, Relaxed);
            c.rejected_full.fetch_add(len as u64, Relaxed);
            return Err(BatchError::Full(before));
        }
        let reply = ReplyTo { slot: Arc::clone(slot), start, len, done: false };
        let job = Job { payload, reply, queued_at: Instant::now() };
        match tx.try_send(job) {
            Ok(()) => {
                c.submitted.fetch_add(len as u64, Relaxed);
                Ok(())
            }
            Err(e) => {
                let full = matches!(e, TrySendError::Full(_));
                // Refused here: the caller gets this error, not the `Closed` the drop guard would send.
                let mut job = e.into_inner();
                job.reply.done = true;
                c.queued.fetch_sub(len, Relaxed);
                if full {
                    c.rejected_full.fetch_add(len as u64, Relaxed);
                    Err(BatchError::Full(before))
                } else {
                    Err(BatchError::Closed)
                }
            }
        }
    }

    pub fn stats(&self) -> BatcherStats {
        let (s, w) = (&self.counters.submit, &self.counters.worker);
        BatcherStats {
            submitted: s.submitted.load(Relaxed),
            batches: w.batches.load(Relaxed),
            items: w.items.load(Relaxed),
            largest_batch: w.largest_batch.load(Relaxed),
            rejected_full: s.rejected_full.load(Relaxed),
        }
    }

    pub fn config(&self) -> BatcherConfig {
        self.cfg
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> fmt::Debug for Batcher<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batcher").field("config", &self.cfg).field("stats", &self.stats()).finish()
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Drop for Batcher<Req, Resp> {
    fn drop(&mut self) {
        // Disconnects the channel: the worker still receives (and answers) every queued job, then
        // sees the disconnection and exits. Nothing can be submitting now: submit borrows self.
        drop(self.tx.take());
        if let Some(worker) = self.worker.take() {
            // Dropped from inside the handler (it owned the last reference): joining would wait on
            // ourselves; the worker exits by itself once this returns.
            if worker.thread().id() != thread::current().id() {
                let _ = worker.join();
            }
        }
    }
}

struct Batch<Req, Resp> {
    reqs: Vec<Req>,
    replies: Vec<ReplyTo<Resp>>,
}

impl<Req, Resp> Batch<Req, Resp> {
    fn push(&mut self, job: Job<Req, Resp>) {
        match job.payload {
            Payload::One(r) => self.reqs.push(r),
            Payload::Many(rs) => self.reqs.extend(rs),
        }
        self.replies.push(job.reply);
    }
}

fn worker_loop<Req, Resp>(
    rx: Receiver<Job<Req, Resp>>,
    cfg: BatcherConfig,
    handler: &(dyn Fn(Vec<Req>) -> Vec<Resp> + Send + Sync),
    running: &Mutex<()>,
    counters: &Counters,
) {
    let received = |job: Job<Req, Resp>| {
        counters.submit.queued.fetch_sub(job.len(), Relaxed);
        job
    };
    // A chunk that did not fit in the previous batch opens the next one.
    let mut carry: Option<Job<Req, Resp>> = None;
    loop {
        // Blocks (no spinning) until there is work; Err only once Drop disconnected the channel
        // and every queued job has been taken.
        let first = match carry.take() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => received(job),
                Err(_) => return,
            },
        };
        let deadline = first.queued_at + cfg.max_wait;
        let mut batch = Batch { reqs: Vec::with_capacity(cfg.max_batch), replies: Vec::new() };
        batch.push(first);
        while batch.reqs.len() < cfg.max_batch {
            // Takes what is already queued even past the deadline, so a backlog drains in full
            // batches; otherwise parks until the deadline. Disconnection also ends the batch.
            let Ok(job) = rx.recv_deadline(deadline).map(received) else { break };
            if batch.reqs.len() + job.len() > cfg.max_batch {
                carry = Some(job);
                break;
            }
            batch.push(job);
        }
        // Only the handler is expected to panic, and run_batch catches that; this outer guard
        // keeps the worker alive whatever else happens (that batch's callers then get `Closed`
        // from their ReplyTo guards), because a dead worker would strand every queued caller.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            let _running = running.lock();
            run_batch(handler, batch, &counters.worker)
        }));
    }
}

/// One handler call, counted; a panic or a wrong number of responses is a `Handler` error.
fn call<Req, Resp>(
    handler: &(dyn Fn(Vec<Req>) -> Vec<Resp> + Send + Sync),
    reqs: Vec<Req>,
    counters: &WorkerCounters,
) -> Result<Vec<Resp>, BatchError> {
    let n = reqs.len();
    // Counted before anyone is answered, so a caller that has its response sees its batch in stats.
    counters.batches.fetch_add(1, Relaxed);
    counters.items.fetch_add(n as u64, Relaxed);
    counters.largest_batch.fetch_max(n as u64, Relaxed);
    let failure = match catch_unwind(AssertUnwindSafe(|| handler(reqs))) {
        Ok(resps) if resps.len() == n => return Ok(resps),
        Ok(resps) => format!("returned {} responses for {n} requests", resps.len()),
        Err(panic) => format!("panicked: {}", panic_message(panic.as_ref())),
    };
    Err(BatchError::Handler(failure))
}

fn run_batch<Req, Resp>(handler: &(dyn Fn(Vec<Req>) -> Vec<Resp> + Send + Sync), batch: Batch<Req, Resp>, counters: &WorkerCounters) {
    let Batch { reqs, mut replies } = batch;
    match call(handler, reqs, counters) {
        Ok(resps) => {
            let mut resps = resps.into_iter();
            for reply in &mut replies {
                let len = reply.len;
                reply.send(resps.by_ref().take(len).map(Ok));
            }
        }
        Err(err) => {
            for reply in &mut replies {
                reply.send((0..reply.len).map(|_| Err(err.clone())));
            }
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "non-string panic payload"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc;

    /// Generous: the point is "did not hang", not speed, on a loaded 2-core machine.
    const HANG: Duration = Duration::from_secs(60);

    fn answer(x: u64) -> (u64, u64) {
        (x, x.wrapping_mul(2).wrapping_add(1))
    }

    fn doubling(reqs: Vec<u64>) -> Vec<(u64, u64)> {
        reqs.into_iter().map(answer).collect()
    }

    fn cfg(max_batch: usize, max_wait: Duration, queue_capacity: usize) -> BatcherConfig {
        BatcherConfig { max_batch, max_wait, queue_capacity }
    }

    /// Runs `f` on a thread and fails the test instead of hanging it.
    fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(limit).expect("timed out: something hung")
    }

    fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < HANG, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn config_defaults_and_validation() {
        let d = BatcherConfig::default();
        assert_eq!(d, cfg(64, Duration::from_micros(200), 4096));
        assert!(d.validate().is_ok());
        let field = |c: BatcherConfig| match c.validate() {
            Err(Error::InvalidConstraint { field, .. }) => field,
            other => panic!("expected InvalidConstraint, got {other:?}"),
        };
        assert_eq!(field(BatcherConfig { max_batch: 0, ..d }), "max_batch");
        assert_eq!(field(BatcherConfig { queue_capacity: 63, ..d }), "queue_capacity");
        assert_eq!(field(BatcherConfig { max_wait: Duration::from_millis(1001), ..d }), "max_wait");
        assert!(BatcherConfig { max_wait: Duration::from_secs(1), queue_capacity: 64, ..d }.validate().is_ok());
        assert!(Batcher::new(BatcherConfig { max_batch: 0, ..d }, doubling).is_err());
        let b = Batcher::new(d, doubling).unwrap();
        assert_eq!(b.config(), d);
        assert_eq!(b.stats(), BatcherStats::default());
    }

    #[test]
    fn concurrent_callers_each_get_their_own_answer() {
        const THREADS: u64 = 64;
        const PER_THREAD: u64 = 500;
        let b = Arc::new(Batcher::new(cfg(64, Duration::from_millis(1), 4096), doubling).unwrap());
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let b = Arc::clone(&b);
                thread::spawn(move || {
                    for i in 0..PER_THREAD {
                        let x = t * 1_000_000 + i;
                        assert_eq!(b.submit(x), Ok(answer(x)));
                    }
                })
            })
            .collect();
        within(HANG, move || workers.into_iter().for_each(|w| w.join().unwrap()));
        let s = b.stats();
        assert_eq!(s.submitted, THREADS * PER_THREAD);
        assert_eq!(s.items, THREADS * PER_THREAD);
        assert_eq!(s.rejected_full, 0);
        assert!(s.largest_batch > 1, "no coalescing happened: {s:?}");
        assert!(s.largest_batch <= 64, "{s:?}");
        assert!(s.batches >= THREADS * PER_THREAD / 64 && s.batches < THREADS * PER_THREAD, "{s:?}");
    }

    #[test]
    fn zero_wait_runs_a_lone_request_on_the_callers_thread() {
        let on_thread =
            |reqs: Vec<u64>| reqs.into_iter().map(|x| (x, thread::current().name() == Some("routerx-batcher"))).collect::<Vec<_>>();
        let b = Batcher::new(cfg(8, Duration::ZERO, 64), on_thread).unwrap();
        assert_eq!(b.submit(1), Ok((1, false)));
        assert_eq!(b.submit_many(vec![2, 3]), vec![Ok((2, false)), Ok((3, false))]);
        // More than one batch's worth goes through the worker, in chunks, still in order.
        assert_eq!(b.submit_many((0..20).collect()), (0..20).map(|x| Ok((x, true))).collect::<Vec<_>>());
        let s = b.stats();
        assert_eq!((s.submitted, s.items, s.batches), (23, 23, 5));
        // A positive max_wait always goes through the worker, which may coalesce.
        let b = Batcher::new(cfg(8, Duration::from_micros(1), 64), on_thread).unwrap();
        assert_eq!(b.submit(1), Ok((1, true)));
    }

    #[test]
    fn zero_wait_handler_failure_on_the_callers_thread_is_an_error() {
        let flaky = |reqs: Vec<u64>| {
            assert!(reqs[0] != 13, "unlucky");
            if reqs[0] == 7 {
                return Vec::new();
            }
            doubling(reqs)
        };
        let b = Batcher::new(cfg(8, Duration::ZERO, 64), flaky).unwrap();
        assert_eq!(b.submit(13), Err(BatchError::Handler("panicked: unlucky".into())));
        let short = BatchError::Handler("returned 0 responses for 2 requests".into());
        assert_eq!(b.submit_many(vec![7, 8]), vec![Err(short.clone()), Err(short)]);
        assert_eq!(b.submit(1), Ok(answer(1)));
        assert_eq!(b.stats().batches, 3);
    }

    #[test]
    fn zero_wait_callers_each_get_their_own_answer() {
        // Callers run lone batches themselves while others queue for the worker: the handler must
        // never run twice at once, and every caller gets exactly its own answers.
        const THREADS: u64 = 64;
        const PER_THREAD: u64 = 300;
        let inside = Arc::new(AtomicUsize::new(0));
        let handler = {
            let inside = Arc::clone(&inside);
            move |reqs: Vec<u64>| {
                assert_eq!(inside.fetch_add(1, Relaxed), 0, "two batches ran at once");
                thread::yield_now();
                let out = doubling(reqs);
                inside.fetch_sub(1, Relaxed);
                out
            }
        };
        let b = Arc::new(Batcher::new(cfg(16, Duration::ZERO, 4096), handler).unwrap());
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let b = Arc::clone(&b);
                thread::spawn(move || {
                    for i in 0..PER_THREAD {
                        let x = t * 1_000_000 + i * 4;
                        if i % 3 == 0 {
                            let got = b.submit_many(vec![x, x + 1, x + 2]);
                            assert_eq!(got, vec![Ok(answer(x)), Ok(answer(x + 1)), Ok(answer(x + 2))]);
                        } else {
                            assert_eq!(b.submit(x), Ok(answer(x)));
                        }
                    }
                })
            })
            .collect();
        within(HANG, move || workers.into_iter().for_each(|w| w.join().unwrap()));
        let s = b.stats();
        let total = THREADS * (PER_THREAD + 2 * PER_THREAD.div_ceil(3));
        assert_eq!((s.submitted, s.items, s.rejected_full), (total, total, 0));
        assert!(s.largest_batch > 3 && s.largest_batch <= 16, "{s:?}");
    }

    #[test]
    fn max_batch_one_is_unbatched() {
        let b = Arc::new(Batcher::new(cfg(1, Duration::from_millis(5), 16), doubling).unwrap());
        let workers: Vec<_> = (0..8u64)
            .map(|t| {
                let b = Arc::clone(&b);
                thread::spawn(move || (0..100).for_each(|i| assert_eq!(b.submit(t * 1000 + i), Ok(answer(t * 1000 + i)))))
            })
            .collect();
        within(HANG, move || workers.into_iter().for_each(|w| w.join().unwrap()));
        let s = b.stats();
        assert_eq!((s.submitted, s.items, s.batches, s.largest_batch), (800, 800, 800, 1));
        // submit_many with max_batch 1: one request per batch, still in order.
        assert_eq!(b.submit_many(vec![7, 8, 9]), vec![Ok(answer(7)), Ok(answer(8)), Ok(answer(9))]);
        assert_eq!(b.stats().largest_batch, 1);
    }

    #[test]
    fn lone_request_waits_at_most_max_wait() {
        let max_wait = Duration::from_millis(10);
        let b = Batcher::new(cfg(64, max_wait, 4096), doubling).unwrap();
        // Worker thread warmed up first. Then the fastest of five: a scheduler stall on a loaded
        // machine delays one submission, a batcher that waits past max_wait delays every one.
        b.submit(0).unwrap();
        let took: Vec<Duration> = (1..=5)
            .map(|x| {
                let start = Instant::now();
                assert_eq!(b.submit(x), Ok(answer(x)));
                start.elapsed()
            })
            .collect();
        let fastest = *took.iter().min().unwrap();
        assert!(fastest < max_wait + Duration::from_millis(50), "lone requests took {took:?}");
        assert_eq!(b.stats().largest_batch, 1);
    }

    #[test]
    fn full_batch_is_closed_before_max_wait() {
        // max_wait 1 s, but four requests fill the batch: it must go at once.
        let b = Batcher::new(cfg(4, Duration::from_secs(1), 64), doubling).unwrap();
        let start = Instant::now();
        assert_eq!(b.submit_many(vec![1, 2, 3, 4]), (1..=4).map(|x| Ok(answer(x))).collect::<Vec<_>>());
        assert!(start.elapsed() < Duration::from_millis(500), "took {:?}", start.elapsed());
        assert_eq!(b.stats().largest_batch, 4);
    }

    const POISON: u64 = u64::MAX;

    #[test]
    fn handler_panic_fails_only_that_batch() {
        let handler = |reqs: Vec<u64>| {
            assert!(!reqs.contains(&POISON), "poison request");
            doubling(reqs)
        };
        let b = Arc::new(Batcher::new(cfg(4, Duration::from_secs(1), 64), handler).unwrap());
        // One full batch holding the poison: every caller in it gets the handler error.
        for r in b.submit_many(vec![1, 2, POISON, 4]) {
            match r {
                Err(BatchError::Handler(msg)) => assert!(msg.contains("poison request"), "{msg}"),
                other => panic!("expected a handler error, got {other:?}"),
            }
        }
        assert_eq!(b.submit_many(vec![5, 6, 7, 8]), (5..=8).map(|x| Ok(answer(x))).collect::<Vec<_>>());
        // Concurrent callers, some poisoned: poison never succeeds, every success is correct,
        // and the worker keeps serving afterwards.
        let b2 = Arc::new(Batcher::new(cfg(8, Duration::from_millis(1), 256), handler).unwrap());
        let workers: Vec<_> = (0..8u64)
            .map(|t| {
                let b2 = Arc::clone(&b2);
                thread::spawn(move || {
                    for i in 0..50 {
                        let x = if i % 10 == 3 && t % 2 == 0 { POISON } else { t * 1000 + i };
                        match b2.submit(x) {
                            Ok(r) => assert_eq!(r, answer(x)),
                            Err(BatchError::Handler(_)) => {}
                            Err(e) => panic!("unexpected {e:?}"),
                        }
                        if x == POISON {
                            assert!(b2.submit(x).is_err());
                        }
                    }
                })
            })
            .collect();
        within(HANG, move || workers.into_iter().for_each(|w| w.join().unwrap()));
        assert_eq!(b2.submit(42), Ok(answer(42)));
    }

    #[test]
    fn wrong_length_output_is_a_handler_error() {
        // Drops one response whenever the batch contains a 0.
        let handler = |reqs: Vec<u64>| {
            let short = reqs.contains(&0);
            let mut out = doubling(reqs);
            if short {
                out.pop();
            }
            out
        };
        let b = Batcher::new(cfg(3, Duration::from_secs(1), 64), handler).unwrap();
        let expected = BatchError::Handler("returned 2 responses for 3 requests".into());
        assert_eq!(b.submit_many(vec![0, 1, 2]), vec![Err(expected.clone()), Err(expected.clone()), Err(expected)]);
        assert_eq!(b.submit_many(vec![3, 4, 5]), (3..=5).map(|x| Ok(answer(x))).collect::<Vec<_>>());
        let s = b.stats();
        assert_eq!((s.batches, s.items), (2, 6));
    }

    #[test]
    fn full_queue_rejects_without_blocking() {
        // The handler holds the worker until released, so later submissions stay queued.
        let (entered_tx, entered_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let gate = Mutex::new((entered_tx, release_rx));
        let handler = move |reqs: Vec<u64>| {
            let g = gate.lock();
            let _ = g.0.send(());
            let _ = g.1.recv_timeout(HANG);
            doubling(reqs)
        };
        let b = Arc::new(Batcher::new(cfg(1, Duration::ZERO, 2), handler).unwrap());
        let spawn = |x: u64| {
            let b = Arc::clone(&b);
            thread::spawn(move || b.submit(x))
        };
        // The first runs on its own thread (nothing queued, handler idle) and holds the handler;
        // the second is taken by the worker, which waits for the handler; two more fill the queue.
        let first = spawn(1);
        entered_rx.recv_timeout(HANG).expect("handler never ran");
        let second = spawn(2);
        wait_until("the worker holding the second", || b.stats().submitted == 2 && b.counters.submit.queued.load(Relaxed) == 0);
        let queued = [spawn(3), spawn(4)];
        wait_until("two queued requests", || b.stats().submitted == 4);
        let start = Instant::now();
        assert_eq!(b.submit(5), Err(BatchError::Full(2)));
        assert_eq!(b.submit_many(vec![6, 7]), vec![Err(BatchError::Full(2)), Err(BatchError::Full(2))]);
        assert!(start.elapsed() < Duration::from_secs(5), "a full queue blocked the caller");
        assert_eq!(b.stats().rejected_full, 3);
        for _ in 0..4 {
            release_tx.send(()).unwrap();
        }
        assert_eq!(first.join().unwrap(), Ok(answer(1)));
        assert_eq!(second.join().unwrap(), Ok(answer(2)));
        for (h, x) in queued.into_iter().zip([3, 4]) {
            assert_eq!(h.join().unwrap(), Ok(answer(x)));
        }
        // Room again.
        release_tx.send(()).unwrap();
        assert_eq!(b.submit(8), Ok(answer(8)));
        let s = b.stats();
        assert_eq!((s.submitted, s.items, s.rejected_full), (5, 5, 3));
    }

    #[test]
    fn drop_while_threads_submit_never_hangs() {
        // The handler's drop flag proves the last Batcher drop joined the worker (which owns it).
        struct OnDrop(Arc<AtomicBool>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.store(true, Relaxed);
            }
        }
        let handler_dropped = Arc::new(AtomicBool::new(false));
        let guard = OnDrop(Arc::clone(&handler_dropped));
        let b = Arc::new(
            Batcher::new(cfg(16, Duration::from_micros(200), 64), move |reqs: Vec<u64>| {
                let _ = &guard;
                doubling(reqs)
            })
            .unwrap(),
        );
        let (done_tx, done_rx) = mpsc::channel();
        for t in 0..32u64 {
            let b = Arc::clone(&b);
            let done_tx = done_tx.clone();
            thread::spawn(move || {
                let mut results = Vec::new();
                for i in 0..200 {
                    let x = t * 1000 + i;
                    results.push((x, b.submit(x)));
                }
                // The last thread out runs Batcher::drop here, racing the others' final submits.
                drop(b);
                let _ = done_tx.send(results);
            });
        }
        drop(done_tx);
        thread::sleep(Duration::from_millis(2));
        drop(b); // main's reference goes while the threads are mid-flight
        let mut ok = 0;
        for _ in 0..32 {
            let results = done_rx.recv_timeout(HANG).expect("a submitting thread hung");
            for (x, r) in results {
                match r {
                    Ok(r) => {
                        assert_eq!(r, answer(x));
                        ok += 1;
                    }
                    Err(BatchError::Closed) => {}
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
        }
        assert!(ok > 0);
        assert!(handler_dropped.load(Relaxed), "the worker was not joined");
    }

    #[test]
    fn drop_idle_and_after_use_returns() {
        within(HANG, || {
            drop(Batcher::new(BatcherConfig::default(), doubling).unwrap());
            let b = Batcher::new(cfg(8, Duration::from_millis(20), 64), doubling).unwrap();
            assert_eq!(b.submit(1), Ok(answer(1)));
            drop(b);
        });
    }

    #[test]
    fn submit_many_keeps_order_and_chunks() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&sizes);
        let b = Arc::new(
            Batcher::new(cfg(64, Duration::from_millis(1), 4096), move |reqs: Vec<u64>| {
                seen.lock().push(reqs.len());
                doubling(reqs)
            })
            .unwrap(),
        );
        assert!(b.submit_many(Vec::new()).is_empty());
        // Concurrent single submitters interleave with the chunks; order must still hold.
        let noise: Vec<_> = (0..4u64)
            .map(|t| {
                let b = Arc::clone(&b);
                thread::spawn(move || {
                    (0..100).for_each(|i| assert_eq!(b.submit(9_000_000 + t * 1000 + i), Ok(answer(9_000_000 + t * 1000 + i))))
                })
            })
            .collect();
        for round in 0..5u64 {
            let reqs: Vec<u64> = (0..1000).map(|i| round * 10_000 + i).collect();
            let out = b.submit_many(reqs.clone());
            assert_eq!(out, reqs.iter().map(|&x| Ok(answer(x))).collect::<Vec<_>>());
        }
        within(HANG, move || noise.into_iter().for_each(|w| w.join().unwrap()));
        let s = b.stats();
        assert_eq!((s.submitted, s.items, s.rejected_full), (5400, 5400, 0));
        assert!(sizes.lock().iter().all(|&n| (1..=64).contains(&n)));
        // A caller's small batch stays together in one handler call.
        let b = Batcher::new(cfg(8, Duration::from_secs(1), 64), doubling).unwrap();
        assert_eq!(b.submit_many(vec![1, 2, 3, 4, 5, 6, 7, 8]).len(), 8);
        assert_eq!(b.stats().batches, 1);
    }
}
