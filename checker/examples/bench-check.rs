//! Benchmarks of the linearizability checker against Porcupine's reference timings.
//!
//! `cargo run --release -p faultline-checker --example bench-check` runs every case, each in a
//! fresh process so that its peak memory (VmHWM) is its own; `... -- CASE` runs one case:
//! `etcd`, `c50-ok`, `c50-bad`, `c10-unpartitioned`, `gen:N` (a generated register history of N
//! operations over 1,000 keys, 20 processes per key, 5% indeterminate). Times exclude parsing
//! (reported separately); each case reports single-threaded and parallel (all cores) times.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use faultline_checker::{
    CheckOptions, History, ModelKind, Op, OpType, Process, Validity, check, read_history,
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

/// CPU time of the calling thread, in ns (`/proc/thread-self/schedstat`): unlike wall time, it
/// does not count the time other processes on this shared machine hold the cores.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0)
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
    let hs: Vec<(String, History)> = files
        .iter()
        .map(|f| {
            (
                f.file_name().unwrap().to_string_lossy().into_owned(),
                read_history(f).unwrap(),
            )
        })
        .collect();
    let parse = t.elapsed().as_secs_f64() * 1e3;
    for (label, threads) in [("1 thread", Some(1)), ("parallel", None)] {
        let mut per: Vec<(f64, f64, &str)> = Vec::new();
        let mut wrong = 0;
        for (name, h) in &hs {
            let (ms, cpu, v) = time(5, || {
                check(h, &opts(ModelKind::CasRegister, threads, true))
                    .unwrap()
                    .valid
            });
            let want = if name.contains(".valid.") {
                Validity::Valid
            } else {
                Validity::Invalid
            };
            wrong += usize::from(v != want);
            per.push((ms, cpu, name));
        }
        let total: f64 = per.iter().map(|p| p.0).sum();
        let total_cpu: f64 = per.iter().map(|p| p.1).sum();
        per.sort_by(|a, b| b.0.total_cmp(&a.0));
        println!(
            "etcd corpus ({label}): {} files, total wall {total:.1} ms{} (best of 5 each), wrong verdicts {wrong}; slowest (wall): {}",
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
                .join(", ")
        );
    }
    println!(
        "etcd corpus: parse {parse:.1} ms; peak memory {:.1} MiB",
        peak_mib()
    );
}

fn kv(name: &str, partition: bool, reps: usize) {
    let t = Instant::now();
    let h = read_history(&testdata().join(format!("porcupine/kv/{name}.edn"))).unwrap();
    let parse = t.elapsed().as_secs_f64() * 1e3;
    for (label, threads) in [("1 thread", Some(1)), ("parallel", None)] {
        let (ms, cpu, v) = time(reps, || {
            check(&h, &opts(ModelKind::Kv, threads, partition))
                .unwrap()
                .valid
        });
        println!(
            "kv {name} {} ({label}): wall {ms:.2} ms{} (best of {reps}), verdict {v}, {} ops",
            if partition {
                "per key"
            } else {
                "unpartitioned"
            },
            if threads == Some(1) {
                format!(", CPU {cpu:.2} ms")
            } else {
                String::new()
            },
            h.operations.len()
        );
    }
    println!(
        "kv {name}: parse {parse:.1} ms; peak memory {:.1} MiB",
        peak_mib()
    );
}

/// A register history from a simulated linearizable register per key: each operation takes
/// effect at a random point between its invocation and completion; 5% are indeterminate
/// (taking effect or not, at random) and their process is replaced by a fresh one.
pub fn generate(n: usize, keys: usize, procs_per_key: usize, seed: u64) -> History {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let per_key = n.div_ceil(keys);
    // (time, order, op)
    let mut events: Vec<(u64, u64, Op)> = Vec::with_capacity(2 * n);
    let mut next_proc = 0u64;
    let mut seq = 0u64;
    for k in 0..keys {
        let key = format!("r{k}");
        // Each process slot runs ops back to back.
        let mut slots: Vec<(u64, u64)> = (0..procs_per_key)
            .map(|_| {
                next_proc += 1;
                (next_proc - 1, rng.random_range(0..50))
            })
            .collect();
        struct Gen {
            p: u64,
            inv: u64,
            ret: u64,
            lin: u64,
            f: u8,
            a: u64,
            b: u64,
            info: bool,
            effect: bool,
        }
        let mut ops: Vec<Gen> = Vec::with_capacity(per_key);
        for i in 0..per_key {
            let s = i % procs_per_key;
            let (p, t) = slots[s];
            let inv = t + rng.random_range(1..20);
            let ret = inv + rng.random_range(1..100);
            let lin = rng.random_range(inv..=ret);
            let info = rng.random_range(0..100) < 5;
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
        let mut reg: Option<u64> = None;
        let mut results: Vec<(OpType, serde_json::Value)> =
            vec![(OpType::Ok, json!(null)); ops.len()];
        for i in order {
            let g = &ops[i];
            let (ty, val) = match g.f {
                0 => (OpType::Ok, json!(reg)),
                1 => {
                    if g.effect {
                        reg = Some(g.a);
                    }
                    (OpType::Ok, json!(g.a))
                }
                _ => {
                    if reg == Some(g.a) {
                        if g.effect {
                            reg = Some(g.b);
                        }
                        (OpType::Ok, json!([g.a, g.b]))
                    } else {
                        (OpType::Fail, json!([g.a, g.b]))
                    }
                }
            };
            results[i] = if g.info {
                (OpType::Info, if g.f == 0 { json!(null) } else { val })
            } else {
                (ty, val)
            };
        }
        for (g, (ty, val)) in ops.iter().zip(results) {
            let f = ["read", "write", "cas"][g.f as usize];
            let input = match g.f {
                0 => json!(null),
                1 => json!(g.a),
                _ => json!([g.a, g.b]),
            };
            let mk = |kind, value| Op {
                index: 0,
                time: None,
                process: Process::Client(g.p),
                kind,
                f: f.to_string(),
                key: Some(key.clone()),
                value,
                node: None,
                error: None,
                line: 0,
            };
            events.push((g.inv, seq, mk(OpType::Invoke, input)));
            events.push((g.ret, seq + 1, mk(ty, val)));
            seq += 2;
        }
    }
    events.sort_unstable_by_key(|e| (e.0, e.1));
    let ops: Vec<Op> = events
        .into_iter()
        .enumerate()
        .map(|(i, (t, _, mut op))| {
            op.index = i as u64;
            op.time = Some(t * 1000);
            op.line = i + 1;
            op
        })
        .collect();
    History::from_ops(ops, Vec::new()).expect("generated history is well formed")
}

fn gen_case(n: usize) {
    let t = Instant::now();
    let h = generate(n, 1000, 20, 42);
    let gen_ms = t.elapsed().as_secs_f64() * 1e3;
    let reps = if n >= 1_000_000 { 1 } else { 3 };
    for (label, threads) in [("parallel", None), ("1 thread", Some(1))] {
        let t = Instant::now();
        let r = check(&h, &opts(ModelKind::CasRegister, threads, true)).unwrap();
        let mut ms = t.elapsed().as_secs_f64() * 1e3;
        for _ in 1..reps {
            let t = Instant::now();
            check(&h, &opts(ModelKind::CasRegister, threads, true)).unwrap();
            ms = ms.min(t.elapsed().as_secs_f64() * 1e3);
        }
        let (v, u, i) = r.key_counts();
        println!(
            "generated {n} ops ({label}): check {ms:.0} ms, verdict {} (keys valid/unknown/invalid {v}/{u}/{i}), {} client operations",
            r.valid,
            h.operations.len()
        );
    }
    println!(
        "generated {n} ops: generate {gen_ms:.0} ms; peak memory (history + checks) {:.0} MiB",
        peak_mib()
    );
    // Then the cost of reading the same history from history.jsonl.
    let jsonl: String = h
        .ops
        .iter()
        .map(|o| serde_json::to_string(o).unwrap() + "\n")
        .collect();
    let t = Instant::now();
    let parsed = faultline_checker::parse_history(&jsonl, false).unwrap();
    let parse_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(parsed.operations.len(), h.operations.len());
    println!(
        "generated {n} ops: JSONL {} MiB parsed in {parse_ms:.0} ms; peak memory with text and both copies {:.0} MiB",
        jsonl.len() >> 20,
        peak_mib()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("etcd") => etcd(),
        Some("c50-ok") => kv("c50-ok", true, 10),
        Some("c50-bad") => kv("c50-bad", true, 10),
        Some("c10-unpartitioned") => kv("c10-ok", false, 3),
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
            for k in r.keys.iter().take(10) {
                println!(
                    "  {:?} ops={} configurations={} {:.1} ms",
                    k.key, k.ops, k.configurations, k.elapsed_ms
                );
            }
        }
        Some(g) if g.starts_with("gen:") => gen_case(g[4..].parse().expect("gen:N")),
        Some(other) => panic!("unknown case {other}"),
        None => {
            let exe = std::env::current_exe().unwrap();
            for case in [
                "etcd",
                "c50-ok",
                "c50-bad",
                "c10-unpartitioned",
                "gen:10000",
                "gen:100000",
                "gen:1000000",
            ] {
                let st = Command::new(&exe).arg(case).status().unwrap();
                assert!(st.success(), "{case} failed");
            }
        }
    }
}
