//! Metrics in the Prometheus model: the samples of an authenticator or a token client, and
//! their text exposition format (version 0.0.4) for the C door. The Python door turns the
//! same samples into `prometheus_client` metric families.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::error::AsError;

/// Upper bounds (seconds) of the AS request duration histogram.
pub(crate) const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The `kind` labels of `tokenward_as_errors_total`.
pub(crate) const ERROR_KINDS: [&str; 6] = [
    "unreachable",
    "timeout",
    "status",
    "garbage",
    "too_large",
    "rejected",
];

/// What the AS requests of one client cost and how they failed.
#[derive(Debug, Default)]
pub(crate) struct AsStats {
    errors: [AtomicU64; ERROR_KINDS.len()],
    buckets: [AtomicU64; DURATION_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl AsStats {
    /// Records one AS request: how long it took and its error, if any.
    pub(crate) fn observe<T>(&self, took: Duration, result: &Result<T, AsError>) {
        let secs = took.as_secs_f64();
        if let Some(i) = DURATION_BUCKETS.iter().position(|le| secs <= *le) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
        if let Some(kind) = result.as_ref().err().and_then(AsError::kind)
            && let Some(i) = ERROR_KINDS.iter().position(|k| *k == kind)
        {
            self.errors[i].fetch_add(1, Relaxed);
        }
    }

    /// Errors of one kind so far.
    #[cfg(test)]
    pub(crate) fn errors(&self, kind: &str) -> u64 {
        ERROR_KINDS
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |i| self.errors[i].load(Relaxed))
    }

    /// The samples: errors by kind and the duration histogram.
    pub(crate) fn samples(&self, out: &mut Vec<Sample>) {
        for (i, kind) in ERROR_KINDS.iter().enumerate() {
            out.push(Sample {
                family: "tokenward_as_errors_total",
                label: Some(("kind", kind)),
                value: Value::Counter(self.errors[i].load(Relaxed)),
            });
        }
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(DURATION_BUCKETS.len() + 1);
        for (i, le) in DURATION_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            buckets.push((*le, cumulative));
        }
        let count = self.count.load(Relaxed);
        buckets.push((f64::INFINITY, count.max(cumulative)));
        out.push(Sample {
            family: "tokenward_as_request_duration_seconds",
            label: None,
            value: Value::Histogram {
                buckets,
                sum: self.sum_nanos.load(Relaxed) as f64 / 1e9,
                count,
            },
        });
    }
}

/// A sample's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A monotonic count.
    Counter(u64),
    /// A level.
    Gauge(f64),
    /// Cumulative bucket counts by upper bound (the last is `+Inf`), sum and count.
    Histogram {
        /// `(le, count of observations ≤ le)`.
        buckets: Vec<(f64, u64)>,
        /// Sum of the observations.
        sum: f64,
        /// Number of observations.
        count: u64,
    },
}

/// One sample of a family, with at most one label of its own (the door adds `filter` and `pid`).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The family name, e.g. `tokenward_cache_hits_total`.
    pub family: &'static str,
    /// A label of this sample (`kind`), if any.
    pub label: Option<(&'static str, &'static str)>,
    /// The value.
    pub value: Value,
}

/// Every family tokenward exposes: name, type and help, in exposition order.
pub const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "tokenward_cache_hits_total",
        "counter",
        "Cached positive verdicts used.",
    ),
    (
        "tokenward_cache_negative_hits_total",
        "counter",
        "Cached negative verdicts used.",
    ),
    (
        "tokenward_cache_misses_total",
        "counter",
        "Lookups that found no cached verdict.",
    ),
    (
        "tokenward_introspections_total",
        "counter",
        "Requests sent to the AS's introspection endpoint (with validation = keystone: to Keystone, its service token included), failed ones included.",
    ),
    (
        "tokenward_as_errors_total",
        "counter",
        "AS requests that failed, by kind.",
    ),
    (
        "tokenward_breaker_rejections_total",
        "counter",
        "Misses answered 503 at once because the circuit breaker was open.",
    ),
    (
        "tokenward_shared_cache_errors_total",
        "counter",
        "Shared-tier (memcached/Redis) operations that failed.",
    ),
    (
        "tokenward_coalesced_waits_total",
        "counter",
        "Misses that waited for another thread's AS request.",
    ),
    (
        "tokenward_stale_served_total",
        "counter",
        "Active verdicts served past their cache lifetime while the AS could not answer.",
    ),
    (
        "tokenward_jwt_verifications_total",
        "counter",
        "JWT signatures verified locally.",
    ),
    (
        "tokenward_jwt_refusals_total",
        "counter",
        "JWTs refused locally.",
    ),
    (
        "tokenward_jwks_fetches_total",
        "counter",
        "AS key-set fetch attempts.",
    ),
    (
        "tokenward_jwks_fetch_errors_total",
        "counter",
        "AS key-set fetch attempts that failed.",
    ),
    (
        "tokenward_token_requests_total",
        "counter",
        "Client Credentials token requests sent.",
    ),
    (
        "tokenward_cache_entries",
        "gauge",
        "Verdicts held in the in-process cache.",
    ),
    (
        "tokenward_breaker_open",
        "gauge",
        "1 while the circuit breaker toward the AS is open or half-open.",
    ),
    (
        "tokenward_as_request_duration_seconds",
        "histogram",
        "Duration of AS requests.",
    ),
];

/// Label values are quoted with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v}")
    }
}

/// The text format of the samples of several sources, each with its `filter` label, all
/// labelled `pid`: one `# HELP`/`# TYPE` block per family, as the format requires.
pub fn render(sources: &[(&str, Vec<Sample>)], pid: u32) -> String {
    let mut out = String::new();
    for (family, kind, help) in FAMILIES {
        let mut lines = String::new();
        for (filter, samples) in sources {
            let base = format!("filter=\"{}\",pid=\"{pid}\"", escape(filter));
            for sample in samples.iter().filter(|s| s.family == *family) {
                let labels = match sample.label {
                    Some((name, value)) => format!("{base},{name}=\"{}\"", escape(value)),
                    None => base.clone(),
                };
                match &sample.value {
                    Value::Counter(n) => {
                        let _ = writeln!(lines, "{family}{{{labels}}} {n}");
                    }
                    Value::Gauge(v) => {
                        let _ = writeln!(lines, "{family}{{{labels}}} {}", number(*v));
                    }
                    Value::Histogram {
                        buckets,
                        sum,
                        count,
                    } => {
                        for (le, n) in buckets {
                            let _ = writeln!(
                                lines,
                                "{family}_bucket{{{labels},le=\"{}\"}} {n}",
                                number(*le)
                            );
                        }
                        let _ = writeln!(lines, "{family}_sum{{{labels}}} {}", number(*sum));
                        let _ = writeln!(lines, "{family}_count{{{labels}}} {count}");
                    }
                }
            }
        }
        if !lines.is_empty() {
            let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} {kind}");
            out.push_str(&lines);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_and_kinds() {
        let stats = AsStats::default();
        stats.observe::<()>(Duration::from_millis(3), &Ok(()));
        stats.observe::<()>(Duration::from_secs(20), &Err(AsError::TooLarge));
        stats.observe::<()>(
            Duration::from_millis(30),
            &Err(AsError::Timeout("t".into())),
        );
        let mut samples = Vec::new();
        stats.samples(&mut samples);
        assert_eq!(stats.errors("too_large"), 1);
        let Some(Value::Histogram { buckets, count, .. }) = samples
            .iter()
            .find(|s| s.label.is_none())
            .map(|s| s.value.clone())
        else {
            panic!("no histogram")
        };
        assert_eq!(count, 3);
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 3)));
        assert_eq!(
            buckets[DURATION_BUCKETS.len() - 1].1,
            2,
            "20 s is only in +Inf"
        );
        let text = render(&[("a\"b", samples)], 7);
        assert!(text.contains(
            "tokenward_as_errors_total{filter=\"a\\\"b\",pid=\"7\",kind=\"too_large\"} 1"
        ));
        assert!(text.contains("le=\"+Inf\"} 3"));
        assert_eq!(
            text.matches("# TYPE tokenward_as_errors_total counter")
                .count(),
            1
        );
    }
}
