//! The Prometheus text exposition (format 0.0.4) of one scrape: what the
//! master's metrics listener answers to `GET /metrics`. Built from a
//! [`Snapshot`] (the live workers' shared counters added to the retired
//! ones, and what the master knows itself); the metric list is in the
//! README's Monitoring section.

use std::fmt::Write;

use super::counters::{Totals, BUCKETS_US};

/// Worker states, as `ferrocorn_workers{state=...}` names them.
pub const STATES: [&str; 5] = ["booting", "idle", "busy", "retiring", "timed_out"];

/// Why workers were replaced, as `ferrocorn_worker_restarts_total{reason=...}`
/// names them ([`super::RestartReason`] in this order).
pub const REASONS: [&str; 5] = ["timeout", "max_requests", "memory", "crash", "reload"];

/// Everything one scrape shows.
pub struct Snapshot<'a> {
    /// Counters of every worker, past and present.
    pub totals: &'a Totals,
    pub in_flight: u64,
    /// Workers by state, indexed like [`STATES`].
    pub workers: [u64; STATES.len()],
    /// Indexed like [`REASONS`].
    pub restarts: [u64; REASONS.len()],
    /// Each listener's name, and its accept queue's length and limit when
    /// the kernel says.
    pub listeners: Vec<(String, Option<(u64, u64)>)>,
    /// `(pid, resident bytes)` of each live worker.
    pub rss: Vec<(i32, u64)>,
}

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn seconds(us: u64) -> String {
    format!("{}", us as f64 / 1e6)
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, help: &str, (buckets, sum_us): (&[u64], u64)) {
    head(out, name, "histogram", help);
    let mut cumulative = 0;
    for (i, n) in buckets.iter().enumerate() {
        cumulative += n;
        let le = match BUCKETS_US.get(i) {
            Some(us) => seconds(*us),
            None => "+Inf".to_string(),
        };
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_sum {}", seconds(sum_us));
    let _ = writeln!(out, "{name}_count {cumulative}");
}

/// The exposition text.
pub fn render(s: &Snapshot<'_>) -> String {
    let mut out = String::with_capacity(4096);
    head(
        &mut out,
        "ferrocorn_build_info",
        "gauge",
        "The running ferrocorn's version (the value is always 1).",
    );
    let _ = writeln!(
        out,
        "ferrocorn_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    head(
        &mut out,
        "ferrocorn_requests_total",
        "counter",
        "Requests answered, by HTTP status code, by every worker since the master started.",
    );
    for (code, n) in s.totals.statuses() {
        let _ = writeln!(out, "ferrocorn_requests_total{{status=\"{code}\"}} {n}");
    }
    histogram(
        &mut out,
        "ferrocorn_request_duration_seconds",
        "Time from a request reaching the app until its response was complete.",
        s.totals.duration(),
    );
    histogram(
        &mut out,
        "ferrocorn_request_queue_seconds",
        "Time a request waited before the app was called: from accept (on a keep-alive connection, from its first byte) to the call.",
        s.totals.queue(),
    );
    head(
        &mut out,
        "ferrocorn_requests_in_flight",
        "gauge",
        "Requests handed to the app and not finished yet.",
    );
    let _ = writeln!(out, "ferrocorn_requests_in_flight {}", s.in_flight);
    head(
        &mut out,
        "ferrocorn_workers",
        "gauge",
        "Worker processes by state.",
    );
    for (state, n) in STATES.iter().zip(s.workers) {
        let _ = writeln!(out, "ferrocorn_workers{{state=\"{state}\"}} {n}");
    }
    head(
        &mut out,
        "ferrocorn_worker_restarts_total",
        "counter",
        "Workers that exited and were replaced, by reason.",
    );
    for (reason, n) in REASONS.iter().zip(s.restarts) {
        let _ = writeln!(
            out,
            "ferrocorn_worker_restarts_total{{reason=\"{reason}\"}} {n}"
        );
    }
    head(
        &mut out,
        "ferrocorn_listen_backlog",
        "gauge",
        "Connections waiting in a listening socket's accept queue.",
    );
    for (name, q) in &s.listeners {
        if let Some((n, _)) = q {
            let _ = writeln!(
                out,
                "ferrocorn_listen_backlog{{listener=\"{}\"}} {n}",
                label(name)
            );
        }
    }
    head(
        &mut out,
        "ferrocorn_listen_backlog_limit",
        "gauge",
        "The longest a listening socket's accept queue may grow (--backlog, as the kernel applies it).",
    );
    for (name, q) in &s.listeners {
        if let Some((_, limit)) = q {
            let _ = writeln!(
                out,
                "ferrocorn_listen_backlog_limit{{listener=\"{}\"}} {limit}",
                label(name)
            );
        }
    }
    head(
        &mut out,
        "ferrocorn_worker_rss_bytes",
        "gauge",
        "Resident memory of each live worker.",
    );
    for (pid, bytes) in &s.rss {
        let _ = writeln!(out, "ferrocorn_worker_rss_bytes{{pid=\"{pid}\"}} {bytes}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::counters::Counters;
    use super::*;
    use std::time::Duration;

    #[test]
    fn exposition_of_a_known_snapshot() {
        let c = Counters::map(1).unwrap();
        let slot = c.slot(0).unwrap();
        slot.record(200, Duration::from_millis(2), Duration::from_micros(100));
        slot.record(200, Duration::from_millis(20), Duration::ZERO);
        slot.record(503, Duration::from_secs(90), Duration::ZERO);
        let mut totals = Totals::default();
        totals.add_slot(&slot);
        let text = render(&Snapshot {
            totals: &totals,
            in_flight: 1,
            workers: [0, 1, 1, 0, 0],
            restarts: [0, 2, 0, 1, 0],
            listeners: vec![
                ("http://127.0.0.1:8000".into(), Some((3, 2048))),
                ("unix:/x\"y".into(), None),
            ],
            rss: vec![(42, 1 << 20)],
        });
        for line in [
            &format!(
                "ferrocorn_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )[..],
            "# TYPE ferrocorn_requests_total counter",
            "ferrocorn_requests_total{status=\"200\"} 2",
            "ferrocorn_requests_total{status=\"503\"} 1",
            "# TYPE ferrocorn_request_duration_seconds histogram",
            "ferrocorn_request_duration_seconds_bucket{le=\"0.0005\"} 0",
            "ferrocorn_request_duration_seconds_bucket{le=\"0.0025\"} 1",
            "ferrocorn_request_duration_seconds_bucket{le=\"0.025\"} 2",
            "ferrocorn_request_duration_seconds_bucket{le=\"60\"} 2",
            "ferrocorn_request_duration_seconds_bucket{le=\"+Inf\"} 3",
            "ferrocorn_request_duration_seconds_sum 90.022",
            "ferrocorn_request_duration_seconds_count 3",
            "ferrocorn_request_queue_seconds_bucket{le=\"0.0005\"} 3",
            "ferrocorn_request_queue_seconds_sum 0.0001",
            "ferrocorn_requests_in_flight 1",
            "ferrocorn_workers{state=\"idle\"} 1",
            "ferrocorn_workers{state=\"timed_out\"} 0",
            "ferrocorn_worker_restarts_total{reason=\"max_requests\"} 2",
            "ferrocorn_worker_restarts_total{reason=\"crash\"} 1",
            "ferrocorn_listen_backlog{listener=\"http://127.0.0.1:8000\"} 3",
            "ferrocorn_listen_backlog_limit{listener=\"http://127.0.0.1:8000\"} 2048",
            "ferrocorn_worker_rss_bytes{pid=\"42\"} 1048576",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        assert!(!text.contains("unix:"), "{text}");
        assert!(text.ends_with('\n'));
        assert_eq!(label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }
}
