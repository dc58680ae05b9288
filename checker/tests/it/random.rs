//! The search against brute force on small random histories (seeded; the seed is printed).

use std::collections::HashMap;

use faultline_checker::history::Operation;
use faultline_checker::model::{CasRegister, Interner, KvModel, ListAppend, Model};
use faultline_checker::{
    CheckOptions, History, ModelKind, Op, OpType, Outcome, Process, Validity, check, parse_history,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

/// Why a completion failed: half the failed CASes were refused on comparison (an observation),
/// the other fails before they ran.
fn fail_error(rng: &mut ChaCha8Rng, kind: OpType, f: &str) -> Option<String> {
    if kind != OpType::Fail {
        return None;
    }
    let mismatch = f == "cas" && rng.random_bool(0.5);
    Some(
        if mismatch {
            "cas-mismatch"
        } else {
            "no-leader"
        }
        .into(),
    )
}

/// A random history: `procs` processes issue ops on `keys` keys; results are random, so that
/// both linearizable and non-linearizable histories come out. About 15% of completions are
/// `info` and 10% `fail`; a process whose op ended in `info` never issues again.
fn random_history(rng: &mut ChaCha8Rng, list: bool, n_ops: usize, keys: usize) -> History {
    let mut ops: Vec<Op> = Vec::new();
    let mut pending: HashMap<u64, (String, Option<String>, Value)> = HashMap::new();
    let mut free: Vec<u64> = (0..3).collect();
    let mut next_proc = 3;
    let mut issued = 0;
    let mk = |p: u64, kind, f: &str, key: &Option<String>, value: Value| Op {
        index: 0,
        time: None,
        process: Process::Client(p),
        kind,
        f: f.to_string(),
        key: key.clone(),
        value,
        node: None,
        error: None,
        line: 0,
    };
    while issued < n_ops || !pending.is_empty() {
        let invoke =
            issued < n_ops && !free.is_empty() && (pending.is_empty() || rng.random_bool(0.5));
        if invoke {
            let p = free.swap_remove(rng.random_range(0..free.len()));
            let key = (keys > 1).then(|| format!("k{}", rng.random_range(0..keys)));
            let v = |rng: &mut ChaCha8Rng| json!(rng.random_range(0..3));
            let (f, value) = match (list, rng.random_range(0..3)) {
                (false, 0) => ("read", Value::Null),
                (false, 1) => ("write", v(rng)),
                (false, _) => (
                    "cas",
                    json!([rng.random_range(0..3), rng.random_range(0..3)]),
                ),
                (true, 0) => ("read", Value::Null),
                (true, _) => ("append", json!(issued)),
            };
            ops.push(mk(p, OpType::Invoke, f, &key, value.clone()));
            pending.insert(p, (f.to_string(), key, value));
            issued += 1;
        } else {
            let ps: Vec<u64> = pending.keys().copied().collect();
            let p = ps[rng.random_range(0..ps.len())];
            let (f, key, input) = pending.remove(&p).unwrap();
            let roll = rng.random_range(0..100);
            let kind = if roll < 15 {
                OpType::Info
            } else if roll < 25 && f != "read" {
                OpType::Fail
            } else {
                OpType::Ok
            };
            let value = match (f.as_str(), kind) {
                ("read", OpType::Ok) if list => {
                    let len = rng.random_range(0..3);
                    json!(
                        (0..len)
                            .map(|_| rng.random_range(0..issued))
                            .collect::<Vec<_>>()
                    )
                }
                ("read", OpType::Ok) => {
                    if rng.random_bool(0.2) {
                        Value::Null
                    } else {
                        json!(rng.random_range(0..3))
                    }
                }
                _ => input,
            };
            let mut done = mk(p, kind, &f, &key, value);
            done.error = fail_error(rng, kind, &f);
            ops.push(done);
            if kind == OpType::Info {
                free.push(next_proc);
                next_proc += 1;
            } else {
                free.push(p);
            }
        }
    }
    for (i, o) in ops.iter_mut().enumerate() {
        o.index = i as u64;
        o.line = i + 1;
    }
    History::from_ops(ops, Vec::new()).unwrap()
}

/// Tries every order of the operations consistent with real time: all `ok` operations must be
/// placed, `info` ones may be placed or not, `fail` ones never, except a CAS refused with
/// `cas-mismatch`, which must be placed where the value was not its `from`.
fn brute_force<M: Model>(model: &M, h: &History, ops: &[&Operation]) -> bool {
    let mut values = Interner::default();
    let mut enc = Vec::new();
    for o in ops {
        let observing = o.outcome == Outcome::Fail
            && h.completion(o).and_then(|c| c.error.as_deref()) == Some("cas-mismatch");
        if o.outcome == Outcome::Fail && !observing {
            continue;
        }
        let inv = h.invocation(o);
        let out = (o.outcome == Outcome::Ok).then(|| &h.completion(o).unwrap().value);
        let call = faultline_checker::model::Call {
            f: &inv.f,
            key: inv.key.as_deref(),
            input: &inv.value,
            output: out,
            outcome: o.outcome,
        };
        // Brute force keeps even droppable ops: as optional no-ops they change nothing.
        let e = if observing {
            model.encode_failed(&call, &mut values).unwrap()
        } else {
            model.encode(&call, &mut values).unwrap()
        };
        if let Some(e) = e {
            enc.push((o.invoke, o.return_position(), e));
        }
    }
    fn go<M: Model>(
        m: &M,
        enc: &[(usize, Option<usize>, M::Op)],
        used: &mut Vec<bool>,
        s: &M::State,
    ) -> bool {
        if enc
            .iter()
            .zip(used.iter())
            .all(|(e, u)| *u || e.1.is_none())
        {
            return true;
        }
        for i in 0..enc.len() {
            if used[i] {
                continue;
            }
            // Every unplaced operation that returned before this one was invoked blocks it.
            let blocked = (0..enc.len())
                .any(|j| !used[j] && j != i && enc[j].1.is_some_and(|r| r < enc[i].0));
            if blocked {
                continue;
            }
            if let Some(s2) = m.step(s, &enc[i].2) {
                used[i] = true;
                let ok = go(m, enc, used, &s2);
                used[i] = false;
                if ok {
                    return true;
                }
            }
        }
        false
    }
    let mut used = vec![false; enc.len()];
    go(model, &enc, &mut used, &model.init())
}

fn brute_force_by_key<M: Model>(model: &M, h: &History) -> Validity {
    let mut by_key: HashMap<Option<&str>, Vec<&Operation>> = HashMap::new();
    for o in &h.operations {
        by_key.entry(h.key(o)).or_default().push(o);
    }
    if by_key.values().all(|ops| brute_force(model, h, ops)) {
        Validity::Valid
    } else {
        Validity::Invalid
    }
}

fn compare(list: bool, seed: u64, cases: usize) {
    println!(
        "random {} histories: seed {seed}",
        if list { "list-append" } else { "register" }
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut counts = [0usize; 3];
    for case in 0..cases {
        let n = rng.random_range(1..=8);
        let keys = rng.random_range(1..=2);
        let h = random_history(&mut rng, list, n, keys);
        let (want, model) = if list {
            (brute_force_by_key(&ListAppend, &h), ModelKind::ListAppend)
        } else {
            (
                brute_force_by_key(&CasRegister::default(), &h),
                ModelKind::CasRegister,
            )
        };
        let opts = CheckOptions {
            model: Some(model),
            stop_on_invalid: false,
            threads: Some(1),
            ..CheckOptions::default()
        };
        let got = check(&h, &opts).unwrap();
        let text: String = h
            .ops
            .iter()
            .map(|o| serde_json::to_string(o).unwrap() + "\n")
            .collect();
        assert_eq!(
            got.valid, want,
            "seed {seed} case {case}: search says {}, brute force {want}; history:\n{text}",
            got.valid
        );
        // The JSONL form reads back to the same history.
        assert_eq!(
            parse_history(&text, false).unwrap().ops,
            h.ops,
            "seed {seed} case {case}"
        );
        counts[want as usize] += 1;
    }
    println!("valid {}, invalid {}", counts[0], counts[2]);
    assert!(
        counts[0] > cases / 10 && counts[2] > cases / 10,
        "a poor mix: {counts:?}"
    );
}

fn seed() -> u64 {
    std::env::var("CHECKER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f417)
}

#[test]
fn register_search_agrees_with_brute_force() {
    compare(false, seed(), 3000);
}

#[test]
fn list_append_search_agrees_with_brute_force() {
    compare(true, seed() ^ 1, 1500);
}

/// A random kv history (`get`, `put`, `append` on strings). Each write takes effect when it
/// completes (an `info` one half of the time), and a get mostly sees the value then, else an
/// older or a corrupted one: so both linearizable and non-linearizable histories come out, and
/// appends of the same few letters make many orders look alike.
fn random_kv_history(rng: &mut ChaCha8Rng, n_ops: usize, keys: usize) -> History {
    let mut ops: Vec<Op> = Vec::new();
    let mut pending: HashMap<u64, (String, Option<String>, Value)> = HashMap::new();
    let mut state: HashMap<Option<String>, Vec<String>> = HashMap::new();
    let mut free: Vec<u64> = (0..4).collect();
    let mut next_proc = 4;
    let mut issued = 0;
    let mk = |p: u64, kind, f: &str, key: &Option<String>, value: Value| Op {
        index: 0,
        time: None,
        process: Process::Client(p),
        kind,
        f: f.to_string(),
        key: key.clone(),
        value,
        node: None,
        error: None,
        line: 0,
    };
    while issued < n_ops || !pending.is_empty() {
        let invoke =
            issued < n_ops && !free.is_empty() && (pending.is_empty() || rng.random_bool(0.6));
        if invoke {
            let p = free.swap_remove(rng.random_range(0..free.len()));
            let key = (keys > 1).then(|| format!("k{}", rng.random_range(0..keys)));
            let (f, value) = match rng.random_range(0..10) {
                0..4 => ("get", Value::Null),
                4..9 => (
                    "append",
                    json!(["a", "b", "c", "ab"][rng.random_range(0..4)]),
                ),
                _ => ("put", json!(["", "a", "x"][rng.random_range(0..3)])),
            };
            ops.push(mk(p, OpType::Invoke, f, &key, value.clone()));
            pending.insert(p, (f.to_string(), key, value));
            issued += 1;
        } else {
            let ps: Vec<u64> = pending.keys().copied().collect();
            let p = ps[rng.random_range(0..ps.len())];
            let (f, key, input) = pending.remove(&p).unwrap();
            let roll = rng.random_range(0..100);
            let kind = if roll < 15 {
                OpType::Info
            } else if roll < 25 && f != "get" {
                OpType::Fail
            } else {
                OpType::Ok
            };
            let past = state
                .entry(key.clone())
                .or_insert_with(|| vec![String::new()]);
            let cur = past.last().unwrap().clone();
            let effect = kind == OpType::Ok || (kind == OpType::Info && rng.random_bool(0.5));
            let value = match f.as_str() {
                "get" if kind == OpType::Ok => {
                    let v = match rng.random_range(0..10) {
                        0..6 => cur,
                        6..9 => past[past.len().saturating_sub(4)..]
                            [rng.random_range(0..past.len().min(4))]
                        .clone(),
                        _ => {
                            let mut v: Vec<char> = cur.chars().collect();
                            v.reverse();
                            v.into_iter().collect::<String>() + "a"
                        }
                    };
                    json!(v)
                }
                "get" => Value::Null,
                "append" if effect => {
                    past.push(cur + input.as_str().unwrap());
                    input
                }
                "put" if effect => {
                    past.push(input.as_str().unwrap().to_string());
                    input
                }
                _ => input,
            };
            let mut done = mk(p, kind, &f, &key, value);
            done.error = fail_error(rng, kind, &f);
            ops.push(done);
            if kind == OpType::Info {
                free.push(next_proc);
                next_proc += 1;
            } else {
                free.push(p);
            }
        }
    }
    for (i, o) in ops.iter_mut().enumerate() {
        o.index = i as u64;
        o.line = i + 1;
    }
    History::from_ops(ops, Vec::new()).unwrap()
}

/// The kv search, per key and over all keys at once, against brute force.
fn compare_kv(seed: u64, cases: usize) {
    println!("random kv histories: seed {seed}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut counts = [0usize; 3];
    for case in 0..cases {
        let n = rng.random_range(1..=9);
        let keys = rng.random_range(1..=2);
        let h = random_kv_history(&mut rng, n, keys);
        let text: String = h
            .ops
            .iter()
            .map(|o| serde_json::to_string(o).unwrap() + "\n")
            .collect();
        let want = brute_force_by_key(&KvModel::per_key(), &h);
        let all_keys = KvModel::all_keys(h.operations.iter().map(|o| h.key(o).unwrap_or("")));
        let all: Vec<&Operation> = h.operations.iter().collect();
        let want_all = if brute_force(&all_keys, &h, &all) {
            Validity::Valid
        } else {
            Validity::Invalid
        };
        assert_eq!(
            want, want_all,
            "seed {seed} case {case}: P-compositionality; history:\n{text}"
        );
        for partition in [true, false] {
            let opts = CheckOptions {
                model: Some(ModelKind::Kv),
                partition,
                stop_on_invalid: false,
                threads: Some(1),
                ..CheckOptions::default()
            };
            let got = check(&h, &opts).unwrap();
            assert_eq!(
                got.valid, want,
                "seed {seed} case {case} (partition {partition}): search says {}, brute force \
                 {want}; history:\n{text}",
                got.valid
            );
        }
        counts[want as usize] += 1;
    }
    println!("valid {}, invalid {}", counts[0], counts[2]);
    assert!(
        counts[0] > cases / 10 && counts[2] > cases / 10,
        "a poor mix: {counts:?}"
    );
}

#[test]
fn kv_search_agrees_with_brute_force() {
    compare_kv(seed() ^ 2, 3000);
}
