//! The service's logs read through a pipe (as a log collector, `2> file` or `| tee` reads them)
//! are plain text: no ANSI colour codes. Runs the built `gcleaner serve` against a fresh
//! database in the test PostgreSQL (GCLEANER_TEST_DATABASE_URL, default
//! postgres://postgres@127.0.0.1:5432/postgres).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn admin_url() -> String {
    std::env::var("GCLEANER_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates a database for this test and returns its URL and a dropper.
fn create_database() -> (String, impl FnOnce()) {
    let admin = admin_url();
    let name = format!("gcleaner_test_logs_{}", uuid::Uuid::new_v4().simple());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let pool = sqlx::PgPool::connect(&admin).await.expect("connect to the test PostgreSQL (is it running? `make postgres`)");
        sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&pool).await.unwrap();
        pool.close().await;
    });
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&format!("/{name}"));
    let drop_it = move || {
        runtime.block_on(async {
            if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&pool).await;
                pool.close().await;
            }
        });
    };
    (url.to_string(), drop_it)
}

#[test]
fn serve_logs_through_a_pipe_have_no_escape_codes() {
    let (database_url, drop_database) = create_database();
    let data_dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gcleaner"))
        .args(["serve", "--bind", "127.0.0.1:0", "--insecure-no-auth", "--workers", "1"])
        .arg("--database-url")
        .arg(&database_url)
        .arg("--data-dir")
        .arg(data_dir.path())
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env("GCLEANER_LOG_FORMAT", "text")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gcleaner serve");

    // Collect stderr on a thread until the server says it is serving (or exits).
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines_rx) = mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if lines_tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut captured = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut serving = false;
    while Instant::now() < deadline {
        match lines_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                serving |= String::from_utf8_lossy(&line).contains("gcleaner serving");
                captured.extend_from_slice(&line);
                if serving {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    captured.extend(lines_rx.try_iter().flatten());
    drop_database();

    let text = String::from_utf8_lossy(&captured);
    assert!(serving, "the server never logged that it was serving; its stderr:\n{text}");
    // The warning about disabled authentication is one of the lines a terminal shows in colour.
    assert!(text.contains("authentication is DISABLED"), "{text}");
    assert!(!captured.contains(&0x1b), "log lines read through a pipe carry ANSI escape codes: {text:?}");
}
