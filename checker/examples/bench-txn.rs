//! Benchmark of the transactional checker on generated Elle-shaped list-append histories, and of
//! the `adya` crate (a young Rust port of Elle) on the same histories in the same run.
//!
//! The generator simulates a serializable store: `PROCS` concurrent processes, each txn 1-4
//! micro-ops (reads or appends, half each) over 10,000 active keys (uniform; a key is retired
//! for a fresh one after 32 appends, as the workloads' `max-writes-per-key`), values unique per
//! key, each txn applied atomically at its completion; 2% of txns fail (no effect) and 1% end
//! `info` (applied or not, by a coin). The invalid variant plants a few anomalies: split txns
//! (reads from before, an append after, a txn that writes both keys: G-single), aborted reads
//! and lost updates.
//!
//! `cargo run --release -p faultline-checker --example bench-txn [sizes...]` (default: 100000
//! 1000000). Per size and variant the history is written to a temporary JSONL file, then each
//! path runs in a child process of its own (the example re-executed with `--child WHAT FILE`),
//! so each peak RSS (VmHWM) is that path's alone: the streaming path (`check_txn_jsonl`: the
//! file line by line, parse + check end to end), the generic one (`read_history` -> `History`
//! -> `check_txn`) and adya. Prints times, verdicts, anomalies and peaks.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Instant;

use faultline_checker::{TxnOptions, check_txn, check_txn_jsonl, read_history};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PROCS: u64 = 10;
const KEYS: usize = 10_000;
const MAX_WRITES: u64 = 32;

fn status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or("?".into(), |kb| format!("{:.0} MiB", kb / 1024.0))
}

struct Gen {
    rng: ChaCha8Rng,
    /// The active key of each slot.
    active: Vec<u64>,
    /// Each key's list, and the last value appended or promised (values unique per key).
    state: HashMap<u64, (Vec<u64>, u64)>,
    next_key: u64,
    text: String,
    index: u64,
    time: u64,
}

#[derive(Clone)]
enum Mop {
    Read(u64),
    Append(u64, u64),
}

impl Gen {
    fn line(&mut self, p: u64, ty: &str, value: &str, error: Option<&str>) {
        self.time += 1 + self.rng.random_range(0..1000);
        let _ = write!(
            self.text,
            "{{\"index\":{},\"time\":{},\"process\":{p},\"type\":\"{ty}\",\"f\":\"txn\",\"value\":{value}",
            self.index, self.time
        );
        if let Some(e) = error {
            let _ = write!(self.text, ",\"error\":\"{e}\"");
        }
        self.text.push_str("}\n");
        self.index += 1;
    }

    fn value(mops: &[Mop], reads: Option<&[Vec<u64>]>) -> String {
        let mut s = String::from("[");
        let mut ri = 0;
        for (i, m) in mops.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            match m {
                Mop::Append(k, v) => {
                    let _ = write!(s, "[\"append\",{k},{v}]");
                }
                Mop::Read(k) => {
                    let _ = write!(s, "[\"r\",{k},");
                    match reads {
                        None => s.push_str("null"),
                        Some(r) => {
                            s.push('[');
                            for (j, e) in r[ri].iter().enumerate() {
                                if j > 0 {
                                    s.push(',');
                                }
                                let _ = write!(s, "{e}");
                            }
                            s.push(']');
                            ri += 1;
                        }
                    }
                    s.push(']');
                }
            }
        }
        s.push(']');
        s
    }

    fn key(&mut self) -> u64 {
        self.active[self.rng.random_range(0..KEYS)]
    }

    /// A fresh value for key `k`.
    fn fresh(&mut self, k: u64) -> u64 {
        let e = self.state.entry(k).or_default();
        e.1 += 1;
        e.1
    }

    fn list(&self, k: u64) -> Vec<u64> {
        self.state.get(&k).map_or_else(Vec::new, |e| e.0.clone())
    }

    /// Applies an append; retires the key from its slot once it has `MAX_WRITES` values.
    fn apply(&mut self, k: u64, v: u64) {
        let e = self.state.entry(k).or_default();
        e.0.push(v);
        if e.1 >= MAX_WRITES
            && let Some(slot) = self.active.iter().position(|&a| a == k)
        {
            self.active[slot] = self.next_key;
            self.next_key += 1;
        }
    }

    fn random_txn(&mut self) -> Vec<Mop> {
        let n = self.rng.random_range(1..=4);
        (0..n)
            .map(|_| {
                let k = self.key();
                if self.rng.random_bool(0.5) {
                    let v = self.fresh(k);
                    Mop::Append(k, v)
                } else {
                    Mop::Read(k)
                }
            })
            .collect()
    }

    /// What `mops` read if applied now (seeing their own earlier appends).
    fn reads(&self, mops: &[Mop]) -> Vec<Vec<u64>> {
        let mut out = Vec::new();
        let mut local: Vec<(u64, Vec<u64>)> = Vec::new();
        for m in mops {
            match *m {
                Mop::Append(k, v) => match local.iter_mut().find(|x| x.0 == k) {
                    Some(x) => x.1.push(v),
                    None => {
                        let mut l = self.list(k);
                        l.push(v);
                        local.push((k, l));
                    }
                },
                Mop::Read(k) => out.push(
                    local
                        .iter()
                        .find(|x| x.0 == k)
                        .map_or_else(|| self.list(k), |x| x.1.clone()),
                ),
            }
        }
        out
    }
}

/// Generates `n` txns as JSONL; with `plant`, a few anomalies (returns how many).
fn generate(seed: u64, n: usize, plant: bool) -> (String, usize) {
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(seed),
        active: (0..KEYS as u64).collect(),
        state: HashMap::new(),
        next_key: KEYS as u64,
        text: String::with_capacity(n * 200),
        index: 0,
        time: 0,
    };
    let mut proc_id: Vec<u64> = (0..PROCS).collect();
    let mut next_proc = PROCS;
    let mut pending: Vec<Option<(Vec<Mop>, u8)>> = vec![None; PROCS as usize];
    let plants: Vec<usize> = if plant {
        (1..=6).map(|i| i * n / 7).collect()
    } else {
        vec![]
    };
    let mut planted = 0;
    let (mut invoked, mut done) = (0usize, 0usize);
    while done < n {
        let p = g.rng.random_range(0..PROCS) as usize;
        match pending[p].take() {
            None if invoked < n => {
                if plants.contains(&invoked) {
                    planted += 1;
                    let x = next_proc;
                    next_proc += 3;
                    match planted % 3 {
                        // A split txn: its read from before, its append after a txn that
                        // appends to both keys.
                        0 => {
                            let (a, b) = (g.key(), g.key());
                            let b = if a == b {
                                g.active[(b as usize + 1) % KEYS]
                            } else {
                                b
                            };
                            let vb = g.fresh(b);
                            let t = vec![Mop::Read(a), Mop::Append(b, vb)];
                            let before = g.reads(&t);
                            g.line(x, "invoke", &Gen::value(&t, None), None);
                            let w = vec![Mop::Append(a, g.fresh(a)), Mop::Append(b, g.fresh(b))];
                            let wv = Gen::value(&w, None);
                            g.line(x + 1, "invoke", &wv, None);
                            for m in &w {
                                if let Mop::Append(k, v) = *m {
                                    g.apply(k, v);
                                }
                            }
                            g.line(x + 1, "ok", &wv, None);
                            g.apply(b, vb);
                            g.line(x, "ok", &Gen::value(&t, Some(&before)), None);
                        }
                        // An aborted read: a failed append that a later read shows.
                        1 => {
                            let a = g.key();
                            let f = vec![Mop::Append(a, g.fresh(a))];
                            let fv = Gen::value(&f, None);
                            g.line(x, "invoke", &fv, None);
                            g.line(x, "fail", &fv, Some("aborted"));
                            if let Mop::Append(k, v) = f[0] {
                                g.apply(k, v);
                            }
                            let r = vec![Mop::Read(a)];
                            let seen = g.reads(&r);
                            g.line(x + 1, "invoke", &Gen::value(&r, None), None);
                            g.line(x + 1, "ok", &Gen::value(&r, Some(&seen)), None);
                        }
                        // A lost update: two txns read one version and both append.
                        _ => {
                            let a = g.key();
                            let seen = vec![g.list(a)];
                            for y in [x, x + 1] {
                                let m = vec![Mop::Read(a), Mop::Append(a, g.fresh(a))];
                                g.line(y, "invoke", &Gen::value(&m, None), None);
                                g.line(y, "ok", &Gen::value(&m, Some(&seen)), None);
                                if let Mop::Append(k, v) = m[1] {
                                    g.apply(k, v);
                                }
                            }
                        }
                    }
                }
                let mops = g.random_txn();
                let pid = proc_id[p];
                g.line(pid, "invoke", &Gen::value(&mops, None), None);
                let fate = g.rng.random_range(0..100u8);
                pending[p] = Some((mops, fate));
                invoked += 1;
            }
            None => {}
            Some((mops, fate)) => {
                let pid = proc_id[p];
                if fate < 2 {
                    g.line(pid, "fail", &Gen::value(&mops, None), Some("aborted"));
                } else {
                    let apply = fate >= 3 || g.rng.random_bool(0.5);
                    let reads = g.reads(&mops);
                    if apply {
                        for m in &mops {
                            if let Mop::Append(k, v) = *m {
                                g.apply(k, v);
                            }
                        }
                    }
                    if fate >= 3 {
                        g.line(pid, "ok", &Gen::value(&mops, Some(&reads)), None);
                    } else {
                        g.line(pid, "info", &Gen::value(&mops, None), Some("timeout"));
                        proc_id[p] = next_proc;
                        next_proc += 1;
                    }
                }
                done += 1;
            }
        }
    }
    (g.text, planted)
}

/// Peak RSS (VmHWM) of this process so far.
fn peak() -> String {
    status("VmHWM")
}

/// One measurement, in a child process of its own (so each path's peak RSS is its own): `path`
/// is the history file, `what` one of `history`, `stream`, `adya`.
fn child(what: &str, path: &str) {
    match what {
        // The generic path: the whole text, then `History` (a `Value` per op), then the check.
        "history" => {
            let t = Instant::now();
            let h = read_history(path.as_ref()).expect("the generated history parses");
            let parse = t.elapsed().as_secs_f64();
            let with_history = status("VmRSS");
            let t = Instant::now();
            let r = check_txn(&h, &TxnOptions::default());
            let check = t.elapsed().as_secs_f64();
            println!(
                "faultline (History): parse {parse:.2} s + check {check:.2} s = {:.2} s (infer \
                 {:.2} s, cycles {:.2} s): {} ({} ok, {} fail, {} info; {} edges, {} SCCs); RSS \
                 with the parsed history {with_history}, peak {}",
                parse + check,
                r.infer_ms / 1e3,
                r.search_ms / 1e3,
                r.valid,
                r.counts.ok,
                r.counts.fail,
                r.counts.info,
                r.counts.edges,
                r.counts.sccs,
                peak()
            );
            for l in r.anomaly_lines() {
                let l: String = l.chars().take(160).collect();
                println!("  {l}");
            }
        }
        // The streaming path: the file line by line into the compact txns, then the check.
        "stream" => {
            let t = Instant::now();
            let file = std::fs::File::open(path).expect("the history file opens");
            let r = check_txn_jsonl(
                std::io::BufReader::with_capacity(1 << 16, file),
                &TxnOptions::default(),
            )
            .expect("the generated history parses");
            let total = t.elapsed().as_secs_f64();
            let x = &r.result;
            println!(
                "faultline (stream):  parse + check {total:.2} s end to end (read + infer {:.2} \
                 s, cycles {:.2} s): {} ({} ok, {} fail, {} info; {} edges, {} SCCs); peak {}",
                x.infer_ms / 1e3,
                x.search_ms / 1e3,
                x.valid,
                x.counts.ok,
                x.counts.fail,
                x.counts.info,
                x.counts.edges,
                x.counts.sccs,
                peak()
            );
        }
        _ => {
            let t = Instant::now();
            let text = std::fs::read_to_string(path).expect("the history file reads");
            let ah = match adya::History::from_json(&text) {
                Ok(h) => h,
                Err(e) => {
                    println!("adya: cannot parse the history: {e}");
                    return;
                }
            };
            let parse = t.elapsed().as_secs_f64();
            drop(text);
            let with_history = status("VmRSS");
            let t = Instant::now();
            let ar = std::panic::catch_unwind(|| {
                adya::check(&ah, adya::Workload::ListAppend, &adya::Opts::default())
            });
            let check = t.elapsed().as_secs_f64();
            match ar {
                Ok(ar) => println!(
                    "adya:                parse {parse:.2} s + check {check:.2} s = {:.2} s: {:?} \
                     {:?}; RSS with the parsed history {with_history}, peak {}",
                    parse + check,
                    ar.valid,
                    ar.anomaly_types,
                    peak()
                ),
                Err(_) => println!("adya: panicked after {check:.2} s"),
            }
        }
    }
}

fn run(n: usize, plant: bool) {
    let label = if plant { "invalid" } else { "valid" };
    let t = Instant::now();
    let (text, planted) = generate(17, n, plant);
    println!(
        "\n== {n} txns, {label}{} (text {:.0} MiB, generated in {:.2} s)",
        if plant {
            format!(", {planted} planted anomalies")
        } else {
            String::new()
        },
        text.len() as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64()
    );
    let path = std::env::temp_dir().join(format!(
        "bench-txn-{}-{n}-{label}.jsonl",
        std::process::id()
    ));
    std::fs::write(&path, &text).expect("the temp file is written");
    drop(text);
    let me = std::env::current_exe().expect("the example's path");
    for what in ["stream", "history", "adya"] {
        let out = std::process::Command::new(&me)
            .args(["--child", what])
            .arg(&path)
            .output()
            .expect("the child runs");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            println!(
                "{what}: the child failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    let _ = std::fs::remove_file(&path);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") && args.len() == 3 {
        child(&args[1], &args[2]);
        return;
    }
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![100_000, 1_000_000]
    } else {
        sizes
    };
    println!(
        "bench-txn: list-append, {PROCS} processes, {KEYS} active keys, 1-4 micro-ops, \
         strict-serializable, {} threads; each measurement in a child process of its own (peak = \
         its VmHWM)",
        rayon::current_num_threads()
    );
    for &n in &sizes {
        run(n, false);
        run(n, true);
    }
}
