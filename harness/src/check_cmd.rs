//! `faultline check`: checks a recorded history (a run directory, a `history.jsonl` or a
//! Jepsen `history.edn`) for linearizability, prints the verdict, and, given a run directory,
//! writes `results.json` (and `counterexample.svg` when invalid) into it.
//!
//! Exit codes: 0 valid, 1 invalid, 2 unknown, 3 bad input (the message names file, line, field).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use faultline_checker::{
    BankOptions, CheckOptions, CheckResult, CounterOptions, FailReading, History, LeaseOptions,
    LongForkOptions, ModelKind, QueueOptions, Results, SetFullOptions, SetOptions, Validity, check,
    check_bank, check_counter, check_history, check_lease, check_long_fork, check_queue, check_set,
    check_set_full, check_watch, read_history, stats,
};
use faultline_checker::{
    Compact, ConsistencyModel, TxnJsonl, TxnKind, TxnOptions, check_compact, check_txn,
    check_txn_jsonl, is_edn_file, read_compact_while,
};

/// Exit code for input the checker cannot read.
pub const EXIT_BAD_INPUT: i32 = 3;

/// Arguments of `faultline check`.
#[derive(clap::Args, Debug, Clone)]
pub struct CheckArgs {
    /// A run directory (containing history.jsonl), a history.jsonl, or a Jepsen history.edn.
    pub path: PathBuf,
    /// The model: cas-register, kv, list-append, mutex or multi-register (linearizability), or
    /// watch (etcd's watch guarantees), lease (leases kept alive are not revoked) or queue
    /// (acknowledged publishes are all drained, nothing else is). Default: watch when the history
    /// has watch lines, queue when it has publishes and drains, lease when it grants leases, else
    /// inferred from the operations (read/write/cas: cas-register). Histories with keys are
    /// checked per key. Jepsen's workload checkers: bank, counter, set, set-full, long-fork
    /// (by default a transfer means bank, reads of micro-ops long-fork, adds set or counter).
    /// Transactions (Elle's): `list-append-txn` or `rw-register` (by default a history of
    /// `txn` ops with `append`/`r`/`w` micro-ops is checked so).
    #[arg(long)]
    pub model: Option<String>,
    /// Transactions: the consistency model the history must satisfy (read-uncommitted,
    /// read-committed, repeatable-read, snapshot-isolation, serializable, strict-serializable;
    /// default strict-serializable). Exit 1 when the history breaks it.
    #[arg(long)]
    pub consistency_model: Option<String>,
    /// Transactions: also look for the anomalies this stronger model forbids and report them,
    /// without counting them against `--consistency-model` (to show documented anomalies).
    #[arg(long)]
    pub search_model: Option<String>,
    /// Bank: negative balances are allowed (Jepsen's `:negative-balances?`).
    #[arg(long)]
    pub negative_balances: bool,
    /// Bank: the total every read must show (default: the first ok read's sum).
    #[arg(long)]
    pub total: Option<i64>,
    /// Long-fork: every read must read exactly this many keys (elle-cli's `--group-size`).
    #[arg(long)]
    pub group_size: Option<usize>,
    /// Give up with "unknown" after this many seconds.
    #[arg(long)]
    pub time_limit: Option<f64>,
    /// Give up with "unknown" when the search's memo would exceed this many MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory_limit_mib: usize,
    /// Queue: a value drained twice makes the history invalid (default: at-least-once, so
    /// duplicates are reported but allowed). Implies `--model queue` when no model is given.
    #[arg(long)]
    pub exactly_once: bool,
    /// Check all keys in one model state instead of per key (kv model only).
    #[arg(long)]
    pub no_partition: bool,
    /// The model's initial state as JSON (cas-register: a value; multi-register: an object).
    #[arg(long)]
    pub initial: Option<String>,
    /// Keep checking the other keys after one is found not linearizable.
    #[arg(long)]
    pub all_keys: bool,
    /// How a `fail` completion is read (linearizability): `recorded` (default: a failed CAS
    /// whose recorded error is `cas-mismatch` observed a value other than its `from`; any
    /// other fail never happened), `knossos` (no fail ever happened: Knossos's reading, and
    /// this checker's before fails were evidence) or `porcupine` (a failed CAS without a
    /// recorded error also observed a mismatch: Porcupine's reading of Jepsen's EDN).
    #[arg(long, default_value = "recorded")]
    pub fail_reading: String,
    /// Answer the verdict only: stop at the first key found not linearizable, without
    /// computing a counterexample.
    #[arg(long)]
    pub verdict_only: bool,
    /// Worker threads for checking keys in parallel (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the result as JSON (the contents of results.json) instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Print on stderr where the time went: before the command ran (argument parsing, logging
    /// set-up), reading the history, checking it, writing results, printing.
    #[arg(long)]
    pub timings: bool,
}

/// Phases of `faultline check`, for `--timings`.
struct Timings {
    on: bool,
    last: std::time::Instant,
    phases: Vec<(&'static str, f64)>,
}

impl Timings {
    fn new(on: bool) -> Timings {
        let mut t = Timings {
            on,
            last: crate::cli::started(),
            phases: Vec::new(),
        };
        t.phase("main to check command");
        t
    }

    /// Ends the phase `name` now.
    fn phase(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.phases
            .push((name, (now - self.last).as_secs_f64() * 1e3));
        self.last = now;
    }

    fn print(&mut self) {
        self.phase("print");
        if self.on {
            let total: f64 = self.phases.iter().map(|p| p.1).sum();
            let parts: Vec<String> = self
                .phases
                .iter()
                .map(|(n, ms)| format!("{n} {ms:.3}"))
                .collect();
            eprintln!("timings (ms): {}; in main {total:.3}", parts.join(", "));
        }
    }
}

/// Where the history is, and the run directory to write results into, if any.
fn locate(path: &Path) -> (PathBuf, Option<PathBuf>) {
    if path.is_dir() {
        let jsonl = path.join("history.jsonl");
        let edn = path.join("history.edn");
        let file = if !jsonl.exists() && edn.exists() {
            edn
        } else {
            jsonl
        };
        (file, Some(path.to_path_buf()))
    } else {
        (path.to_path_buf(), None)
    }
}

/// `--model watch` and `--model lease` pick a checker that is not a linearizability model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checker {
    /// By content ([`check_history`]), or linearizability with the model given.
    Auto,
    Watch,
    Lease,
    Queue,
    Bank,
    Counter,
    Set,
    SetFull,
    LongFork,
    Txn(TxnKind),
}

fn checker(args: &CheckArgs) -> Checker {
    match args.model.as_deref() {
        Some("watch") => Checker::Watch,
        Some("lease") => Checker::Lease,
        Some("queue") => Checker::Queue,
        Some("bank") => Checker::Bank,
        Some("counter") => Checker::Counter,
        Some("set") => Checker::Set,
        Some("set-full") => Checker::SetFull,
        Some("long-fork") => Checker::LongFork,
        Some("list-append-txn") => Checker::Txn(TxnKind::ListAppend),
        Some("rw-register") => Checker::Txn(TxnKind::RwRegister),
        None if args.exactly_once => Checker::Queue,
        _ => Checker::Auto,
    }
}

fn options(args: &CheckArgs) -> Result<CheckOptions, String> {
    let model = args
        .model
        .as_deref()
        .filter(|_| checker(args) == Checker::Auto)
        .map(ModelKind::parse)
        .transpose()
        .map_err(|e| e.to_string())?;
    let time_limit = match args.time_limit {
        None => None,
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            return Err(format!(
                "--time-limit must be a positive number of seconds, got {s}"
            ));
        }
    };
    let initial = args
        .initial
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| format!("--initial is not JSON: {e}"))?;
    if args.exactly_once && checker(args) != Checker::Queue {
        return Err("--exactly-once applies to the queue model only".into());
    }
    if (args.negative_balances || args.total.is_some()) && checker(args) != Checker::Bank {
        return Err("--negative-balances and --total apply to the bank model only".into());
    }
    if args.group_size.is_some() && checker(args) != Checker::LongFork {
        return Err("--group-size applies to the long-fork model only".into());
    }
    let txn_model = args
        .consistency_model
        .as_deref()
        .map(ConsistencyModel::parse)
        .transpose()?;
    if txn_model.is_some() && !matches!(checker(args), Checker::Txn(_) | Checker::Auto)
        || txn_model.is_some() && model.is_some()
    {
        return Err("--consistency-model applies to transactional histories only".into());
    }
    let txn_search = args
        .search_model
        .as_deref()
        .map(ConsistencyModel::parse)
        .transpose()?;
    if txn_search.is_some() && model.is_some() {
        return Err("--search-model applies to transactional histories only".into());
    }
    if args.no_partition && model.is_some_and(|m| m != ModelKind::Kv) {
        return Err("--no-partition is supported by the kv model only".into());
    }
    let fail_reading =
        FailReading::parse(&args.fail_reading).map_err(|e| format!("--fail-reading: {e}"))?;
    if args.verdict_only && args.all_keys {
        return Err(
            "--verdict-only stops at the first invalid key; --all-keys checks them all".into(),
        );
    }
    Ok(CheckOptions {
        model,
        partition: !args.no_partition,
        time_limit,
        memory_limit: args.memory_limit_mib.saturating_mul(1 << 20),
        initial,
        stop_on_invalid: !args.all_keys,
        threads: args.threads,
        txn_model,
        txn_search,
        fail_reading,
        counterexample: !args.verdict_only,
    })
}

/// Runs `faultline check`; returns the process exit code.
///
/// # Errors
/// Only when results cannot be written into the run directory; bad input is reported on
/// stderr and yields exit code 3.
pub fn run(args: &CheckArgs) -> anyhow::Result<i32> {
    let mut timings = Timings::new(args.timings);
    let opts = match options(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_BAD_INPUT);
        }
    };
    let (file, run_dir) = locate(&args.path);
    if let Some(kind) = streaming(args, &opts, &file) {
        let txn = TxnOptions {
            kind,
            model: opts.txn_model.unwrap_or_default(),
            search: opts.txn_search,
            ..TxnOptions::default()
        };
        let read = std::fs::File::open(&file)
            .map_err(|source| faultline_checker::Error::Io {
                path: file.clone(),
                source,
            })
            .and_then(|f| check_txn_jsonl(std::io::BufReader::with_capacity(1 << 16, f), &txn));
        let checked = match read {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {}", e.with_file(&file));
                return Ok(EXIT_BAD_INPUT);
            }
        };
        timings.phase("read and check (streamed)");
        let results = Results::from_txn(checked.result.clone(), checked.stats.clone());
        write_results(run_dir.as_deref(), &results)?;
        timings.phase("results");
        if args.json {
            println!("{}", serde_json::to_string_pretty(&results)?);
        } else {
            print!("{}", txn_stream_summary(&file, &checked, &results));
        }
        timings.print();
        return Ok(results.valid.exit_code());
    }
    // Plain linearizability histories in JSONL are streamed into compact form; the others
    // (watch lines, queues, leases, transactions, Jepsen workloads, EDN) are read whole.
    let compact = if checker(args) == Checker::Auto && !is_edn_file(&file) {
        let any = opts.model.is_some();
        match read_compact_file(&file, |op| any || is_linearizability_op(op)) {
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(EXIT_BAD_INPUT);
            }
            Ok(c) => c,
        }
    } else {
        None
    };
    let (checked, history) = match compact {
        Some(c) => {
            let counts = HistoryCounts {
                ops: c.events,
                operations: c.ops.len(),
                nemesis: c.nemesis_ops,
            };
            timings.phase("read (streamed into compact form)");
            let checked = check_compact(&c, &opts).map(|r| Results::new(r, c.stats()));
            timings.phase("check");
            (checked, Err(counts))
        }
        None => {
            let history = match read_history(&file) {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(EXIT_BAD_INPUT);
                }
            };
            timings.phase("read");
            let mut checked = check_whole(args, &opts, &history);
            // A run folder's status polls: checked as the run checked them.
            if let Some(dir) = &run_dir {
                checked = checked.map(|r| crate::runner::with_run_status(r, &history, dir));
            }
            timings.phase("check");
            (checked, Ok(history))
        }
    };
    let results = match checked {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}", e.with_file(&file));
            return Ok(EXIT_BAD_INPUT);
        }
    };
    write_results(run_dir.as_deref(), &results)?;
    timings.phase("results");
    let counts = history.as_ref().map_or_else(|c| *c, HistoryCounts::of);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else if let Some(linearizable) = &results.linearizable {
        print!(
            "{}",
            summary(&file, counts, linearizable, run_dir.as_deref())
        );
    } else if let Ok(history) = &history {
        print!("{}", stream_summary(&file, history, &results));
    }
    timings.print();
    Ok(results.valid.exit_code())
}

/// Checks a history read whole with the checker the arguments (or its content) pick.
fn check_whole(
    args: &CheckArgs,
    opts: &CheckOptions,
    history: &History,
) -> Result<Results, faultline_checker::Error> {
    match checker(args) {
        Checker::Watch => Ok(Results::from_watch(check_watch(history), stats(history))),
        Checker::Lease => Ok(Results::from_lease(
            check_lease(history, &LeaseOptions::default()),
            stats(history),
        )),
        Checker::Queue => Ok(Results::from_queue(
            check_queue(
                history,
                &QueueOptions {
                    exactly_once: args.exactly_once,
                },
            ),
            stats(history),
        )),
        Checker::Bank => {
            let bank = BankOptions {
                total: args.total,
                negative_balances_allowed: args.negative_balances,
                ..BankOptions::default()
            };
            Ok(Results::from_bank(
                check_bank(history, &bank),
                stats(history),
            ))
        }
        Checker::Counter => Ok(Results::from_counter(
            check_counter(history, &CounterOptions::default()),
            stats(history),
        )),
        Checker::Set => Ok(Results::from_set(
            check_set(history, &SetOptions::default()),
            stats(history),
        )),
        Checker::SetFull => Ok(Results::from_set_full(
            check_set_full(history, &SetFullOptions::default()),
            stats(history),
        )),
        Checker::LongFork => {
            let long_fork = LongForkOptions {
                group_size: args.group_size,
            };
            Ok(Results::from_long_fork(
                check_long_fork(history, &long_fork),
                stats(history),
            ))
        }
        Checker::Txn(kind) => {
            let txn = TxnOptions {
                kind: Some(kind),
                model: opts.txn_model.unwrap_or_default(),
                search: opts.txn_search,
                ..TxnOptions::default()
            };
            Ok(Results::from_txn(check_txn(history, &txn), stats(history)))
        }
        Checker::Auto if opts.model.is_some() => {
            check(history, opts).map(|r| Results::new(r, stats(history)))
        }
        Checker::Auto => check_history(history, opts),
    }
}

/// What the summary's first line counts of a history.
#[derive(Debug, Clone, Copy)]
pub struct HistoryCounts {
    /// Lines (ops), nemesis and watch lines included.
    pub ops: usize,
    /// Client operations.
    pub operations: usize,
    /// Nemesis ops.
    pub nemesis: usize,
}

impl HistoryCounts {
    /// The counts of a history read whole.
    pub fn of(h: &History) -> HistoryCounts {
        HistoryCounts {
            ops: h.ops.len(),
            operations: h.operations.len(),
            nemesis: h.nemesis_ops().count(),
        }
    }
}

/// Streams a JSONL file into compact form; `None` as soon as an op is not one `keep` wants.
fn read_compact_file(
    file: &Path,
    keep: impl FnMut(&faultline_checker::Op) -> bool,
) -> Result<Option<Compact>, faultline_checker::Error> {
    let f = std::fs::File::open(file).map_err(|source| faultline_checker::Error::Io {
        path: file.to_path_buf(),
        source,
    })?;
    read_compact_while(std::io::BufReader::with_capacity(1 << 16, f), keep)
        .map_err(|e| e.with_file(file))
}

/// Whether an op may belong to a history `check_history` checks for linearizability: not a
/// watch line, and a client op only of a linearizability model's functions (no drains,
/// leases, transfers, adds or transactions, which pick other checkers).
fn is_linearizability_op(op: &faultline_checker::Op) -> bool {
    const LINEARIZABILITY: &[&str] = &[
        "read", "r", "write", "w", "cas", "get", "put", "append", "acquire", "release",
    ];
    match op.process {
        faultline_checker::Process::Watch => false,
        faultline_checker::Process::Nemesis => true,
        faultline_checker::Process::Client(_) => LINEARIZABILITY.contains(&op.f.as_str()),
    }
}

/// Writes `results.json` (and `counterexample.svg` when there is one) into the run directory.
/// The run's metrics (`perf`, which `faultline report` added from the history and the status
/// polls, not from the verdict) are kept.
fn write_results(run_dir: Option<&Path>, results: &Results) -> anyhow::Result<()> {
    if let Some(dir) = run_dir {
        let out = dir.join("results.json");
        // A signed run is signed again after the rewrite, unless it no longer verifies.
        let signed = crate::sign::verify_run(dir, None);
        let mut value = serde_json::to_value(results)?;
        let perf = std::fs::read(&out)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|old| old.get("perf").cloned());
        if let (Some(perf), Some(map)) = (perf, value.as_object_mut()) {
            map.insert("perf".into(), perf);
        }
        let text = serde_json::to_string_pretty(&value)?;
        std::fs::write(&out, text + "\n").with_context(|| format!("writing {}", out.display()))?;
        crate::sign::resign_if_verified(dir, &signed);
        if let Some(c) = results
            .linearizable
            .as_ref()
            .and_then(|l| l.counterexample())
        {
            let svg = dir.join("counterexample.svg");
            std::fs::write(&svg, &c.svg).with_context(|| format!("writing {}", svg.display()))?;
        }
    }
    Ok(())
}

/// Whether the file is checked on the streaming path (a JSONL list-append or rw-register
/// history: given with `--model`, or by content: the first client `txn` line among the first
/// lines holds Elle's micro-ops), and with which kind (`None`: inferred).
fn streaming(args: &CheckArgs, opts: &CheckOptions, file: &Path) -> Option<Option<TxnKind>> {
    use std::io::BufRead as _;
    let kind = match checker(args) {
        Checker::Txn(kind) => Some(kind),
        Checker::Auto if opts.model.is_none() => None,
        _ => return None,
    };
    if is_edn_file(file) {
        return None;
    }
    if kind.is_some() {
        return Some(kind);
    }
    let r = std::io::BufReader::new(std::fs::File::open(file).ok()?);
    for line in r.lines().take(1000) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line.ok()?) else {
            continue;
        };
        if v.get("process").is_some_and(serde_json::Value::is_u64)
            && v.get("f").and_then(serde_json::Value::as_str) == Some("txn")
        {
            let elle = v
                .get("value")
                .and_then(serde_json::Value::as_array)
                .is_some_and(|mops| {
                    !mops.is_empty()
                        && mops.iter().all(|m| {
                            m.get(0)
                                .and_then(serde_json::Value::as_str)
                                .is_some_and(|f| matches!(f, "append" | "r" | "w"))
                        })
                });
            return elle.then_some(None);
        }
    }
    None
}

/// The summary of a txn check on the streaming path (as [`stream_summary`], the counts from
/// the stream).
pub fn txn_stream_summary(file: &Path, c: &TxnJsonl, r: &Results) -> String {
    let head = format!(
        "history: {} ({} ops: {} client operations, {} watch lines, {} nemesis ops)\n",
        file.display(),
        c.ops,
        c.operations,
        c.stats.watch_ops,
        c.stats.nemesis_ops
    );
    head + &summary_body(r)
}

/// The summary of a watch or lease check: what was seen, each guarantee, the anomalies.
pub fn stream_summary(file: &Path, history: &History, r: &Results) -> String {
    let head = format!(
        "history: {} ({} ops: {} client operations, {} watch lines, {} nemesis ops)\n",
        file.display(),
        history.ops.len(),
        history.operations.len(),
        history.watch_ops().count(),
        history.nemesis_ops().count()
    );
    head + &summary_body(r)
}

/// Everything of [`stream_summary`] after its first line.
fn summary_body(r: &Results) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if let Some(w) = &r.watch {
        let c = &w.counts;
        let _ = writeln!(
            s,
            "watch: {} watchers, {} streams ({} resumed), {} responses, {} events, {} progress notifications",
            c.watchers, c.streams, c.resumes, c.responses, c.events, c.progress_notifications
        );
        for g in &w.guarantees {
            let _ = writeln!(
                s,
                "  {:<13} {:>6} violations  ({} streams, {} events checked)",
                g.name.name(),
                g.violations,
                g.streams,
                g.events
            );
        }
        if let Some(reason) = &w.reason {
            let _ = writeln!(s, "  {reason}");
        }
    }
    if let Some(q) = &r.queue {
        let c = &q.counts;
        let _ = writeln!(
            s,
            "queue: {} publishes attempted, {} acknowledged, {} failed, {} indeterminate; {} drains read {} distinct values",
            c.attempted, c.acknowledged, c.failed, c.indeterminate, c.drains, c.read
        );
        let _ = writeln!(
            s,
            "  lost {} (prefix {}, middle {}, postfix {}), unexpected {}, failed but read {}, recovered {}, duplicated {}{}",
            c.lost,
            c.lost_prefix,
            c.lost_middle,
            c.lost_postfix,
            c.unexpected,
            c.failed_but_read,
            c.recovered,
            c.duplicated,
            if q.exactly_once {
                " (exactly-once)"
            } else {
                ""
            }
        );
        if let Some(reason) = &q.reason {
            let _ = writeln!(s, "  {reason}");
        }
    }
    if let Some(l) = &r.lease {
        let c = &l.counts;
        let _ = writeln!(
            s,
            "lease: {} leases, {} grants, {} keepalives acknowledged, {} observations",
            c.leases, c.grants, c.keepalives_ok, c.observations
        );
        if let Some(reason) = &l.reason {
            let _ = writeln!(s, "  {reason}");
        }
    }
    if let Some(t) = &r.txn {
        let c = &t.counts;
        let _ = writeln!(
            s,
            "txn: {}, model {}: {} ok, {} failed, {} indeterminate txns over {} keys; {} edges, {} \
             cycle components (largest {}); {:.1} ms",
            t.kind.name(),
            t.model,
            c.ok,
            c.fail,
            c.info,
            c.keys,
            c.edges,
            c.sccs,
            c.largest_scc,
            t.infer_ms + t.search_ms
        );
        if let Some(reason) = &t.reason {
            let _ = writeln!(s, "  {reason}");
        }
    }
    let jepsen = [
        r.bank.as_ref().map(|x| ("bank", x.reason.as_ref())),
        r.set.as_ref().map(|x| ("set", x.reason.as_ref())),
        r.set_full.as_ref().map(|x| ("set-full", x.reason.as_ref())),
        r.counter.as_ref().map(|x| ("counter", x.reason.as_ref())),
        r.long_fork
            .as_ref()
            .map(|x| ("long-fork", x.reason.as_ref())),
    ];
    for (name, reason) in jepsen.into_iter().flatten() {
        let _ = writeln!(s, "checker: {name} (Jepsen's)");
        if let Some(reason) = reason {
            let _ = writeln!(s, "  {reason}");
        }
    }
    for line in r.anomaly_lines() {
        let _ = writeln!(s, "anomaly: {line}");
    }
    let _ = writeln!(s, "{}", r.valid.as_str().to_uppercase());
    s
}

/// Most non-valid keys listed one by one in the summary.
const MAX_KEYS_LISTED: usize = 20;

/// The human-readable summary `faultline check` prints.
pub fn summary(
    file: &Path,
    history: HistoryCounts,
    r: &CheckResult,
    run_dir: Option<&Path>,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "history: {} ({} ops: {} client operations, {} nemesis ops)",
        file.display(),
        history.ops,
        history.operations,
        history.nemesis
    );
    for w in &r.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    let (v, u, i) = r.key_counts();
    let how = if r.partitioned && r.keys.iter().any(|k| k.key.is_some()) {
        format!(
            "per key ({} key{}: {v} valid, {u} unknown, {i} invalid)",
            r.keys.len(),
            if r.keys.len() == 1 { "" } else { "s" }
        )
    } else if r.partitioned {
        "one register".to_string()
    } else {
        "all keys in one state".to_string()
    };
    let _ = writeln!(s, "model: {}, {how}", r.model);
    if r.observed_fails > 0 {
        let _ = writeln!(
            s,
            "failed operations: {} checked as observations (a CAS refused on comparison: the value was not its `from`), the others dropped (--fail-reading {})",
            r.observed_fails,
            r.fail_reading.name()
        );
    }
    let _ = writeln!(
        s,
        "verdict: {} ({:.1} ms)",
        r.valid.as_str().to_uppercase(),
        r.elapsed_ms
    );
    if let Some(reason) = r.reason.as_ref().filter(|_| r.valid == Validity::Unknown) {
        let _ = writeln!(s, "reason: {reason}");
    }
    let stopped = |k: &&faultline_checker::KeyResult| {
        k.valid == Validity::Unknown
            && k.reason
                .as_deref()
                .is_some_and(|r| r.starts_with("not checked to the end"))
    };
    let listed: Vec<_> = r
        .keys
        .iter()
        .filter(|k| k.valid != Validity::Valid && !stopped(k))
        .collect();
    if r.keys.len() > 1 {
        for k in listed.iter().take(MAX_KEYS_LISTED) {
            let _ = writeln!(
                s,
                "  key {:?}: {} ({} operations){}",
                k.key.as_deref().unwrap_or(""),
                k.valid,
                k.ops,
                k.reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
        }
        if listed.len() > MAX_KEYS_LISTED {
            let _ = writeln!(s, "  ... and {} more", listed.len() - MAX_KEYS_LISTED);
        }
        let n = r.keys.iter().filter(stopped).count();
        if n > 0 {
            let _ = writeln!(
                s,
                "  {n} keys not checked to the end after the first invalid key (--all-keys checks them)"
            );
        }
    }
    if let Some(c) = r.counterexample() {
        let _ = writeln!(s, "counterexample: {}", c.message);
        let _ = writeln!(
            s,
            "  failing op: process {} {} (invoked line {}{})",
            c.op.process,
            c.op.label(),
            c.op.invoke_line,
            c.op.complete_line
                .map(|l| format!(", completed line {l}"))
                .unwrap_or_default()
        );
        for o in c.concurrent.iter().take(10) {
            let _ = writeln!(
                s,
                "  concurrent: process {} {} (line {})",
                o.process,
                o.label(),
                o.invoke_line
            );
        }
        if c.concurrent.len() > 10 {
            let _ = writeln!(s, "  ... and {} more concurrent", c.concurrent.len() - 10);
        }
        let _ = writeln!(s, "  linearized before it: {} operations", c.prefix_length);
        let states: Vec<String> = c
            .states_before
            .iter()
            .take(8)
            .map(|v| short(&v.to_string()))
            .collect();
        let _ = writeln!(
            s,
            "  states just before: {}{}{}",
            states.join(", "),
            if c.states_before.len() > 8 {
                format!(", ... ({} in all)", c.states_before.len())
            } else {
                String::new()
            },
            if c.states_complete {
                ""
            } else {
                " (not exhaustive)"
            }
        );
    }
    if let Some(dir) = run_dir {
        let _ = writeln!(s, "wrote {}", dir.join("results.json").display());
        if r.valid == Validity::Invalid {
            let _ = writeln!(s, "wrote {}", dir.join("counterexample.svg").display());
        }
    }
    s
}

fn short(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(57).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(path: &Path) -> CheckArgs {
        CheckArgs {
            path: path.to_path_buf(),
            model: None,
            negative_balances: false,
            total: None,
            group_size: None,
            consistency_model: None,
            search_model: None,
            time_limit: None,
            memory_limit_mib: 1024,
            no_partition: false,
            exactly_once: false,
            initial: None,
            all_keys: false,
            fail_reading: "recorded".into(),
            verdict_only: false,
            threads: Some(1),
            json: false,
            timings: false,
        }
    }

    fn write_run(lines: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("history.jsonl"), lines.join("\n") + "\n").unwrap();
        dir
    }

    #[test]
    #[rustfmt::skip]
    fn invalid_run_dir_exits_1_and_writes_results_and_svg() {
        let dir = write_run(&[
            r#"{"index":0,"time":1,"process":1,"type":"invoke","f":"write","key":"a","value":1}"#,
            r#"{"index":1,"time":2,"process":1,"type":"ok","f":"write","key":"a","value":1}"#,
            r#"{"index":2,"time":3,"process":2,"type":"invoke","f":"read","key":"a","value":null}"#,
            r#"{"index":3,"time":4,"process":2,"type":"ok","f":"read","key":"a","value":2}"#,
        ]);
        assert_eq!(run(&args(dir.path())).unwrap(), 1);
        let results: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap()).unwrap();
        assert_eq!(results["valid"], "invalid");
        assert_eq!(results["linearizable"]["keys"][0]["key"], "a");
        assert!(std::fs::read_to_string(dir.path().join("counterexample.svg")).unwrap().starts_with("<svg"));
    }

    #[test]
    #[rustfmt::skip]
    fn checking_a_run_dir_again_keeps_the_metrics_the_report_added() {
        let dir = write_run(&[
            r#"{"index":0,"time":1,"process":1,"type":"invoke","f":"write","key":"a","value":1}"#,
            r#"{"index":1,"time":2,"process":1,"type":"ok","f":"write","key":"a","value":1}"#,
        ]);
        std::fs::write(
            dir.path().join("results.json"),
            r#"{"valid":"unknown","perf":{"summary":{"availability":0.5}}}"#,
        )
        .unwrap();
        assert_eq!(run(&args(dir.path())).unwrap(), 0);
        let r = results(dir.path());
        assert_eq!(r["valid"], "valid");
        assert_eq!(r["perf"]["summary"]["availability"], 0.5);
    }

    /// A CAS refused with `cas-mismatch` while the register held its `from` (issue 25).
    #[rustfmt::skip]
    const REFUSED_CAS: [&str; 4] = [
        r#"{"index":0,"time":1,"process":1,"type":"invoke","f":"write","key":"a","value":1}"#,
        r#"{"index":1,"time":2,"process":1,"type":"ok","f":"write","key":"a","value":1}"#,
        r#"{"index":2,"time":3,"process":2,"type":"invoke","f":"cas","key":"a","value":[1,2]}"#,
        r#"{"index":3,"time":4,"process":2,"type":"fail","f":"cas","key":"a","value":[1,2],"error":"cas-mismatch"}"#,
    ];

    fn results(dir: &Path) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap()
    }

    #[test]
    fn a_refused_cas_is_evidence_unless_fails_are_read_as_knossos_reads_them() {
        let dir = write_run(&REFUSED_CAS);
        assert_eq!(run(&args(dir.path())).unwrap(), 1);
        let r = results(dir.path());
        assert_eq!(r["linearizable"]["observed_fails"], 1);
        assert_eq!(r["linearizable"]["fail_reading"], "recorded");
        assert_eq!(
            r["linearizable"]["keys"][0]["counterexample"]["op"]["error"],
            "cas-mismatch"
        );
        assert!(dir.path().join("counterexample.svg").exists());
        let knossos = CheckArgs {
            fail_reading: "knossos".into(),
            ..args(dir.path())
        };
        assert_eq!(run(&knossos).unwrap(), 0);
        assert_eq!(results(dir.path())["linearizable"]["observed_fails"], 0);
        let bad = CheckArgs {
            fail_reading: "jepsen".into(),
            ..args(dir.path())
        };
        assert_eq!(run(&bad).unwrap(), EXIT_BAD_INPUT);
    }

    #[test]
    fn verdict_only_writes_no_counterexample() {
        let dir = write_run(&REFUSED_CAS);
        let quick = CheckArgs {
            verdict_only: true,
            ..args(dir.path())
        };
        assert_eq!(run(&quick).unwrap(), 1);
        assert!(results(dir.path())["linearizable"]["keys"][0]["counterexample"].is_null());
        assert!(!dir.path().join("counterexample.svg").exists());
    }

    #[test]
    fn the_streaming_path_and_the_whole_history_path_agree() {
        // A history that stays on the streaming path (registers) and one that leaves it (a
        // watch line sends it to the watch checker, which needs the whole history).
        let dir = write_run(&REFUSED_CAS);
        let file = dir.path().join("history.jsonl");
        let c = read_compact_file(&file, is_linearizability_op)
            .unwrap()
            .expect("a register history stays on the streaming path");
        let whole = check(
            &read_history(&file).unwrap(),
            &options(&args(&file)).unwrap(),
        )
        .unwrap();
        let streamed = check_compact(&c, &options(&args(&file)).unwrap()).unwrap();
        assert_eq!((whole.valid, whole.ops), (streamed.valid, streamed.ops));
        assert_eq!(whole.observed_fails, streamed.observed_fails);
        let message = |r: &CheckResult| r.counterexample().map(|c| c.message.clone());
        assert_eq!(message(&whole), message(&streamed));
        assert!(message(&whole).is_some());
        let watched = write_run(&[
            REFUSED_CAS[0],
            r#"{"index":1,"time":2,"process":"watch","type":"info","f":"watch-events","node":"n1","value":{"watcher":"w1","stream":1,"revision":5,"events":[]}}"#,
        ]);
        let c = read_compact_file(&watched.path().join("history.jsonl"), is_linearizability_op);
        assert!(
            c.unwrap().is_none(),
            "a watch line leaves the streaming path"
        );
    }

    #[test]
    fn valid_history_file_exits_0() {
        let dir = write_run(&[
            r#"{"index":0,"process":1,"type":"invoke","f":"write","value":1}"#,
            r#"{"index":1,"process":1,"type":"ok","f":"write","value":1}"#,
            r#"{"index":2,"process":1,"type":"invoke","f":"read","value":null}"#,
            r#"{"index":3,"process":1,"type":"ok","f":"read","value":1}"#,
        ]);
        assert_eq!(run(&args(&dir.path().join("history.jsonl"))).unwrap(), 0);
        assert!(
            !dir.path().join("results.json").exists(),
            "only a run dir gets results.json"
        );
    }

    /// Write skew: allowed by snapshot isolation, not by serializability.
    #[rustfmt::skip]
    const WRITE_SKEW: [&str; 4] = [
        r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"txn","value":[["r",1,null],["r",2,null],["append",1,1]]}"#,
        r#"{"index":1,"time":2,"process":1,"type":"invoke","f":"txn","value":[["r",1,null],["r",2,null],["append",2,1]]}"#,
        r#"{"index":2,"time":3,"process":0,"type":"ok","f":"txn","value":[["r",1,[]],["r",2,[]],["append",1,1]]}"#,
        r#"{"index":3,"time":4,"process":1,"type":"ok","f":"txn","value":[["r",1,[]],["r",2,[]],["append",2,1]]}"#,
    ];

    #[test]
    fn txn_histories_are_checked_against_the_consistency_model() {
        let dir = write_run(&WRITE_SKEW);
        // By content, strict serializable: invalid, G2-item in results.json.
        assert_eq!(run(&args(dir.path())).unwrap(), 1);
        let results: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("results.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(results["txn"]["anomalies"]["G2-item"], 1);
        assert_eq!(results["txn"]["not"][0], "repeatable-read");
        let mut a = args(dir.path());
        a.consistency_model = Some("snapshot-isolation".into());
        assert_eq!(run(&a).unwrap(), 0);
        a.model = Some("list-append-txn".into());
        assert_eq!(run(&a).unwrap(), 0);
        a.consistency_model = Some("serializable".into());
        assert_eq!(run(&a).unwrap(), 1);
        a.consistency_model = Some("linearizable".into());
        assert_eq!(run(&a).unwrap(), EXIT_BAD_INPUT);
        let mut a = args(dir.path());
        a.model = Some("cas-register".into());
        a.consistency_model = Some("serializable".into());
        assert_eq!(run(&a).unwrap(), EXIT_BAD_INPUT);
        let history = read_history(&dir.path().join("history.jsonl")).unwrap();
        let r = check_history(&history, &CheckOptions::default()).unwrap();
        let text = stream_summary(Path::new("h"), &history, &r);
        assert!(
            text.contains("txn: list-append, model strict-serializable: 2 ok"),
            "{text}"
        );
        assert!(text.contains("anomaly: txn G2-item: 1 case"), "{text}");
        assert!(text.contains("anomaly: txn: not repeatable-read"), "{text}");
    }

    #[test]
    fn jsonl_txn_histories_take_the_streaming_path_with_the_same_results() {
        let dir = write_run(&WRITE_SKEW);
        let file = dir.path().join("history.jsonl");
        let opts = CheckOptions::default();
        assert_eq!(streaming(&args(dir.path()), &opts, &file), Some(None));
        let mut a = args(dir.path());
        a.model = Some("rw-register".into());
        assert_eq!(streaming(&a, &opts, &file), Some(Some(TxnKind::RwRegister)));
        a.model = Some("cas-register".into());
        assert_eq!(streaming(&a, &options(&a).unwrap(), &file), None);
        let regs = write_run(&[r#"{"index":0,"process":1,"type":"invoke","f":"write","value":1}"#]);
        let f = regs.path().join("history.jsonl");
        assert_eq!(streaming(&args(regs.path()), &opts, &f), None);
        let multi =
            write_run(&[r#"{"process":1,"type":"invoke","f":"txn","value":[["read","x",null]]}"#]);
        let f = multi.path().join("history.jsonl");
        assert_eq!(
            streaming(&args(multi.path()), &opts, &f),
            None,
            "Knossos multi-register"
        );

        // The same results.json and summary as the History path (times aside).
        assert_eq!(run(&args(dir.path())).unwrap(), 1);
        let mut streamed: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("results.json")).unwrap(),
        )
        .unwrap();
        let history = read_history(&file).unwrap();
        let r = check_history(&history, &opts).unwrap();
        let mut whole = serde_json::to_value(&r).unwrap();
        for v in [&mut streamed, &mut whole] {
            let t = v["txn"].as_object_mut().unwrap();
            t.remove("infer_ms");
            t.remove("search_ms");
        }
        assert_eq!(streamed, whole);
        let c = check_txn_jsonl(
            std::io::BufReader::new(std::fs::File::open(&file).unwrap()),
            &TxnOptions::default(),
        )
        .unwrap();
        let rs = Results::from_txn(c.result.clone(), c.stats.clone());
        let no_ms = |t: String| {
            t.lines()
                .map(|l| {
                    l.rsplit_once("; ")
                        .filter(|x| x.1.ends_with(" ms"))
                        .map_or(l, |x| x.0)
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            no_ms(txn_stream_summary(&file, &c, &rs)),
            no_ms(stream_summary(&file, &history, &r))
        );

        // Bad input names the file and line.
        let bad = write_run(&[WRITE_SKEW[0], WRITE_SKEW[2], WRITE_SKEW[2]]);
        assert_eq!(run(&args(bad.path())).unwrap(), EXIT_BAD_INPUT);
    }

    #[test]
    fn malformed_history_exits_3() {
        let dir = write_run(&[
            r#"{"index":0,"process":1,"type":"invoke","f":"write","value":1}"#,
            r#"{"index":1,"process":1,"type":"done","f":"write","value":1}"#,
            r#"{"index":2,"process":1,"type":"invoke","f":"read","value":null}"#,
        ]);
        assert_eq!(run(&args(dir.path())).unwrap(), EXIT_BAD_INPUT);
        let mut a = args(dir.path());
        a.model = Some("nope".into());
        assert_eq!(run(&a).unwrap(), EXIT_BAD_INPUT);
    }

    /// Two acknowledged publishes of writer 0, a drain that read only the second and read it
    /// twice: the first is lost (prefix), the second duplicated.
    #[rustfmt::skip]
    const QUEUE: [&str; 6] = [
        r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"publish","value":{"writer":0,"n":0},"node":"n1"}"#,
        r#"{"index":1,"time":2,"process":0,"type":"ok","f":"publish","value":{"writer":0,"n":0,"seq":1},"node":"n1"}"#,
        r#"{"index":2,"time":3,"process":0,"type":"invoke","f":"publish","value":{"writer":0,"n":1},"node":"n1"}"#,
        r#"{"index":3,"time":4,"process":0,"type":"ok","f":"publish","value":{"writer":0,"n":1,"seq":2},"node":"n1"}"#,
        r#"{"index":4,"time":5,"process":0,"type":"invoke","f":"drain","value":null,"node":"n1"}"#,
        r#"{"index":5,"time":6,"process":0,"type":"ok","f":"drain","value":[{"writer":0,"n":1,"seq":2},{"writer":0,"n":1,"seq":2}],"node":"n1"}"#,
    ];

    #[test]
    fn queue_history_is_checked_by_the_queue_checker_and_summarized() {
        let dir = write_run(&QUEUE);
        let mut a = args(dir.path());
        a.model = Some("queue".into());
        assert_eq!(run(&a).unwrap(), 1);
        let results: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("results.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(results["queue"]["counts"]["lost"], 1);
        assert_eq!(results["queue"]["counts"]["lost_prefix"], 1);
        assert_eq!(results["queue"]["counts"]["duplicated"], 1);
        let history = read_history(&dir.path().join("history.jsonl")).unwrap();
        let r = Results::from_queue(
            check_queue(&history, &QueueOptions::default()),
            stats(&history),
        );
        let text = stream_summary(Path::new("h.jsonl"), &history, &r);
        assert!(
            text.contains("2 acknowledged")
                && text.contains("lost 1 (prefix 1, middle 0, postfix 0)"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("INVALID"), "{text}");
    }

    #[test]
    fn exactly_once_makes_a_duplicate_invalid_and_needs_the_queue_model() {
        // Without the lost value: the duplicate alone.
        let lines = [QUEUE[2], QUEUE[3], QUEUE[4], QUEUE[5]];
        let dir = write_run(&lines);
        assert_eq!(
            run(&args(dir.path())).unwrap(),
            0,
            "at-least-once by default"
        );
        let mut a = args(dir.path());
        a.exactly_once = true;
        assert_eq!(run(&a).unwrap(), 1);
        a.model = Some("cas-register".into());
        assert!(options(&a).is_err());
    }

    #[test]
    fn time_limit_must_be_positive() {
        let mut a = args(Path::new("."));
        a.time_limit = Some(-1.0);
        assert!(options(&a).is_err());
    }
}
