//! Benchmarks of the linearizability checker, with the reference timings of Porcupine (Go,
//! v1.3.0) and porcupine-rs 0.2.0 (1 thread) measured on this machine class (2026-12-03, issue
//! 25) printed beside each case in brackets; neither is a dependency.
//!
//! `cargo run --release -p faultline-checker --example bench-check` runs every case, each in a
//! fresh process so that its peak memory (VmHWM) is its own; `... -- CASE` runs one case:
//! `etcd`, `c50-ok`, `c50-bad`, `c10-unpartitioned`, `c10-bad-unpartitioned`, `gen:N[:KEYS]`
//! (a generated register history of N operations over KEYS keys, default 1,000, 20 processes
//! per key, 5% indeterminate, generated straight into compact form), `jsonl:N` (the same
//! written as JSONL, then streamed and checked by a fresh process, as `faultline check` does),
//! `hard:N:PROCS:SECONDS` (one key, N operations from PROCS processes, 5% indeterminate, with
//! a time budget). Check times exclude parsing (reported separately). "verdict only" is a
//! check that stops at the first invalid key without a counterexample (what Porcupine's
//! `CheckOperations` answers); "with counterexample" is `faultline run`'s default.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use faultline_checker::{
    CheckOptions, Compact, FailReading, History, ModelKind, Op, OpType, Process, Validity, check,
    check_compact, read_compact, read_history,
};
use rand::{Rng, SeedableRng};
use serde_json::json;

fn testdata() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata"
    ))
}

fn peak_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn opts(model: ModelKind, threads: Option<usize>, partition: bool) -> CheckOptions {
    CheckOptions {
        model: Some(model),
        threads,
        partition,
        ..CheckOptions::default()
    }
}

/// CPU time of the calling thread, in ns: unlike wall time, it does not count the time other
/// processes on this shared machine hold the cores.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Best of `reps` runs: (wall ms, calling thread's CPU ms, verdict). The CPU time is the whole
/// cost only when the check runs on the calling thread (`threads: Some(1)`).
fn time(reps: usize, mut f: impl FnMut() -> Validity) -> (f64, f64, Validity) {
    let mut best = Duration::MAX;
    let mut best_cpu = u64::MAX;
    let mut v = Validity::Valid;
    for _ in 0..reps {
        let t = Instant::now();
        let c = thread_cpu_ns();
        v = f();
        best_cpu = best_cpu.min(thread_cpu_ns() - c);
        best = best.min(t.elapsed());
    }
    (best.as_secs_f64() * 1e3, best_cpu as f64 / 1e6, v)
}

fn etcd() {
    let dir = testdata().join("porcupine/etcd");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let t = Instant::now();
    let hs: Vec<(String, Compact)> = files
        .iter()
        .map(|f| {
            (
                f.file_name().unwrap().to_string_lossy().into_owned(),
                Compact::from_history(&read_history(f).unwrap()),
            )
        })
        .collect();
    let parse = t.elapsed().as_secs_f64() * 1e3;
    let failed = hs
        .iter()
        .flat_map(|(_, h)| h.ops.iter())
        .filter(|o| o.outcome == faultline_checker::Outcome::Fail)
        .count();
    let ops: usize = hs.iter().map(|(_, h)| h.ops.len()).sum();
    for reading in [FailReading::Porcupine, FailReading::Knossos] {
        for (label, threads) in [("1 thread", Some(1)), ("parallel", None)] {
            let mut per: Vec<(f64, f64, &str)> = Vec::new();
            let mut wrong = Vec::new();
            for (name, h) in &hs {
                let mut o = opts(ModelKind::CasRegister, threads, true);
                o.fail_reading = reading;
                o.counterexample = false;
                let (ms, cpu, v) = time(5, || check_compact(h, &o).unwrap().valid);
                let want = if name.contains(".valid.") {
                    Validity::Valid
                } else {
                    Validity::Invalid
                };
                if v != want {
                    wrong.push(name.as_str());
                }
                per.push((ms, cpu, name));
            }
            let total: f64 = per.iter().map(|p| p.0).sum();
            let total_cpu: f64 = per.iter().map(|p| p.1).sum();
            per.sort_by(|a, b| b.0.total_cmp(&a.0));
            println!(
                "etcd corpus, {} reading ({label}): {} files, total wall {total:.1} ms{} (best of 5 each), verdicts unlike Porcupine's {wrong:?}; slowest (wall): {}{}",
                reading.name(),
                hs.len(),
                if threads == Some(1) {
                    format!(", CPU {total_cpu:.1} ms")
                } else {
                    String::new()
                },
                per.iter()
                    .take(3)
                    .map(|(ms, _, n)| format!("{n} {ms:.2} ms"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if reading == FailReading::Porcupine && threads == Some(1) {
                    "  [Porcupine 812 ms, porcupine-rs 963 ms; goal >= 20x porcupine-rs: <= 48 ms]"
                } else {
                    ""
                }
            );
        }
    }
    println!(
        "etcd corpus: {ops} operations, {failed} failed (CAS observations under Porcupine's reading); parse {parse:.1} ms; peak memory {:.1} MiB",
        peak_mib()
    );
}

fn kv(name: &str, partition: bool, reps: usize, anchor: &str) {
    let t = Instant::now();
    let h = Compact::from_history(
        &read_history(&testdata().join(format!("porcupine/kv/{name}.edn"))).unwrap(),
    );
    let parse = t.elapsed().as_secs_f64() * 1e3;
    for (label, threads) in [("1 thread", Some(1)), ("parallel", None)] {
        for counterexample in [false, true] {
            let mut o = opts(ModelKind::Kv, threads, partition);
            o.counterexample = counterexample;
            let (ms, cpu, v) = time(reps, || check_compact(&h, &o).unwrap().valid);
            println!(
                "kv {name} {} ({label}, {}): wall {ms:.2} ms{} (best of {reps}), verdict {v}, {} ops{}",
                if partition {
                    "per key"
                } else {
                    "unpartitioned"
                },
                if counterexample {
                    "with counterexample"
                } else {
                    "verdict only"
                },
                if threads == Some(1) {
                    format!(", CPU {cpu:.2} ms")
                } else {
                    String::new()
                },
                h.ops.len(),
                if threads == Some(1) && !counterexample {
                    anchor
                } else {
                    ""
                }
            );
        }
    }
    println!(
        "kv {name}: parse {parse:.1} ms; peak memory {:.1} MiB",
        peak_mib()
    );
}

/// One event of a generated history, compactly (the generator of 10,000,000 operations holds
/// 20,000,000 of them).
#[derive(Clone, Copy)]
struct Ev {
    t: u64,
    seq: u64,
    key: u32,
    p: u64,
    kind: OpType,
    /// 0 read, 1 write, 2 cas
    f: u8,
    a: u8,
    b: u8,
    /// A read's result: the value, or `u8::MAX` for nil.
    read: u8,
}

/// A register history from a simulated linearizable register per key: each operation takes
/// effect at a random point between its invocation and completion; `info_pct`% are
/// indeterminate (taking effect or not, at random) and their process is replaced by a fresh
/// one. A CAS that finds another value fails with `cas-mismatch`, as Faultline's clients
/// record it, so the checker reads it as an observation.
fn generate_events(
    n: usize,
    keys: usize,
    procs_per_key: usize,
    info_pct: u32,
    seed: u64,
) -> Vec<Ev> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let per_key = n.div_ceil(keys);
    let mut events: Vec<Ev> = Vec::with_capacity(2 * n);
    let mut next_proc = 0u64;
    let mut seq = 0u64;
    struct Gen {
        p: u64,
        inv: u64,
        ret: u64,
        lin: u64,
        f: u8,
        a: u8,
        b: u8,
        info: bool,
        effect: bool,
    }
    let mut ops: Vec<Gen> = Vec::with_capacity(per_key);
    for k in 0..keys {
        ops.clear();
        // Each process slot runs ops back to back.
        let mut slots: Vec<(u64, u64)> = (0..procs_per_key)
            .map(|_| {
                next_proc += 1;
                (next_proc - 1, rng.random_range(0..50))
            })
            .collect();
        for i in 0..per_key {
            let s = i % procs_per_key;
            let (p, t) = slots[s];
            let inv = t + rng.random_range(1..20);
            let ret = inv + rng.random_range(1..100);
            let lin = rng.random_range(inv..=ret);
            let info = rng.random_range(0..100) < info_pct;
            ops.push(Gen {
                p,
                inv,
                ret,
                lin,
                f: [0, 0, 0, 0, 0, 1, 1, 1, 2, 2][rng.random_range(0..10)],
                a: rng.random_range(0..5),
                b: rng.random_range(0..5),
                info,
                effect: !info || rng.random_bool(0.5),
            });
            if info {
                next_proc += 1;
                slots[s] = (next_proc - 1, ret);
            } else {
                slots[s] = (p, ret);
            }
        }
        let mut order: Vec<usize> = (0..ops.len()).collect();
        order.sort_by_key(|&i| ops[i].lin);
        let mut reg: Option<u8> = None;
        let mut results: Vec<(OpType, u8)> = vec![(OpType::Ok, u8::MAX); ops.len()];
        for i in order {
            let g = &ops[i];
            let (ty, read) = match g.f {
                0 => (OpType::Ok, reg.unwrap_or(u8::MAX)),
                1 => {
                    if g.effect {
                        reg = Some(g.a);
                    }
                    (OpType::Ok, u8::MAX)
                }
                _ if reg == Some(g.a) => {
                    if g.effect {
                        reg = Some(g.b);
                    }
                    (OpType::Ok, u8::MAX)
                }
                _ => (OpType::Fail, u8::MAX),
            };
            results[i] = if g.info {
                (OpType::Info, u8::MAX)
            } else {
                (ty, read)
            };
        }
        for (g, (ty, read)) in ops.iter().zip(results) {
            let ev = |t, seq, kind, read| Ev {
                t,
                seq,
                key: k as u32,
                p: g.p,
                kind,
                f: g.f,
                a: g.a,
                b: g.b,
                read,
            };
            events.push(ev(g.inv, seq, OpType::Invoke, u8::MAX));
            events.push(ev(g.ret, seq + 1, ty, read));
            seq += 2;
        }
    }
    events.sort_unstable_by_key(|e| (e.t, e.seq));
    events
}

/// The op of an event at position `i`.
fn event_op(e: &Ev, i: usize) -> Op {
    let f = ["read", "write", "cas"][e.f as usize];
    let value = match (e.kind, e.f) {
        (OpType::Invoke, 0) | (OpType::Info, 0) => json!(null),
        (_, 0) if e.read == u8::MAX => json!(null),
        (_, 0) => json!(e.read),
        (_, 1) => json!(e.a),
        _ => json!([e.a, e.b]),
    };
    Op {
        index: i as u64,
        time: Some(e.t * 1000),
        process: Process::Client(e.p),
        kind: e.kind,
        f: f.to_string(),
        key: Some(format!("r{}", e.key)),
        value,
        node: None,
        error: (e.kind == OpType::Fail).then(|| "cas-mismatch".to_string()),
        line: i + 1,
    }
}

/// A generated history as a [`History`] (for tests of the slower path).
pub fn generate(n: usize, keys: usize, procs_per_key: usize, seed: u64) -> History {
    let ops = generate_events(n, keys, procs_per_key, 5, seed)
        .iter()
        .enumerate()
        .map(|(i, e)| event_op(e, i))
        .collect();
    History::from_ops(ops, Vec::new()).expect("generated history is well formed")
}

/// A generated history in compact form, built one op at a time (never held as ops).
fn generate_compact(n: usize, keys: usize, procs: usize, info_pct: u32, seed: u64) -> Compact {
    let events = generate_events(n, keys, procs, info_pct, seed);
    let mut c = Compact::default();
    for (i, e) in events.iter().enumerate() {
        c.push(&event_op(e, i))
            .expect("generated history is well formed");
    }
    c
}

/// Writes a generated history as JSONL, one line at a time.
fn write_jsonl(path: &std::path::Path, n: usize, keys: usize) -> u64 {
    use std::io::Write as _;
    let events = generate_events(n, keys, 20, 5, 42);
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    for (i, e) in events.iter().enumerate() {
        serde_json::to_writer(&mut w, &event_op(e, i)).unwrap();
        w.write_all(b"\n").unwrap();
    }
    w.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

fn gen_case(n: usize, keys: usize, anchor: &str) {
    let t = Instant::now();
    let h = generate_compact(n, keys, 20, 5, 42);
    let gen_ms = t.elapsed().as_secs_f64() * 1e3;
    let gen_peak = peak_mib();
    let reps = if n >= 1_000_000 { 1 } else { 3 };
    for (label, threads) in [("parallel", None), ("1 thread", Some(1))] {
        let mut r = None;
        let (ms, cpu, _) = time(reps, || {
            let c = check_compact(&h, &opts(ModelKind::CasRegister, threads, true)).unwrap();
            let v = c.valid;
            r = Some(c);
            v
        });
        let r = r.unwrap();
        let (v, u, i) = r.key_counts();
        println!(
            "generated {n} ops over {keys} keys ({label}): check {ms:.0} ms{}, verdict {} (keys valid/unknown/invalid {v}/{u}/{i})",
            if threads == Some(1) {
                format!(" (CPU {cpu:.0} ms)")
            } else {
                String::new()
            },
            r.valid,
        );
    }
    println!(
        "generated {n} ops over {keys} keys: generated in compact form in {gen_ms:.0} ms ({gen_peak:.0} MiB peak while generating); peak memory with the checks {:.0} MiB{anchor}",
        peak_mib()
    );
}

/// The hard shape for the Wing-Gong search: one key, many operations from few processes,
/// 5% indeterminate; with a budget, a verdict or an honest `unknown`.
fn hard_case(n: usize, procs: usize, limit_s: u64) {
    let h = generate_compact(n, 1, procs, 5, 7);
    let mut o = opts(ModelKind::CasRegister, Some(1), true);
    o.time_limit = Some(Duration::from_secs(limit_s));
    let t = Instant::now();
    let r = check_compact(&h, &o).unwrap();
    let k = &r.keys[0];
    println!(
        "1 key, {n} ops, {procs} processes, 5% indeterminate: {} in {:.0} ms ({} configurations{}), budget {limit_s} s; peak memory {:.0} MiB",
        r.valid,
        t.elapsed().as_secs_f64() * 1e3,
        k.configurations,
        k.reason
            .as_ref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default(),
        peak_mib()
    );
}

/// Streams a JSONL file into compact form and checks it: the path `faultline check` takes.
fn read_jsonl_case(path: &str, n: usize) {
    let t = Instant::now();
    let f = std::fs::File::open(path).unwrap();
    let h = read_compact(std::io::BufReader::with_capacity(1 << 16, f)).unwrap();
    let read_ms = t.elapsed().as_secs_f64() * 1e3;
    let read_peak = peak_mib();
    let t = Instant::now();
    let r = check_compact(&h, &opts(ModelKind::CasRegister, None, true)).unwrap();
    let check_ms = t.elapsed().as_secs_f64() * 1e3;
    println!(
        "JSONL of {n} ops ({} MiB): streamed into compact form in {read_ms:.0} ms ({read_peak:.0} MiB peak), checked in {check_ms:.0} ms (parallel), verdict {}; peak memory {:.0} MiB",
        std::fs::metadata(path).map_or(0, |m| m.len() >> 20),
        r.valid,
        peak_mib()
    );
}

/// `faultline check` on small files, whole processes: the wall time measured from here, and
/// the phases the binary reports with `--timings` (median of 30 runs each). What happens
/// before `main` (exec, loading the binary) and after it is the difference.
fn startup() {
    let bin = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/release/faultline"
    ));
    if !bin.exists() {
        println!(
            "startup: {} not built (cargo build --release -p faultline)",
            bin.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("history.jsonl");
    write_jsonl(&jsonl, 1000, 10);
    let files = [
        (
            "etcd_000 (EDN, 87 ops)",
            testdata().join("porcupine/etcd/etcd_000.invalid.edn"),
        ),
        ("1,000 ops over 10 keys (JSONL)", jsonl),
    ];
    for (label, file) in files {
        let mut walls = Vec::new();
        let mut phases: Vec<(String, Vec<f64>)> = Vec::new();
        for _ in 0..30 {
            let t = Instant::now();
            let out = Command::new(&bin)
                .args(["check", "--timings"])
                .arg(&file)
                .output()
                .unwrap();
            walls.push(t.elapsed().as_secs_f64() * 1e3);
            let err = String::from_utf8_lossy(&out.stderr);
            let line = err
                .lines()
                .find(|l| l.starts_with("timings (ms): "))
                .unwrap_or("");
            let body = line
                .trim_start_matches("timings (ms): ")
                .replace("; in main", ", in main");
            for part in body.split(", ").filter(|p| !p.is_empty()) {
                let (name, ms) = part.rsplit_once(' ').unwrap();
                let ms: f64 = ms.parse().unwrap();
                match phases.iter_mut().find(|p| p.0 == name) {
                    Some(p) => p.1.push(ms),
                    None => phases.push((name.to_string(), vec![ms])),
                }
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let wall = median(&mut walls);
        let mut main_ms = 0.0;
        let text: Vec<String> = phases
            .iter_mut()
            .map(|(n, v)| {
                let m = median(v);
                if n == "in main" {
                    main_ms = m;
                }
                format!("{n} {m:.2}")
            })
            .collect();
        println!(
            "startup, faultline check {label}: whole process {wall:.2} ms (median of 30); before and after main {:.2} ms; {} (ms)",
            wall - main_ms,
            text.join(", ")
        );
    }
}

fn main() {
    faultline_checker::tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("etcd") => etcd(),
        Some("c50-ok") => kv(
            "c50-ok",
            true,
            10,
            "  [Porcupine 291 ms, porcupine-rs 329 ms; goal <= 32.9 ms]",
        ),
        Some("c50-bad") => kv(
            "c50-bad",
            true,
            10,
            "  [Porcupine 8.2 ms, porcupine-rs 8.9 ms; goal <= 0.9 ms]",
        ),
        Some("c10-unpartitioned") => kv(
            "c10-ok",
            false,
            3,
            "  [Porcupine 3,783 ms, porcupine-rs 3,971 ms; goal <= 397 ms]",
        ),
        Some("c10-bad-unpartitioned") => kv(
            "c10-bad",
            false,
            3,
            "  [porcupine-rs 4,346 ms; goal <= 435 ms]",
        ),
        Some(k) if k.starts_with("keys:") => {
            let h =
                read_history(&testdata().join(format!("porcupine/kv/{}.edn", &k[5..]))).unwrap();
            let mut o = opts(ModelKind::Kv, Some(1), true);
            o.time_limit = Some(Duration::from_secs(20));
            let r = check(&h, &o).unwrap();
            for k in &r.keys {
                println!(
                    "{:?} {} ops={} conf={} {:.1} ms {:?}",
                    k.key, k.valid, k.ops, k.configurations, k.elapsed_ms, k.reason
                );
            }
        }
        Some(g) if g.starts_with("genkeys:") => {
            // genkeys:N:KEYS prints each key's search size.
            let mut it = g[8..].split(':').map(|x| x.parse::<usize>().unwrap());
            let (n, keys) = (it.next().unwrap(), it.next().unwrap());
            let h = generate(n, keys, 20, 42);
            let t = Instant::now();
            let r = check(&h, &opts(ModelKind::CasRegister, Some(1), true)).unwrap();
            println!(
                "{n} ops over {keys} keys: {:.0} ms, {}",
                t.elapsed().as_secs_f64() * 1e3,
                r.valid
            );
            let mut conf: Vec<(usize, f64)> = r
                .keys
                .iter()
                .map(|k| (k.configurations, k.elapsed_ms))
                .collect();
            conf.sort_by_key(|c| c.0);
            let total: usize = conf.iter().map(|c| c.0).sum();
            let q = |p: f64| conf[((conf.len() - 1) as f64 * p) as usize];
            println!(
                "  configurations: total {total}, median {:?}, p90 {:?}, p99 {:?}, max {:?} (configurations, ms)",
                q(0.5),
                q(0.9),
                q(0.99),
                q(1.0)
            );
            let slow: f64 = conf.iter().rev().take(conf.len() / 10).map(|c| c.1).sum();
            println!("  the slowest 10% of keys take {slow:.0} ms");
        }
        Some(g) if g.starts_with("gen:") => {
            let mut it = g[4..]
                .split(':')
                .map(|x| x.parse::<usize>().expect("gen:N[:KEYS]"));
            let n = it.next().unwrap();
            let keys = it.next().unwrap_or(1000);
            let anchor = match n {
                1_000_000 => {
                    "  [before this change: 2.2-4.8 s, 1.2 GiB peak; goal <= 1 s, <= 512 MiB]"
                }
                10_000_000 => "  [goal <= 15 s, <= 4 GiB]",
                _ => "",
            };
            gen_case(n, keys, anchor)
        }
        Some(g) if g.starts_with("hard:") => {
            let mut it = g[5..]
                .split(':')
                .map(|x| x.parse::<usize>().expect("hard:N:PROCS:S"));
            let (n, procs, s) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
            hard_case(n, procs, s as u64)
        }
        Some(g) if g.starts_with("jsonl:") => {
            let n: usize = g[6..].parse().expect("jsonl:N");
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("history.jsonl");
            let t = Instant::now();
            write_jsonl(&path, n, 1000);
            println!(
                "JSONL of {n} ops written in {:.0} ms",
                t.elapsed().as_secs_f64() * 1e3
            );
            let exe = std::env::current_exe().unwrap();
            let st = Command::new(&exe)
                .arg(format!("readjsonl:{n}:{}", path.display()))
                .status()
                .unwrap();
            assert!(st.success());
        }
        Some("startup") => startup(),
        Some(g) if g.starts_with("readjsonl:") => {
            let (n, path) = g[10..].split_once(':').unwrap();
            read_jsonl_case(path, n.parse().unwrap())
        }
        Some(other) => panic!("unknown case {other}"),
        None => {
            let exe = std::env::current_exe().unwrap();
            for case in [
                "etcd",
                "c50-ok",
                "c50-bad",
                "c10-unpartitioned",
                "c10-bad-unpartitioned",
                "gen:10000",
                "gen:100000",
                "gen:1000000",
                "jsonl:1000000",
                "gen:10000000:10000",
                "hard:100000:10:60",
                "startup",
            ] {
                let st = Command::new(&exe).arg(case).status().unwrap();
                assert!(st.success(), "{case} failed");
            }
        }
    }
}
