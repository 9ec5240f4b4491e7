//! Prometheus metrics in the text exposition format, written by hand (a handful of series does
//! not justify a metrics stack). HTTP latency is measured in this process; job counts, queue
//! depth and job durations are read from the database at scrape time, so they are the same
//! whichever process is scraped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::PgPool;

/// Upper bounds (seconds) of the HTTP latency buckets.
pub const HTTP_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Upper bounds (seconds) of the job duration buckets.
pub const JOB_BUCKETS: [f64; 10] = [1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];

#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; HTTP_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct HttpMetrics {
    requests: Mutex<BTreeMap<(String, String, u16), Histogram>>,
}

impl HttpMetrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let h = requests.entry((method.to_string(), route.to_string(), status)).or_default();
        for (i, bound) in HTTP_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    fn write(&self, out: &mut String) {
        let name = "gcleaner_http_request_duration_seconds";
        let _ = writeln!(out, "# HELP {name} HTTP request latency by method, route and status.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for ((method, route, status), h) in requests {
            let labels = format!("method=\"{method}\",route=\"{}\",status=\"{status}\"", escape(&route));
            for (bound, count) in HTTP_BUCKETS.iter().zip(h.buckets) {
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
        }
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The whole exposition.
pub async fn render(pool: &PgPool, http: &HttpMetrics) -> Result<String, sqlx::Error> {
    let mut out = String::new();
    let counts = crate::db::jobs::count_by_state(pool).await?;
    let _ = writeln!(out, "# HELP gcleaner_jobs Jobs by state.");
    let _ = writeln!(out, "# TYPE gcleaner_jobs gauge");
    for state in crate::db::jobs::ALL_STATES {
        let n = counts.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "gcleaner_jobs{{state=\"{state}\"}} {n}");
    }
    let depth = crate::db::jobs::queue_depth(pool).await?;
    let _ = writeln!(out, "# HELP gcleaner_queue_depth Queued jobs that are due to run.");
    let _ = writeln!(out, "# TYPE gcleaner_queue_depth gauge");
    let _ = writeln!(out, "gcleaner_queue_depth {depth}");

    let (cumulative, count, sum) = crate::db::jobs::duration_histogram(pool, &JOB_BUCKETS).await?;
    let name = "gcleaner_job_duration_seconds";
    let _ = writeln!(out, "# HELP {name} Time from a job's first start to its end.");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (bound, n) in JOB_BUCKETS.iter().zip(cumulative) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {count}");

    http.write(&mut out);
    Ok(out)
}
