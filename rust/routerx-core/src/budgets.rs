//! Budgets: USD and token limits per tenant, agent or workflow, per hour, day or month.
//!
//! At route time the decision's predicted cost and tokens are *reserved* against every limit that
//! applies to the request, with a compare-and-swap loop on one atomic per limit (`used` = spent +
//! reserved in the current window), so concurrent requests can never together reserve more than
//! the limit. At `record()` the reservation is settled: released, and the actual amount added.
//! A reservation whose decision is never recorded is released when the decision is dropped, or
//! after a TTL by a sweep, so budgets never leak.
//!
//! Windows are wall-clock UTC buckets (the hour, the day, the calendar month); a new window starts
//! from zero. Limits are per process: several processes sharing a budget each enforce it alone.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeKind {
    Tenant,
    Agent,
    Workflow,
}

/// What a limit applies to: `tenant:acme`, `agent:support-bot`, `workflow:nightly-etl`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub kind: ScopeKind,
    pub name: String,
}

impl Scope {
    pub fn parse(s: &str) -> Result<Scope> {
        let (k, name) = s
            .split_once(':')
            .ok_or_else(|| Error::invalid_constraint("scope", format!("{s:?}: expected tenant:NAME, agent:NAME or workflow:NAME")))?;
        let kind = match k {
            "tenant" => ScopeKind::Tenant,
            "agent" => ScopeKind::Agent,
            "workflow" => ScopeKind::Workflow,
            _ => return Err(Error::invalid_constraint("scope", format!("{s:?}: the kind must be tenant, agent or workflow"))),
        };
        if name.is_empty() || name.len() > 256 {
            return Err(Error::invalid_constraint("scope", format!("{s:?}: the name must be 1 to 256 bytes")));
        }
        Ok(Scope { kind, name: name.to_owned() })
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = match self.kind {
            ScopeKind::Tenant => "tenant",
            ScopeKind::Agent => "agent",
            ScopeKind::Workflow => "workflow",
        };
        write!(f, "{k}:{}", self.name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    Hour,
    Day,
    Month,
}

impl Window {
    pub fn parse(s: &str) -> Result<Window> {
        match s {
            "hour" => Ok(Window::Hour),
            "day" => Ok(Window::Day),
            "month" => Ok(Window::Month),
            _ => Err(Error::invalid_constraint("window", format!("{s:?}: expected hour, day or month"))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Month => "month",
        }
    }
    /// Number of the UTC window holding `unix_s`: hours or days since the epoch, or year × 12 + month.
    pub fn id(self, unix_s: f64) -> u64 {
        let s = unix_s.max(0.0) as u64;
        match self {
            Window::Hour => s / 3600,
            Window::Day => s / 86_400,
            Window::Month => {
                let (y, m, _) = civil_from_days((s / 86_400) as i64);
                y as u64 * 12 + (m as u64 - 1)
            }
        }
    }
    /// Unix seconds at which the window holding `unix_s` starts.
    pub fn start(self, unix_s: f64) -> f64 {
        let s = unix_s.max(0.0) as u64;
        match self {
            Window::Hour => (s / 3600 * 3600) as f64,
            Window::Day => (s / 86_400 * 86_400) as f64,
            Window::Month => {
                let (y, m, _) = civil_from_days((s / 86_400) as i64);
                (days_from_civil(y, m, 1) * 86_400) as f64
            }
        }
    }
}

/// Howard Hinnant's days-to-civil: (year, month 1..=12, day) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Limit and amounts in nano-USD.
    Usd,
    Tokens,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Usd => "usd",
            Metric::Tokens => "tokens",
        }
    }
}

/// What happens to a request that does not fit a limit; ordered by severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Serve it as routed; the decision carries a warning.
    Warn,
    /// Route it to the cheapest candidate that meets the request's minimum quality.
    Downgrade,
    /// Refuse it with [`Error::BudgetExceeded`].
    Reject,
}

impl Action {
    pub fn parse(s: &str) -> Result<Action> {
        match s {
            "warn" => Ok(Action::Warn),
            "downgrade" => Ok(Action::Downgrade),
            "reject" => Ok(Action::Reject),
            _ => Err(Error::invalid_constraint("action", format!("{s:?}: expected warn, downgrade or reject"))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Warn => "warn",
            Action::Downgrade => "downgrade",
            Action::Reject => "reject",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitSpec {
    pub scope: Scope,
    pub window: Window,
    pub metric: Metric,
    /// nano-USD or tokens.
    pub limit: u64,
    pub action: Action,
}

impl LimitSpec {
    pub fn describe(&self) -> String {
        let amount = match self.metric {
            Metric::Usd => format!("${:.4}", self.limit as f64 / 1e9),
            Metric::Tokens => format!("{} tokens", self.limit),
        };
        format!("{} {} per {}", self.scope, amount, self.window.as_str())
    }
}

/// One limit and its state in the current window.
pub struct Limit {
    pub spec: LimitSpec,
    window_id: AtomicU64,
    /// Spent + reserved in the current window: the one number reservations compare-and-swap.
    used: AtomicU64,
    spent: AtomicU64,
    reserved: AtomicU64,
    roll: Mutex<()>,
    pub warned: AtomicU64,
    pub downgraded: AtomicU64,
    pub rejected: AtomicU64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LimitState {
    pub spec: LimitSpec,
    pub window_start: f64,
    pub spent: u64,
    pub reserved: u64,
    pub warned: u64,
    pub downgraded: u64,
    pub rejected: u64,
}

impl Limit {
    fn new(spec: LimitSpec, now: f64) -> Limit {
        Limit {
            window_id: AtomicU64::new(spec.window.id(now)),
            spec,
            used: AtomicU64::new(0),
            spent: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            roll: Mutex::new(()),
            warned: AtomicU64::new(0),
            downgraded: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    /// The current window's id, starting a new window (from zero) when the clock has moved on.
    fn window(&self, now: f64) -> u64 {
        let w = self.spec.window.id(now);
        if self.window_id.load(Acquire) != w {
            let _g = self.roll.lock();
            if self.window_id.load(Acquire) != w {
                self.used.store(0, Release);
                self.spent.store(0, Release);
                self.reserved.store(0, Release);
                self.window_id.store(w, Release);
            }
        }
        w
    }

    /// Atomically adds `amount` to `used` if the result stays within the limit (or always, when forced).
    fn reserve(&self, amount: u64, now: f64, force: bool) -> Option<u64> {
        let w = self.window(now);
        let mut u = self.used.load(Acquire);
        loop {
            let next = u.saturating_add(amount);
            if !force && next > self.spec.limit {
                return None;
            }
            match self.used.compare_exchange_weak(u, next, AcqRel, Acquire) {
                Ok(_) => break,
                Err(cur) => u = cur,
            }
        }
        self.reserved.fetch_add(amount, Relaxed);
        Some(w)
    }

    fn unreserve(&self, window: u64, amount: u64) {
        if self.window_id.load(Acquire) == window {
            sub_sat(&self.used, amount);
            sub_sat(&self.reserved, amount);
        }
    }

    fn charge(&self, now: f64, amount: u64) {
        self.window(now);
        self.used.fetch_add(amount, AcqRel);
        self.spent.fetch_add(amount, Relaxed);
    }

    /// Turns a held `amount` into the `actual` charge in one update of `used`. Releasing and then
    /// charging would open a gap in which another reservation takes the room this one still uses.
    fn settle_held(&self, now: f64, window: u64, amount: u64, actual: u64) {
        if self.window(now) != window {
            // The window rolled since the reservation: nothing is held any more.
            return self.charge(now, actual);
        }
        let _ = self.used.fetch_update(AcqRel, Acquire, |u| Some(u.saturating_sub(amount).saturating_add(actual)));
        sub_sat(&self.reserved, amount);
        self.spent.fetch_add(actual, Relaxed);
    }

    /// Would `amount` more fit right now? (A hint for choosing the action; reservations decide.)
    fn fits(&self, amount: u64, now: f64) -> bool {
        self.window(now);
        self.used.load(Acquire).saturating_add(amount) <= self.spec.limit
    }

    pub fn state(&self, now: f64) -> LimitState {
        self.window(now);
        LimitState {
            spec: self.spec.clone(),
            window_start: self.spec.window.start(now),
            spent: self.spent.load(Relaxed),
            reserved: self.reserved.load(Relaxed),
            warned: self.warned.load(Relaxed),
            downgraded: self.downgraded.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
        }
    }

    fn amount(&self, usd_nano: u64, tokens: u64) -> u64 {
        match self.spec.metric {
            Metric::Usd => usd_nano,
            Metric::Tokens => tokens,
        }
    }
}

fn sub_sat(a: &AtomicU64, v: u64) {
    let _ = a.fetch_update(AcqRel, Acquire, |x| Some(x.saturating_sub(v)));
}

/// Amounts held against limits for one decision until it is recorded, dropped or expires.
pub struct Reservation {
    parts: Vec<(Arc<Limit>, u64, u64)>,
    released: AtomicBool,
    charged: AtomicBool,
    created: f64,
}

impl Reservation {
    /// Releases the reservation (unless it already expired) and charges the actual cost and
    /// tokens. Charges once: later calls do nothing and return false. A call recorded after its
    /// reservation expired is still charged: the money was spent.
    pub fn settle(&self, usd_nano: u64, tokens: u64, now: f64) -> bool {
        if self.charged.swap(true, AcqRel) {
            return false;
        }
        let held = !self.released.swap(true, AcqRel);
        for (l, w, amount) in &self.parts {
            let actual = l.amount(usd_nano, tokens);
            if held {
                l.settle_held(now, *w, *amount, actual);
            } else {
                l.charge(now, actual);
            }
        }
        true
    }

    /// Gives the reserved amounts back (once) without charging anything.
    pub fn release(&self) -> bool {
        if self.released.swap(true, AcqRel) {
            return false;
        }
        for (l, w, amount) in &self.parts {
            l.unreserve(*w, *amount);
        }
        true
    }

    pub fn is_open(&self) -> bool {
        !self.released.load(Acquire)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

/// Which limits a request is subject to.
pub struct Labels<'a> {
    pub tenant: &'a str,
    pub agent: &'a str,
    pub workflow: &'a str,
}

const PENDING_SHARDS: usize = 8;

/// The set of limits of one router.
pub struct Budgets {
    limits: ArcSwap<Vec<Arc<Limit>>>,
    edit: Mutex<()>,
    /// Open reservations, for the TTL sweep; sharded by thread so reserving threads rarely meet.
    pending: [Mutex<Vec<Weak<Reservation>>>; PENDING_SHARDS],
    reservations: AtomicU64,
    ttl_bits: AtomicU64,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets::new()
    }
}

/// Why a request does not fit its budgets: the limit and the action it calls for.
#[derive(Clone)]
pub struct Exceeded {
    pub limit: Arc<Limit>,
    pub action: Action,
}

impl std::fmt::Debug for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Exceeded({}, {})", self.limit.spec.describe(), self.action.as_str())
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reservation({} limits, open {})", self.parts.len(), self.is_open())
    }
}

impl Budgets {
    pub fn new() -> Budgets {
        Budgets {
            limits: ArcSwap::from_pointee(Vec::new()),
            edit: Mutex::new(()),
            pending: Default::default(),
            reservations: AtomicU64::new(0),
            ttl_bits: AtomicU64::new(300f64.to_bits()),
        }
    }

    /// Seconds after which the reservation of a decision never recorded is released (default 300).
    pub fn set_reservation_ttl(&self, s: f64) {
        self.ttl_bits.store(s.max(0.0).to_bits(), Relaxed);
    }
    pub fn reservation_ttl(&self) -> f64 {
        f64::from_bits(self.ttl_bits.load(Relaxed))
    }

    pub fn is_empty(&self) -> bool {
        self.limits.load().is_empty()
    }

    /// Adds or replaces the limit for (scope, window, metric). A replaced limit keeps what was
    /// spent in its window; `spent` (e.g. read back from the accounting database) overrides it.
    pub fn set(&self, spec: LimitSpec, spent: Option<u64>, now: f64) -> Result<()> {
        if spec.limit == 0 {
            return Err(Error::invalid_constraint("limit", "must be positive"));
        }
        let _g = self.edit.lock();
        let cur = self.limits.load_full();
        let old = cur.iter().find(|l| l.spec.scope == spec.scope && l.spec.window == spec.window && l.spec.metric == spec.metric);
        let new = Arc::new(Limit::new(spec.clone(), now));
        let carried = match (spent, old) {
            (Some(s), _) => s,
            (None, Some(o)) => o.state(now).spent,
            (None, None) => 0,
        };
        new.charge(now, carried);
        let mut v: Vec<Arc<Limit>> = cur
            .iter()
            .filter(|l| !(l.spec.scope == spec.scope && l.spec.window == spec.window && l.spec.metric == spec.metric))
            .cloned()
            .collect();
        v.push(new);
        v.sort_by(|a, b| (&a.spec.scope, a.spec.window, a.spec.metric).cmp(&(&b.spec.scope, b.spec.window, b.spec.metric)));
        self.limits.store(Arc::new(v));
        Ok(())
    }

    /// Removes the limits of a scope (all windows and metrics, or the ones named). Returns how many.
    pub fn remove(&self, scope: &Scope, window: Option<Window>, metric: Option<Metric>) -> usize {
        let _g = self.edit.lock();
        let cur = self.limits.load_full();
        let keep: Vec<Arc<Limit>> = cur
            .iter()
            .filter(|l| !(l.spec.scope == *scope && window.is_none_or(|w| w == l.spec.window) && metric.is_none_or(|m| m == l.spec.metric)))
            .cloned()
            .collect();
        let n = cur.len() - keep.len();
        self.limits.store(Arc::new(keep));
        n
    }

    pub fn states(&self, now: f64) -> Vec<LimitState> {
        self.limits.load().iter().map(|l| l.state(now)).collect()
    }

    /// The limits a request with these labels is subject to (empty, without allocating, when none are set).
    pub fn applicable(&self, labels: &Labels<'_>) -> Vec<Arc<Limit>> {
        let all = self.limits.load();
        if all.is_empty() {
            return Vec::new();
        }
        all.iter()
            .filter(|l| {
                let s = &l.spec.scope;
                match s.kind {
                    ScopeKind::Tenant => s.name == labels.tenant,
                    ScopeKind::Agent => s.name == labels.agent,
                    ScopeKind::Workflow => s.name == labels.workflow,
                }
            })
            .cloned()
            .collect()
    }

    /// Reserves `usd_nano` and `tokens` against every limit, all or nothing. On failure, names the
    /// most severe action among the limits that cannot take the amount.
    pub fn try_reserve(
        &self,
        limits: &[Arc<Limit>],
        usd_nano: u64,
        tokens: u64,
        now: f64,
    ) -> std::result::Result<Arc<Reservation>, Exceeded> {
        let mut parts = Vec::with_capacity(limits.len());
        for l in limits {
            let amount = l.amount(usd_nano, tokens);
            match l.reserve(amount, now, false) {
                Some(w) => parts.push((l.clone(), w, amount)),
                None => {
                    for (p, w, a) in &parts {
                        p.unreserve(*w, *a);
                    }
                    self.sweep(now);
                    // The most severe action of every limit the amount does not fit.
                    let mut worst = Exceeded { limit: l.clone(), action: l.spec.action };
                    for o in limits {
                        if o.spec.action > worst.action && !o.fits(o.amount(usd_nano, tokens), now) {
                            worst = Exceeded { limit: o.clone(), action: o.spec.action };
                        }
                    }
                    return Err(worst);
                }
            }
        }
        Ok(self.register(parts, now))
    }

    /// Reserves regardless of the limits (warn and downgrade never refuse).
    pub fn force_reserve(&self, limits: &[Arc<Limit>], usd_nano: u64, tokens: u64, now: f64) -> Arc<Reservation> {
        let parts = limits
            .iter()
            .map(|l| {
                let amount = l.amount(usd_nano, tokens);
                let w = l.reserve(amount, now, true).expect("forced");
                (l.clone(), w, amount)
            })
            .collect();
        self.register(parts, now)
    }

    fn register(&self, parts: Vec<(Arc<Limit>, u64, u64)>, now: f64) -> Arc<Reservation> {
        let r = Arc::new(Reservation { parts, released: AtomicBool::new(false), charged: AtomicBool::new(false), created: now });
        let n = self.reservations.fetch_add(1, Relaxed);
        self.pending[crate::stats::thread_shard() % PENDING_SHARDS].lock().push(Arc::downgrade(&r));
        if n % 1024 == 1023 {
            self.sweep(now);
        }
        r
    }

    /// Releases reservations older than the TTL and forgets finished ones. Returns how many expired.
    pub fn sweep(&self, now: f64) -> usize {
        let ttl = self.reservation_ttl();
        let mut expired = 0;
        for shard in &self.pending {
            shard.lock().retain(|w| match w.upgrade() {
                None => false,
                Some(r) if !r.is_open() => false,
                Some(r) if now - r.created >= ttl => {
                    if r.release() {
                        expired += 1;
                    }
                    false
                }
                Some(_) => true,
            });
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_700_000_000.0;

    fn spec(scope: &str, metric: Metric, limit: u64, action: Action) -> LimitSpec {
        LimitSpec { scope: Scope::parse(scope).unwrap(), window: Window::Day, metric, limit, action }
    }

    #[test]
    fn windows_are_utc_buckets() {
        // 2023-11-14T22:13:20Z
        assert_eq!(Window::Hour.start(NOW), 1_699_999_200.0);
        assert_eq!(Window::Day.start(NOW), 1_699_920_000.0);
        assert_eq!(Window::Month.start(NOW), 1_698_796_800.0); // 2023-11-01
        assert_eq!(Window::Month.id(NOW), 2023 * 12 + 10);
        assert_eq!(Window::Month.id(1_701_388_800.0), 2023 * 12 + 11); // 2023-12-01
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert!(Scope::parse("team:x").is_err() && Scope::parse("tenant:").is_err());
        assert_eq!(Scope::parse("workflow:etl").unwrap().to_string(), "workflow:etl");
    }

    #[test]
    fn reserve_settle_release() {
        let b = Budgets::new();
        b.set(spec("tenant:a", Metric::Usd, 100, Action::Reject), None, NOW).unwrap();
        let ls = b.applicable(&Labels { tenant: "a", agent: "", workflow: "" });
        assert_eq!(ls.len(), 1);
        assert!(b.applicable(&Labels { tenant: "b", agent: "", workflow: "" }).is_empty());
        let r1 = b.try_reserve(&ls, 60, 0, NOW).unwrap();
        assert!(b.try_reserve(&ls, 60, 0, NOW).is_err(), "60 + 60 > 100");
        assert!(r1.settle(30, 0, NOW));
        assert!(!r1.settle(30, 0, NOW), "settles once");
        let s = &b.states(NOW)[0];
        assert_eq!((s.spent, s.reserved), (30, 0));
        let r2 = b.try_reserve(&ls, 70, 0, NOW).unwrap();
        drop(r2); // never recorded: released on drop
        assert_eq!(b.states(NOW)[0].reserved, 0);
        let r3 = b.try_reserve(&ls, 70, 0, NOW).unwrap();
        assert_eq!(b.sweep(NOW + 301.0), 1, "expired after the TTL");
        assert!(!r3.is_open());
        assert_eq!(b.states(NOW)[0].reserved, 0);
        assert!(r3.settle(5, 0, NOW), "recorded after expiry: still charged");
        assert_eq!(b.states(NOW)[0].spent, 35);
        // A new day starts from zero; replacing a limit keeps what was spent.
        assert!(b.try_reserve(&ls, 100, 0, NOW + 86_400.0).is_ok());
        b.set(spec("tenant:a", Metric::Usd, 500, Action::Reject), Some(450), NOW).unwrap();
        assert_eq!(b.states(NOW)[0].spent, 450);
        assert_eq!(b.remove(&Scope::parse("tenant:a").unwrap(), None, None), 1);
        assert!(b.is_empty());
    }

    #[test]
    fn all_or_nothing_and_worst_action() {
        let b = Budgets::new();
        b.set(spec("tenant:a", Metric::Usd, 1_000, Action::Warn), None, NOW).unwrap();
        b.set(spec("workflow:w", Metric::Tokens, 10, Action::Downgrade), None, NOW).unwrap();
        let ls = b.applicable(&Labels { tenant: "a", agent: "x", workflow: "w" });
        assert_eq!(ls.len(), 2);
        let e = b.try_reserve(&ls, 5, 11, NOW).err().unwrap();
        assert_eq!(e.action, Action::Downgrade);
        assert!(b.states(NOW).iter().all(|s| s.reserved == 0), "nothing held after a failure");
        let r = b.force_reserve(&ls, 5, 11, NOW);
        r.settle(5, 11, NOW);
        let st = b.states(NOW);
        assert_eq!(st.iter().map(|s| s.spent).collect::<Vec<_>>(), vec![5, 11]);
    }

    #[test]
    fn hammer_never_overspends() {
        for _ in 0..20 {
            let b = Arc::new(Budgets::new());
            // Almost spent: 1000 - 950 leaves room for 5 requests of 10.
            b.set(spec("tenant:a", Metric::Usd, 1_000, Action::Reject), Some(950), NOW).unwrap();
            let ok = Arc::new(AtomicU64::new(0));
            let hs: Vec<_> = (0..16)
                .map(|_| {
                    let (b, ok) = (b.clone(), ok.clone());
                    std::thread::spawn(move || {
                        let ls = b.applicable(&Labels { tenant: "a", agent: "", workflow: "" });
                        for _ in 0..50 {
                            if let Ok(r) = b.try_reserve(&ls, 10, 0, NOW) {
                                ok.fetch_add(1, Relaxed);
                                r.settle(10, 0, NOW);
                            }
                        }
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
            assert_eq!(ok.load(Relaxed), 5);
            let s = &b.states(NOW)[0];
            assert_eq!((s.spent, s.reserved), (1_000, 0));
        }
    }
}
