//! report.html in a real browser: headless Chromium (`make setup` installs it) opens a report
//! that the built binary wrote for a small generated backdoored model, and its DOM has every
//! trigger node, trigger edge and embedding point as a drawn shape (a direct child of its SVG,
//! not swallowed by a sibling the markup left open).
//!
//! Set GCLEANER_REPORT_SCREENSHOT=/path/report.png to also keep a screenshot of the page.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use scraper::{ElementRef, Html, Selector};
use serde_json::Value;

fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GCLEANER_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

fn gcleaner(args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_gcleaner")).args(args).stdin(Stdio::null()).output().expect("run gcleaner");
    assert!(
        output.status.success(),
        "gcleaner {}: {}\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs chromium headless with `args` and a private profile, killed after two minutes.
fn run_chromium(chromium: &Path, profile: &Path, args: &[String]) -> Output {
    let mut child = Command::new(chromium)
        .args(["--headless", "--disable-gpu", "--no-sandbox", "--no-first-run"])
        .args(["--disable-dev-shm-usage", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .env("HOME", profile)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    // Read stdout on a thread so a large DOM cannot block the browser on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut bytes).map(|_| bytes)
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish in two minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = reader.join().unwrap().unwrap();
    let mut stderr = Vec::new();
    std::io::Read::read_to_end(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    Output { status, stdout, stderr }
}

fn direct_children(svg: &ElementRef<'_>, name: &str) -> usize {
    svg.children().filter_map(ElementRef::wrap).filter(|e| e.value().name() == name).count()
}

#[test]
fn report_html_draws_every_shape_in_chromium() {
    let Some(chromium) = chromium() else {
        eprintln!("skipped: chromium is not installed (`make setup` installs it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).display().to_string();
    gcleaner(&["synth", "--graphs", "240", "--seed", "1", "--out", &at("synthetic.json")]);
    gcleaner(&[
        "attack",
        "--data",
        &at("synthetic.json"),
        "--attack",
        "subgraph",
        "--arch",
        "gin",
        "--hidden",
        "16",
        "--epochs",
        "5",
        "--target-label",
        "0",
        "--trigger-ratio",
        "0.25",
        "--injection-ratio",
        "0.15",
        "--defender-fraction",
        "0.1",
        "--device",
        "cpu",
        "--out",
        &at("attack"),
    ]);
    gcleaner(&[
        "purify",
        "--model",
        &at("attack/model.safetensors"),
        "--data",
        &at("attack/defender_clean.json"),
        "--attack",
        &at("attack"),
        "--trigger-nodes",
        "4",
        "--recovery-epochs",
        "3",
        "--restarts",
        "1",
        "--positions",
        "2",
        "--no-census",
        "--unlearn-epochs",
        "2",
        "--set",
        "unlearn.max_epochs=2",
        "--force",
        "--device",
        "cpu",
        "--out",
        &at("purified"),
    ]);
    let report: Value = serde_json::from_slice(&std::fs::read(at("purified/report.json")).unwrap()).unwrap();
    let trigger_nodes = report["trigger"]["size"].as_u64().unwrap() as usize;
    let trigger_edges = report["trigger"]["edges"].as_array().unwrap().len();
    let points: Vec<usize> =
        ["before", "after"].iter().map(|when| report["projection"][when].as_array().unwrap().len()).collect();
    assert_eq!(trigger_nodes, 4);
    assert!(points.iter().all(|&n| n > 1), "{points:?}");

    let page = format!("file://{}", at("purified/report.html"));
    let profile = dir.path().join("chromium-profile");
    let dump = run_chromium(&chromium, &profile, &["--dump-dom".into(), page.clone()]);
    assert!(
        dump.status.success() && !dump.stdout.is_empty(),
        "chromium --dump-dom: {}\n{}",
        dump.status,
        String::from_utf8_lossy(&dump.stderr)
    );
    // The browser's DOM, serialised with explicit end tags: parsing it again keeps its tree.
    let dom = Html::parse_document(&String::from_utf8_lossy(&dump.stdout));
    let select = |css: &str| dom.select(&Selector::parse(css).unwrap()).collect::<Vec<_>>();

    let triggers = select("svg.trigger");
    assert_eq!(triggers.len(), 1, "one trigger drawing");
    let trigger = &triggers[0];
    assert_eq!(direct_children(trigger, "circle"), trigger_nodes, "one circle per trigger node");
    assert_eq!(direct_children(trigger, "line"), trigger_edges, "one line per trigger edge");
    assert_eq!(direct_children(trigger, "text"), trigger_nodes, "one label per trigger node");
    let plots = select("svg.embedding");
    assert_eq!(
        plots.iter().map(|svg| direct_children(svg, "circle")).collect::<Vec<_>>(),
        points,
        "one point per projected graph in each embedding plot"
    );
    let nested = select("svg circle *, svg line *, svg polyline *");
    assert!(nested.is_empty(), "shapes inside shapes are not drawn: {}", nested[0].html());
    assert_eq!(select("svg.chart > polyline").len(), 3, "the three unlearning charts");

    // A screenshot of the page renders (and is kept where asked).
    let screenshot = dir.path().join("report.png");
    let shot = run_chromium(
        &chromium,
        &profile,
        &[format!("--screenshot={}", screenshot.display()), "--window-size=1200,2000".into(), page],
    );
    let png = std::fs::read(&screenshot).unwrap_or_default();
    assert!(
        shot.status.success() && png.starts_with(b"\x89PNG"),
        "chromium --screenshot: {}\n{}",
        shot.status,
        String::from_utf8_lossy(&shot.stderr)
    );
    if let Some(keep) = std::env::var_os("GCLEANER_REPORT_SCREENSHOT") {
        std::fs::write(keep, &png).unwrap();
    }
}
