//! Reports in a real browser: `faultline report` on a stored run (a real 20 s run of
//! `register-partition`, committed under `tests/data/`) and on a generated 100,000-op history,
//! then `faultline serve` on a free loopback port, and Debian's headless `chromium` loading the
//! index and both reports. Chromium comes from `scripts/setup chromium` (which `scripts/test`
//! calls); the test installs nothing itself and skips, saying why, only when it is missing.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use rand::{Rng, SeedableRng};

/// A valid 20 s run with one partition.
const FIXTURE: &str = "register-partition/20261122T024631Z";
/// An invalid run of the same workload with the planted `stale-read` bug (label `stale-read`).
const INVALID: &str = "register-partition/20261122T031555Z";

fn chromium() -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join("chromium"))
        .find(|p| p.is_file())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A seeded 100,000-op register history over 8 processes with one partition.
fn big_history(path: &Path, seed: u64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut events: Vec<(u64, String)> = Vec::new();
    for p in 0..8u64 {
        let mut t = rng.random_range(0..1_000_000u64);
        for _ in 0..12_500 {
            let f = ["read", "write", "cas"][rng.random_range(0..3)];
            let lat = rng.random_range(300_000..3_000_000u64);
            let kind = [
                "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "fail", "info",
            ][rng.random_range(0..10)];
            events.push((t, format!(r#""process":{p},"type":"invoke","f":"{f}","key":"k{p}","value":null,"node":"n1""#)));
            events.push((t + lat, format!(r#""process":{p},"type":"{kind}","f":"{f}","key":"k{p}","value":null,"node":"n1""#)));
            t += lat + rng.random_range(0..1_000_000u64);
        }
    }
    let end = events.iter().map(|e| e.0).max().unwrap();
    events.push((end / 3, r#""process":"nemesis","type":"info","f":"start-partition","value":{"kind":"halves","outcome":"installed"}"#.into()));
    events.push((
        end / 2,
        r#""process":"nemesis","type":"info","f":"stop-partition","value":{"heal":true}"#.into(),
    ));
    events.sort_by_key(|e| e.0);
    let mut out = String::new();
    for (i, (t, rest)) in events.iter().enumerate() {
        out.push_str(&format!("{{\"index\":{i},\"time\":{t},{rest}}}\n"));
    }
    std::fs::create_dir_all(path).unwrap();
    std::fs::write(path.join("history.jsonl"), out).unwrap();
}

fn faultline(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .output()
        .expect("run faultline")
}

/// Kills the server when the test ends, also on a failed assertion.
struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(results: &Path) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["serve", "--addr", "127.0.0.1:0", "--results"])
        .arg(results)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start faultline serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .trim_end_matches('/')
        .to_string();
    (Server(child), url)
}

fn raw_get(url: &str, path: &str) -> String {
    let host = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Loads a page in headless Chromium and returns its DOM after the load event, failing on any
/// console error Chromium logs.
fn dump_dom(chrome: &Path, url: &str) -> String {
    let started = Instant::now();
    let out = Command::new(chrome)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ])
        .output()
        .expect("run chromium");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "chromium loaded {url} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for line in stderr.lines() {
        assert!(
            !(line.contains("Uncaught") || line.contains(":CONSOLE") && line.contains("error")),
            "console error on {url}: {line}"
        );
    }
    assert!(out.status.success(), "chromium failed on {url}: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_scripts_ran(dom: &str, what: &str) {
    assert!(
        dom.contains("id=\"js-status\" data-errors=\"0\"") && dom.contains(">js-ok<"),
        "page scripts of {what} failed or did not run: {}",
        dom.split("js-status")
            .nth(1)
            .unwrap_or("(no status element)")
    );
}

/// How many ops the timeline canvas drew (its script writes the count into `data-drawn`).
fn drawn_ops(dom: &str) -> usize {
    dom.split("data-drawn=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .expect("the timeline canvas was drawn")
}

#[test]
fn reports_and_index_render_in_headless_chromium() {
    let Some(chrome) = chromium() else {
        eprintln!(
            "SKIPPED: Debian's chromium is not installed; run `scripts/setup chromium` (scripts/test does)"
        );
        return;
    };
    let tmp = tempfile::Builder::new()
        .prefix("faultline-report-it-")
        .tempdir()
        .unwrap()
        .keep();
    let results = tmp.join("results");
    let run = results.join(FIXTURE);
    let invalid = results.join(INVALID);
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    copy_dir(&data.join(INVALID), &invalid);
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(FIXTURE),
        &run,
    );
    let big = results.join("generated/20200101T000000Z");
    big_history(&big, 7);
    // No linearizability check of the generated history (not what this test is about): a
    // results.json saying so, which also shows the `unknown` colours.
    std::fs::write(big.join("results.json"), r#"{"valid":"unknown","linearizable":{"valid":"unknown","reason":"generated history, not checked","keys":[]}}"#).unwrap();

    for dir in [&run, &invalid, &big] {
        let out = faultline(&["report", dir.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "faultline report {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{}", String::from_utf8_lossy(&out.stdout).trim());
    }
    let results_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(results_json["valid"], "valid");
    assert_eq!(
        results_json["perf"]["nemesis"][0]["label"],
        "partition one-way"
    );
    assert!(results_json["perf"]["recovery"][0]["recovered_after_s"].is_number());
    assert!(results.join("index.html").is_file());

    let (_server, url) = serve(&results);
    // The server refuses to leave the results folder.
    assert!(raw_get(&url, "/../results/index.html").starts_with("HTTP/1.1 403"));
    assert!(raw_get(&url, "/%2e%2e/").starts_with("HTTP/1.1 403"));
    let report = raw_get(&url, &format!("/{FIXTURE}/report.html"));
    assert!(report.starts_with("HTTP/1.1 200"));
    assert!(
        report
            .to_ascii_lowercase()
            .contains("content-type: text/html; charset=utf-8")
    );

    let index = dump_dom(&chrome, &format!("{url}/"));
    assert_scripts_ran(&index, "the index");
    assert!(index.contains("Faultline runs"));
    assert!(index.contains(&format!("href=\"{FIXTURE}/report.html\"")));
    assert!(index.contains("badge valid"));
    assert!(
        index.find("20261122T024631Z") < index.find("20200101T000000Z"),
        "newest first"
    );

    let dom = dump_dom(&chrome, &format!("{url}/{FIXTURE}/report.html"));
    assert_scripts_ran(&dom, "the report");
    assert!(dom.contains("data-verdict=\"valid\""));
    assert!(dom.matches("<svg").count() >= 5, "the five plots");
    for title in [
        "Latency of every operation",
        "Latency quantiles",
        "Throughput per second",
        "Availability per second",
        "Leader timeline",
    ] {
        assert!(dom.contains(title), "{title} missing");
    }
    let drawn = drawn_ops(&dom);
    assert_eq!(drawn, 1376, "every completed op is on the timeline");

    let dom = dump_dom(
        &chrome,
        &format!("{url}/generated/20200101T000000Z/report.html"),
    );
    assert_scripts_ran(&dom, "the 100,000-op report");
    assert_eq!(
        drawn_ops(&dom),
        100_000,
        "the 100,000-op timeline was drawn in full"
    );
    let size = std::fs::metadata(big.join("report.html")).unwrap().len();
    println!("100,000-op report.html: {size} bytes");

    let dom = dump_dom(&chrome, &format!("{url}/{INVALID}/report.html"));
    assert_scripts_ran(&dom, "the invalid report");
    assert!(dom.contains("data-verdict=\"invalid\""));
    assert!(dom.contains("cannot be linearized"));
    assert!(dom.contains("stale-read"), "the build label");
    assert!(
        dom.matches("<svg").count() >= 6,
        "five plots and the counterexample"
    );

    let cmp = results.join("compare.html");
    let out = faultline(&[
        "compare",
        run.to_str().unwrap(),
        invalid.to_str().unwrap(),
        "--out",
        cmp.to_str().unwrap(),
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    println!("{table}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("INVALID") && table.contains("stale-read (3a1c4d2bebc7)"));
    assert!(table.contains("throughput (ok ops/s)") && table.contains("recovery after partition"));
    let dom = dump_dom(&chrome, &format!("{url}/compare.html"));
    assert_scripts_ran(&dom, "compare.html");
    assert!(dom.contains("badge invalid") && dom.contains("badge valid"));
    assert_eq!(
        dom.matches("<svg").count(),
        2,
        "availability and throughput overlaid"
    );

    let shot = tmp.join("report.png");
    let out = Command::new(&chrome)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--hide-scrollbars",
            "--window-size=1100,4200",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("{url}/{FIXTURE}/report.html"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 20_000,
        "a blank screenshot"
    );
    println!("screenshot: {}", shot.display());
}
