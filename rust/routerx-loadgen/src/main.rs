//! `routerx-loadgen`: a bounded gRPC load generator for `routerx serve`.
//!
//! It calls `routerx.v1.Router/Route` or the standard `grpc.health.v1.Health/Check` on a
//! loopback target, either closed loop (`--closed N`: N calls in flight, each loop sends its
//! next call when the previous one answers) or open loop (`--rate R`: calls sent on a fixed
//! schedule whatever the answers). It runs `--warmup` then `--duration` seconds, stops by
//! itself, and prints one JSON object: throughput, latency percentiles (µs, OK calls only),
//! errors by status, and for Route the cache outcomes seen.
//!
//! Open-loop latency is measured from each call's *scheduled* send time, not from when it was
//! actually sent, so a stalled server (or client) shows up in the percentiles instead of
//! silently thinning the load (coordinated omission). `send_lag_p99_us` says how late the
//! client itself sent: when it is not small against the latencies, the client is the limit.
//!
//! Compiled Rust so that the client is not the bottleneck: a Python grpcio client tops out
//! near 2,700 unary calls/s, below what the server can answer.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::json;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

pub mod pb {
    pub mod routerx {
        tonic::include_proto!("routerx.v1");
    }
    pub mod health {
        tonic::include_proto!("grpc.health.v1");
    }
}

use pb::health::health_client::HealthClient;
use pb::health::HealthCheckRequest;
use pb::routerx::router_client::RouterClient;
use pb::routerx::{CacheControl, RouteRequest};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Call {
    /// routerx.v1.Router/Route
    Route,
    /// grpc.health.v1.Health/Check (the server's own baseline: no routerx work)
    Health,
}

#[derive(Parser, Debug)]
#[command(name = "routerx-loadgen", about = "Bounded load against a routerx server on this machine; prints JSON.")]
struct Args {
    /// host:port of the server; must be a loopback address (127.0.0.0/8, ::1 or localhost).
    #[arg(long, default_value = "127.0.0.1:50051")]
    target: String,
    #[arg(long, value_enum, default_value = "route")]
    call: Call,
    /// Closed loop: this many calls in flight at all times.
    #[arg(long, conflicts_with = "rate", required_unless_present = "rate")]
    closed: Option<usize>,
    /// Open loop: calls per second, sent on a fixed schedule.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// HTTP/2 connections, calls spread round-robin (several servers sharing a port with
    /// SO_REUSEPORT each get some of them).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Client runtime threads. Few: on a small machine the client shares the cores with the server.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Route: the prompt.
    #[arg(long, default_value = "Translate into French: the invoice is overdue.")]
    prompt: String,
    /// Route: the tenant (cache namespace).
    #[arg(long)]
    tenant: Option<String>,
    /// Route: do not answer from the cache (every call is routed).
    #[arg(long)]
    no_cache: bool,
    /// Sent as `authorization: Bearer <KEY>`.
    #[arg(long, env = "ROUTERX_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Per-call deadline.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// Open loop: calls allowed in flight before further scheduled calls are dropped (counted
    /// as errors, status CLIENT_OVERLOAD), so a dead server cannot make the client grow without bound.
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
}

/// Refuses anything but this machine: the tool must never load someone else's server.
fn loopback(target: &str) -> Result<SocketAddr, String> {
    let (host, port) = target.rsplit_once(':').ok_or_else(|| format!("--target {target:?}: expected host:port"))?;
    let port: u16 = port.parse().map_err(|e| format!("--target {target:?}: bad port: {e}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = if let Ok(ip) = host.parse::<IpAddr>() {
        vec![SocketAddr::new(ip, port)]
    } else if host.eq_ignore_ascii_case("localhost") {
        target.to_socket_addrs().map_err(|e| format!("--target {target:?}: {e}"))?.collect()
    } else {
        return Err(format!("--target {target:?}: only loopback addresses (127.0.0.0/8, ::1, localhost) are allowed"));
    };
    addrs
        .into_iter()
        .find(|a| a.ip().is_loopback())
        .ok_or_else(|| format!("--target {target:?}: only loopback addresses (127.0.0.0/8, ::1, localhost) are allowed"))
}

/// One call's outcome: latency (µs) if OK, the status name otherwise, and Route's cache outcome.
type Outcome = (Result<u64, &'static str>, Option<i32>);

#[derive(Clone)]
struct Caller {
    call: Call,
    router: RouterClient<Channel>,
    health: HealthClient<Channel>,
    request: RouteRequest,
    auth: Option<MetadataValue<tonic::metadata::Ascii>>,
    timeout: Duration,
}

impl Caller {
    fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(self.timeout);
        if let Some(a) = &self.auth {
            r.metadata_mut().insert("authorization", a.clone());
        }
        r
    }

    /// Calls once; latency is measured from `since` (the scheduled time in open loop).
    async fn once(&mut self, since: Instant) -> Outcome {
        let (res, cache) = match self.call {
            Call::Route => {
                let r = self.req(self.request.clone());
                match self.router.route(r).await {
                    Ok(d) => (Ok(()), Some(d.get_ref().cache)),
                    Err(s) => (Err(s), None),
                }
            }
            Call::Health => {
                let r = self.req(HealthCheckRequest { service: String::new() });
                (self.health.check(r).await.map(|_| ()), None)
            }
        };
        let us = since.elapsed().as_micros() as u64;
        (res.map(|_| us).map_err(|s| code_name(s.code())), cache)
    }
}

fn code_name(c: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match c {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// What one task (closed loop) or the whole run (open loop) measured.
struct Tally {
    hist: Histogram<u64>,
    by_status: BTreeMap<&'static str, u64>,
    by_cache: BTreeMap<&'static str, u64>,
}

impl Tally {
    fn new() -> Tally {
        // 1 µs .. 60 s at 3 significant digits.
        Tally {
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            by_status: BTreeMap::new(),
            by_cache: BTreeMap::new(),
        }
    }

    fn add(&mut self, (res, cache): Outcome) {
        match res {
            Ok(us) => {
                self.hist.saturating_record(us.max(1));
                *self.by_status.entry("OK").or_default() += 1;
            }
            Err(code) => *self.by_status.entry(code).or_default() += 1,
        }
        if let Some(c) = cache {
            let name = match c {
                1 => "exact",
                2 => "miss",
                3 => "bypass",
                _ => "unspecified",
            };
            *self.by_cache.entry(name).or_default() += 1;
        }
    }

    fn merge(&mut self, o: Tally) {
        self.hist.add(&o.hist).expect("same bounds");
        for (k, v) in o.by_status {
            *self.by_status.entry(k).or_default() += v;
        }
        for (k, v) in o.by_cache {
            *self.by_cache.entry(k).or_default() += v;
        }
    }
}

async fn connect(addr: SocketAddr, n: usize) -> Result<Vec<Channel>, String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        // One Endpoint::connect is one TCP connection (one HTTP/2 session).
        let ch = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        out.push(ch);
    }
    Ok(out)
}

async fn closed_loop(callers: Vec<Caller>, n: usize, measure_from: Instant, end: Instant) -> Tally {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let mut c = callers[i % callers.len()].clone();
            tokio::spawn(async move {
                let mut t = Tally::new();
                loop {
                    let start = Instant::now();
                    if start >= end {
                        break;
                    }
                    let o = c.once(start).await;
                    // Counted when it started inside the window: the window's load, not the warm-up's.
                    if start >= measure_from {
                        t.add(o);
                    }
                }
                t
            })
        })
        .collect();
    let mut total = Tally::new();
    for t in tasks {
        total.merge(t.await.expect("load task panicked"));
    }
    total
}

/// Sends on a fixed schedule from a dedicated OS thread: tokio's timer has 1 ms granularity,
/// which would bunch a 1,000/s schedule into bursts and add up to 1 ms to every latency.
fn open_loop(
    rt: &tokio::runtime::Runtime,
    callers: Vec<Caller>,
    rate: f64,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    max_in_flight: usize,
) -> (Tally, Histogram<u64>) {
    let tally = Arc::new(Mutex::new(Tally::new()));
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut lag = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut handles = Vec::new();
    let mut i: u64 = 0;
    loop {
        let due = start + interval.mul_f64(i as f64);
        if due >= end {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let measured = due >= measure_from;
        if measured {
            lag.saturating_record(due.elapsed().as_micros().max(1) as u64);
        }
        if in_flight.load(std::sync::atomic::Ordering::Relaxed) >= max_in_flight {
            if measured {
                tally.lock().unwrap().add((Err("CLIENT_OVERLOAD"), None));
            }
        } else {
            in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut c = callers[i as usize % callers.len()].clone();
            let (tally, in_flight) = (tally.clone(), in_flight.clone());
            handles.push(rt.spawn(async move {
                let o = c.once(due).await;
                in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                if measured {
                    tally.lock().unwrap().add(o);
                }
            }));
        }
        i += 1;
    }
    rt.block_on(async {
        for h in handles {
            let _ = h.await;
        }
    });
    let t = Arc::try_unwrap(tally).ok().expect("all calls finished").into_inner().unwrap();
    (t, lag)
}

fn main() -> ExitCode {
    let a = Args::parse();
    let addr = match loopback(&a.target) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("routerx-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let bad = |m: &str| {
        eprintln!("routerx-loadgen: {m}");
        ExitCode::from(2)
    };
    if !(a.duration > 0.0 && a.duration <= 3600.0 && (0.0..=600.0).contains(&a.warmup)) {
        return bad("--duration must be in (0, 3600] and --warmup in [0, 600]");
    }
    if a.closed == Some(0) || a.closed.is_some_and(|n| n > 100_000) {
        return bad("--closed must be in [1, 100000]");
    }
    if a.rate.is_some_and(|r| !(r > 0.0 && r <= 1e6)) {
        return bad("--rate must be in (0, 1e6]");
    }
    if a.connections == 0 || a.connections > 1024 || a.threads == 0 {
        return bad("--connections must be in [1, 1024] and --threads ≥ 1");
    }
    let auth = match a.api_key.as_deref().map(|k| format!("Bearer {k}").parse()) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => return bad("--api-key must be printable ASCII"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(a.threads).enable_all().build().expect("tokio runtime");
    let channels = match rt.block_on(connect(addr, a.connections)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("routerx-loadgen: {e}");
            return ExitCode::from(1);
        }
    };
    let request = RouteRequest {
        prompt: a.prompt.clone(),
        tenant: a.tenant.clone(),
        cache: Some(CacheControl { no_cache: a.no_cache, ..Default::default() }),
        ..Default::default()
    };
    let callers: Vec<Caller> = channels
        .into_iter()
        .map(|ch| Caller {
            call: a.call,
            router: RouterClient::new(ch.clone()).max_decoding_message_size(16 << 20),
            health: HealthClient::new(ch),
            request: request.clone(),
            auth: auth.clone(),
            timeout: Duration::from_millis(a.timeout_ms),
        })
        .collect();

    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(a.warmup);
    let end = measure_from + Duration::from_secs_f64(a.duration);
    let (tally, lag) = match (a.closed, a.rate) {
        (Some(n), _) => (rt.block_on(closed_loop(callers, n, measure_from, end)), None),
        (None, Some(r)) => {
            let (t, l) = open_loop(&rt, callers, r, start, measure_from, end, a.max_in_flight);
            (t, Some(l))
        }
        (None, None) => unreachable!("clap requires one of --closed and --rate"),
    };
    // Calls still unanswered at the end were bounded by --timeout-ms; nothing is left running.
    rt.shutdown_timeout(Duration::from_secs(1));

    let h = &tally.hist;
    let ok = h.len();
    let errors: u64 = tally.by_status.iter().filter(|(k, _)| **k != "OK").map(|(_, v)| v).sum();
    let pct = |q: f64| if ok == 0 { 0 } else { h.value_at_quantile(q) };
    let mut out = json!({
        "call": match a.call { Call::Route => "route", Call::Health => "health" },
        "mode": if a.closed.is_some() { "closed" } else { "open" },
        "target": addr.to_string(),
        "connections": a.connections,
        "client_threads": a.threads,
        "duration_s": a.duration,
        "warmup_s": a.warmup,
        "ok": ok,
        "rps": ok as f64 / a.duration,
        "p50_us": pct(0.50),
        "p90_us": pct(0.90),
        "p99_us": pct(0.99),
        "p999_us": pct(0.999),
        "max_us": if ok == 0 { 0 } else { h.max() },
        "mean_us": if ok == 0 { 0.0 } else { h.mean() },
        "errors": errors,
        "by_status": tally.by_status,
    });
    let o = out.as_object_mut().expect("object");
    match (a.closed, a.rate) {
        (Some(n), _) => {
            o.insert("concurrency".into(), json!(n));
        }
        (_, Some(r)) => {
            o.insert("rate".into(), json!(r));
        }
        _ => {}
    }
    if a.call == Call::Route {
        o.insert("by_cache".into(), json!(tally.by_cache));
    }
    if let Some(l) = lag {
        o.insert("send_lag_p99_us".into(), json!(if l.is_empty() { 0 } else { l.value_at_quantile(0.99) }));
    }
    println!("{out}");
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert!(loopback("127.0.0.1:50051").is_ok());
        assert!(loopback("127.1.2.3:1").is_ok());
        assert!(loopback("[::1]:50051").is_ok());
        assert!(loopback("localhost:50051").is_ok());
        for bad in ["10.0.0.1:50051", "192.168.1.2:80", "8.8.8.8:53", "example.com:443", "[2001:db8::1]:1", "0.0.0.0:50051", "nohostport"] {
            assert!(loopback(bad).is_err(), "{bad}");
        }
    }
}
