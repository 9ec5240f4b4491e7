//! Completion callbacks: when a job ends, a signed POST of the job to its `callback_url`, retried
//! with backoff. Deliveries are rows claimed with `SKIP LOCKED`, so any process may send them and
//! a crash loses none. Only hosts on the allow-list are ever contacted, and redirects are not
//! followed (a redirect could leave the list).

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::PgPool;
use uuid::Uuid;

use crate::config::QueueConfig;

pub const SIGNATURE_HEADER: &str = "gcleaner-signature";

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Checks that `url` is http(s) and its host is on the allow-list.
pub fn check_allowed(url: &str, allowed_hosts: &[String]) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("callback_url is not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("callback_url must use http or https".into());
    }
    let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
    if !allowed_hosts.iter().any(|h| h.trim().eq_ignore_ascii_case(&host)) {
        return Err(format!("callback host {host:?} is not on this server's callback allow-list"));
    }
    Ok(parsed)
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: binding the timestamp lets
/// receivers reject replays.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(sqlx::FromRow)]
struct Due {
    job_id: Uuid,
    url: String,
    attempts: i32,
}

/// Sends every due callback once. Returns how many were delivered.
pub async fn deliver_due(pool: &PgPool, http: &reqwest::Client, config: &QueueConfig) -> anyhow::Result<usize> {
    // Claiming pushes next_attempt_at out, so a crashed sender's delivery is retried later.
    let due: Vec<Due> = sqlx::query_as(
        "WITH due AS (
             SELECT job_id FROM callbacks
             WHERE state = 'pending' AND next_attempt_at <= now()
             ORDER BY next_attempt_at LIMIT 20
             FOR UPDATE SKIP LOCKED
         )
         UPDATE callbacks c SET attempts = c.attempts + 1, next_attempt_at = now() + interval '2 minutes'
         FROM due WHERE c.job_id = due.job_id
         RETURNING c.job_id, c.url, c.attempts",
    )
    .fetch_all(pool)
    .await?;
    let mut delivered = 0;
    for d in due {
        let result = send(pool, http, config, &d).await;
        match result {
            Ok(()) => {
                delivered += 1;
                sqlx::query(
                    "UPDATE callbacks SET state = 'delivered', delivered_at = now(), last_error = NULL WHERE job_id = $1",
                )
                .bind(d.job_id)
                .execute(pool)
                .await?;
            }
            Err(err) => {
                let give_up = d.attempts >= config.callback_max_attempts;
                tracing::warn!(job_id = %d.job_id, attempt = d.attempts, give_up, error = %err, "callback delivery failed");
                let delay = (config.retry_base_secs * 2f64.powi(d.attempts - 1)).min(3600.0);
                sqlx::query(
                    "UPDATE callbacks SET last_error = $2,
                         state = CASE WHEN $3 THEN 'failed' ELSE 'pending' END,
                         next_attempt_at = now() + make_interval(secs => $4)
                     WHERE job_id = $1",
                )
                .bind(d.job_id)
                .bind(err.to_string())
                .bind(give_up)
                .bind(delay)
                .execute(pool)
                .await?;
            }
        }
    }
    Ok(delivered)
}

async fn send(pool: &PgPool, http: &reqwest::Client, config: &QueueConfig, due: &Due) -> anyhow::Result<()> {
    let url = check_allowed(&due.url, &config.callback_allowed_hosts).map_err(anyhow::Error::msg)?;
    let Some(job) = crate::db::jobs::get(pool, due.job_id).await? else {
        return Ok(());
    };
    let body = serde_json::to_vec(&crate::http::job_view::JobView::from_row(&job))?;
    let mut request = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("gcleaner-job-id", due.job_id.to_string());
    if let Some(secret) = &config.callback_secret {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        request = request.header(SIGNATURE_HEADER, sign(secret, now, &body));
    }
    let response = request.body(body).send().await?;
    if response.status().is_success() {
        Ok(())
    } else {
        anyhow::bail!("receiver answered {}", response.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_is_exact_and_scheme_checked() {
        let hosts = vec!["hooks.example.com".to_string()];
        assert!(check_allowed("https://hooks.example.com/x", &hosts).is_ok());
        assert!(check_allowed("https://hooks.example.com.evil.net/x", &hosts).is_err());
        assert!(check_allowed("https://evil.net/?hooks.example.com", &hosts).is_err());
        assert!(check_allowed("file:///etc/passwd", &hosts).is_err());
        assert!(check_allowed("not a url", &hosts).is_err());
    }

    #[test]
    fn signature_covers_timestamp_and_body() {
        let a = sign("s", 1, b"{}");
        assert_ne!(a, sign("s", 2, b"{}"));
        assert_ne!(a, sign("s", 1, b"{ }"));
        assert_ne!(a, sign("t", 1, b"{}"));
        assert!(a.starts_with("t=1,v1="));
    }
}
