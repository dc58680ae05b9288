//! The exec client: a system under test reached through a program the user writes, in any
//! language, that speaks a line protocol on its stdin and stdout (`docs/exec-protocol.md`).
//!
//! One program runs per handle (the runner clones one handle per worker; a clone starts its own
//! program on first use). Each operation is one JSON line out and one JSON line back, one at a
//! time. The program says `ok`, `fail` or `info`; whatever the harness cannot read as the answer
//! to the request it sent (no answer in time, an exit, another id, a line that is not an answer)
//! is `info`, because the program may have acted on the request, and the program is killed so
//! that no late answer can be taken for the next request's. This module never turns a doubt
//! into `fail`: a `fail` is the program's own word, or a program that could not be started
//! (nothing was sent).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Mutex;

use super::{Completion, Status};
use crate::generator::{F, Op};

/// The longest answer line read; a longer one is malformed (raftkv's largest body, too).
const MAX_LINE: u64 = 16 << 20;

/// How much of a malformed answer line a reason quotes.
const QUOTE_CHARS: usize = 80;

/// How long a killed program is given to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(2);

/// How long a program that closed its stdout mid-operation is given to exit, so the reason can
/// name its exit status.
const EXIT_WAIT: Duration = Duration::from_millis(500);

/// Extra time a program gets for its first answer: its start-up (an interpreter loading, a JVM
/// warming) is not the system's latency. Without it, many clients starting at once on a busy
/// machine time out, are replaced, and start again, and none ever answers.
pub const STARTUP_GRACE: Duration = Duration::from_secs(10);

/// What every handle of one client shares.
struct Config {
    command: Vec<String>,
    cwd: PathBuf,
    timeout: Duration,
    log: Option<PathBuf>,
}

/// A client that runs a program and speaks the exec protocol with it.
///
/// A clone shares the command, timeout and log but runs its own program, started on its first
/// operation: the runner clones one client per worker, and each worker is one Jepsen process.
pub struct ExecClient {
    config: Arc<Config>,
    state: Mutex<State>,
}

impl Clone for ExecClient {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            state: Mutex::new(State::default()),
        }
    }
}

#[derive(Default)]
struct State {
    program: Option<Program>,
    /// The id of the last request this handle sent; ids keep rising across restarts, so a
    /// request's id names it in the whole log.
    last_id: u64,
}

/// One running program.
struct Program {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// A request was written and its answer not yet read: set while an operation is under way,
    /// so an operation abandoned midway (its future dropped) leaves a program that is replaced
    /// rather than one whose stale answer the next request would read.
    busy: bool,
    /// It has answered once: its start-up is over, and [`STARTUP_GRACE`] no longer applies.
    answered: bool,
}

impl Drop for Program {
    fn drop(&mut self) {
        // kill_on_drop reaches only the program itself; a wrapper's children go with the group.
        kill_group(&self.child);
    }
}

/// Kills the program's process group (it leads its own) while the program is not yet reaped,
/// so the group id cannot belong to anyone else.
fn kill_group(child: &Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) takes no pointers; a negative pid names the group the program leads.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// One request line (fields in this order: `id`, `f`, `key`, `value`).
#[derive(Serialize)]
struct Request<'a> {
    id: u64,
    f: &'a str,
    key: &'a str,
    value: Value,
}

/// A well-formed answer to the request sent.
#[derive(Debug, PartialEq)]
enum Answer {
    /// `type: ok`, with `value` if the answer had one.
    Ok(Option<Value>),
    /// `type: fail`, with `error`.
    Fail(String),
    /// `type: info`, with `error`.
    Info(String),
}

/// Why no line came back.
enum Broken {
    Write(std::io::Error),
    Read(std::io::Error),
    /// stdout closed (the program exited, or closed it) before a whole line.
    Eof,
    TooLong,
}

impl ExecClient {
    /// A client that runs `command` (program and arguments, templates already expanded) in
    /// `cwd`, waits `timeout` for each answer, and appends the program's stderr to `log`
    /// (discarded when `None`). Nothing starts until the first operation.
    pub fn new(
        command: Vec<String>,
        cwd: PathBuf,
        timeout: Duration,
        log: Option<PathBuf>,
    ) -> Self {
        Self {
            config: Arc::new(Config {
                command,
                cwd,
                timeout,
                log,
            }),
            state: Mutex::new(State::default()),
        }
    }

    /// Exec clients have no status: a target file's `[ready]` and `[leader]` probes stand in.
    ///
    /// # Errors
    /// Always.
    pub async fn status(&self) -> Result<Status, String> {
        Err(
            "an exec client has no status (the target's [ready] and [leader] probes stand in)"
                .into(),
        )
    }

    /// Invokes one operation: one request line to the program, one answer line back.
    pub async fn invoke(&self, op: &Op) -> Completion {
        let f = match op.f {
            F::Read => "read",
            F::Write => "write",
            F::Cas => "cas",
            F::Append => "append",
            F::Txn => "txn",
            F::Transfer | F::BankRead => {
                return Completion::Fail(format!(
                    "{} is not in the exec protocol",
                    if op.f == F::Transfer {
                        "transfer"
                    } else {
                        "a bank read"
                    }
                ));
            }
        };
        let mut state = self.state.lock().await;
        state.last_id += 1;
        let id = state.last_id;
        let value = if op.f == F::Txn {
            txn_request(&op.value)
        } else {
            op.value.clone()
        };
        let mut line = serde_json::to_string(&Request {
            id,
            f,
            key: &op.key,
            value,
        })
        .expect("a request serializes");
        line.push('\n');

        // A program that exited between operations, or whose last request was abandoned, is
        // replaced before anything is sent: no operation is lost to it.
        if let Some(program) = &mut state.program {
            let stale = if program.busy {
                Some("its last request was abandoned".to_string())
            } else {
                match program.child.try_wait() {
                    Ok(None) => None,
                    Ok(Some(status)) => Some(format!("it exited ({status}) between operations")),
                    Err(e) => Some(format!("its state is unknown: {e}")),
                }
            };
            if let Some(why) = stale {
                let program = state.program.take().expect("checked above");
                self.retire(program, &format!("replaced: {why}")).await;
            }
        }
        if state.program.is_none() {
            match self.start() {
                Ok(p) => state.program = Some(p),
                Err(e) => return Completion::Fail(e),
            }
        }
        let program = state.program.as_mut().expect("started above");
        program.busy = true;
        let limit = if program.answered {
            self.config.timeout
        } else {
            self.config.timeout + STARTUP_GRACE
        };
        let exchanged = tokio::time::timeout(limit, program.exchange(&line)).await;
        let answer = match exchanged {
            Err(_) => Err(format!("timeout after {limit:?}")),
            Ok(Ok(answer)) => read_answer(&answer, id),
            Ok(Err(Broken::Eof)) => {
                // Name the exit when the program is exiting; one that only closed stdout is killed.
                let exited = tokio::time::timeout(EXIT_WAIT, program.child.wait()).await;
                Err(match exited {
                    Ok(Ok(status)) => format!("the client exited ({status}) before answering"),
                    _ => "the client closed its stdout before answering".into(),
                })
            }
            Ok(Err(Broken::Write(e))) => Err(format!("cannot write the request: {e}")),
            Ok(Err(Broken::Read(e))) => Err(format!("cannot read the answer: {e}")),
            Ok(Err(Broken::TooLong)) => Err(format!("an answer line over {MAX_LINE} bytes")),
        };
        match answer {
            Ok(answer) => {
                program.busy = false;
                program.answered = true;
                complete(op, answer)
            }
            Err(reason) => {
                let program = state.program.take().expect("started above");
                self.retire(program, &reason).await;
                Completion::Info(reason)
            }
        }
    }

    /// Starts the program: its own process group, stdin and stdout piped, stderr appended to
    /// the log.
    fn start(&self) -> Result<Program, String> {
        let Some((program, args)) = self.config.command.split_first() else {
            return Err("the exec client command is empty".into());
        };
        let stderr = match &self.config.log {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("cannot open the client log {}: {e}", path.display()))?;
                Stdio::from(file)
            }
            None => Stdio::null(),
        };
        let mut child = Command::new(program)
            .args(args)
            .current_dir(&self.config.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start the exec client {program:?} in {}: {e}",
                    self.config.cwd.display()
                )
            })?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let pid = child.id().unwrap_or_default();
        self.note(&format!(
            "started pid {pid}: {}",
            self.config.command.join(" ")
        ));
        Ok(Program {
            child,
            stdin,
            stdout,
            busy: false,
            answered: false,
        })
    }

    /// Kills and reaps a program, noting why in the log.
    async fn retire(&self, mut program: Program, why: &str) {
        let pid = program.child.id().unwrap_or_default();
        kill_group(&program.child);
        let _ = program.child.start_kill();
        let status = tokio::time::timeout(REAP_WAIT, program.child.wait())
            .await
            .ok()
            .and_then(Result::ok);
        let mut note = format!("stopped pid {pid}: {why}");
        if let Some(status) = status {
            let _ = write!(note, " ({status})");
        }
        self.note(&note);
    }

    /// Appends one line of the harness's own to the client log, if there is one.
    fn note(&self, text: &str) {
        if let Some(path) = &self.config.log
            && let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(path)
        {
            let _ = writeln!(f, "[faultline] {text}");
        }
    }
}

impl Program {
    /// Writes one request line and reads one line back (the newline included).
    async fn exchange(&mut self, line: &str) -> Result<Vec<u8>, Broken> {
        self.stdin
            .write_all(line.as_bytes())
            .await
            .map_err(Broken::Write)?;
        self.stdin.flush().await.map_err(Broken::Write)?;
        let mut buf = Vec::new();
        (&mut self.stdout)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(Broken::Read)?;
        if buf.ends_with(b"\n") {
            Ok(buf)
        } else if buf.len() as u64 >= MAX_LINE {
            Err(Broken::TooLong)
        } else {
            Err(Broken::Eof)
        }
    }
}

/// Reads an answer line as the answer to request `id`; the reason it is not one otherwise.
fn read_answer(line: &[u8], id: u64) -> Result<Answer, String> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\n', '\r']);
    let malformed = || format!("malformed answer {}", quote(text));
    let answer: Value = serde_json::from_str(text).map_err(|_| malformed())?;
    let Some(fields) = answer.as_object() else {
        return Err(malformed());
    };
    let Some(got) = fields.get("id").and_then(Value::as_u64) else {
        return Err(malformed());
    };
    if got != id {
        return Err(format!("an answer with id {got} to request {id}"));
    }
    let error = |default: &str| match fields.get("error") {
        None | Some(Value::Null) => default.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    match fields.get("type").and_then(Value::as_str) {
        Some("ok") => Ok(Answer::Ok(fields.get("value").cloned())),
        Some("fail") => Ok(Answer::Fail(error("fail"))),
        Some("info") => Ok(Answer::Info(error("info"))),
        _ => Err(malformed()),
    }
}

/// A line quoted for a reason, cut to [`QUOTE_CHARS`] characters.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// Elle's micro-ops with every key a string (`3` goes out as `"3"`), as the protocol promises.
fn txn_request(mops: &Value) -> Value {
    let ops = mops.as_array().map(Vec::as_slice).unwrap_or_default();
    Value::Array(
        ops.iter()
            .map(|m| json!([m[0], wire_key(&m[1]), m[2]]))
            .collect(),
    )
}

fn wire_key(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        k => k.to_string(),
    }
}

/// The completion of an operation the program answered.
fn complete(op: &Op, answer: Answer) -> Completion {
    match answer {
        Answer::Fail(e) => Completion::Fail(e),
        Answer::Info(e) => Completion::Info(e),
        Answer::Ok(value) => match op.f {
            F::Read => match value {
                Some(v) => Completion::Ok(v),
                None => Completion::Info("an ok read without a value".into()),
            },
            F::Txn => txn_completed(&op.value, value.as_ref()),
            _ => Completion::Ok(op.value.clone()),
        },
    }
}

/// The invoked micro-ops (Elle's keys kept) with each read's result taken from the answer's
/// micro-op at the same position, which must be the same function on the same key.
fn txn_completed(asked: &Value, answered: Option<&Value>) -> Completion {
    let asked = asked.as_array().map(Vec::as_slice).unwrap_or_default();
    let Some(done) = answered.and_then(Value::as_array) else {
        return Completion::Info(format!(
            "a txn answer without a list of micro-ops: {}",
            answered.unwrap_or(&Value::Null)
        ));
    };
    if asked.len() != done.len() {
        return Completion::Info(format!(
            "a txn of {} micro-ops answered with {}",
            asked.len(),
            done.len()
        ));
    }
    let mut filled = Vec::with_capacity(asked.len());
    for (i, (a, d)) in asked.iter().zip(done).enumerate() {
        let same = d.as_array().is_some_and(|d| d.len() == 3)
            && d[0] == a[0]
            && d[1].as_str() == Some(wire_key(&a[1]).as_str());
        if !same {
            return Completion::Info(format!(
                "txn micro-op {i} answered as {d}, asked {}",
                json!([a[0], wire_key(&a[1]), a[2]])
            ));
        }
        filled.push(if a[0] == "r" {
            json!([a[0], a[1], d[2]])
        } else {
            a.clone()
        });
    }
    Completion::Ok(Value::Array(filled))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;
    use std::time::Instant;

    use super::*;
    use crate::generator::{Generator, GeneratorConfig, Mix, Shape};

    /// A fake client: records every request line exactly as received, keeps an in-memory store,
    /// and misbehaves on request for a few keys.
    const FAKE: &str = r#"
import copy, json, os, sys, time
requests = open(sys.argv[1], "a")
store = {}
sys.stderr.write("fake %d up\n" % os.getpid())
sys.stderr.flush()
for line in sys.stdin:
    requests.write(line)
    requests.flush()
    req = json.loads(line)
    i, f, k, v = req["id"], req["f"], req["key"], req["value"]
    ans = {"id": i, "type": "ok"}
    if k == "hang":
        time.sleep(3600)
    elif k == "exit":
        sys.exit(3)
    elif k == "slow":
        time.sleep(0.5)
    elif k == "garbage":
        print("not json " * 30, flush=True)
        continue
    elif k == "wrong-id":
        ans["id"] = i + 1
    elif k == "info":
        ans = {"id": i, "type": "info", "error": "the node may have it"}
    elif k == "pid":
        ans["value"] = os.getpid()
    elif f == "read":
        ans["value"] = store.get(k)
    elif f == "write":
        store[k] = v
    elif f == "cas":
        if store.get(k) != v[0]:
            ans = {"id": i, "type": "fail", "error": "cas-mismatch"}
        else:
            store[k] = v[1]
    elif f == "append":
        store.setdefault(k, []).append(v)
    elif f == "txn":
        out = []
        for mf, mk, mv in v:
            if mf == "r":
                mv = copy.deepcopy(store.get(mk))  # the value now, not after later appends
            elif mf == "w":
                store[mk] = mv
            else:
                store.setdefault(mk, []).append(mv)
            out.append([mf, mk, mv])
        ans["value"] = out
    print(json.dumps(ans), flush=True)
    if k == "bye":
        sys.exit(0)
"#;

    struct Fake {
        dir: tempfile::TempDir,
    }

    impl Fake {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("fake.py"), FAKE).unwrap();
            Self { dir }
        }

        /// A client running the fake (relative paths: the client's cwd is the fake's folder).
        fn client(&self, timeout: Duration) -> ExecClient {
            ExecClient::new(
                ["python3", "fake.py", "requests.txt"]
                    .map(String::from)
                    .to_vec(),
                self.dir.path().to_path_buf(),
                timeout,
                Some(self.dir.path().join("clients").join("w0.log")),
            )
        }

        fn requests(&self) -> Vec<String> {
            std::fs::read_to_string(self.dir.path().join("requests.txt"))
                .unwrap_or_default()
                .lines()
                .map(String::from)
                .collect()
        }

        fn log(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("clients").join("w0.log"))
                .unwrap_or_default()
        }
    }

    fn op(f: F, key: &str, value: Value) -> Op {
        Op {
            f,
            key: key.into(),
            value,
        }
    }

    /// The pid of the process the client runs now (started if none is).
    async fn pid(client: &ExecClient) -> u64 {
        match client.invoke(&op(F::Read, "pid", Value::Null)).await {
            Completion::Ok(v) => v.as_u64().expect("the fake answers its pid"),
            other => panic!("pid read: {other:?}"),
        }
    }

    /// Whether a process exists, zombies included (a reaped one does not).
    fn exists(pid: u64) -> bool {
        Path::new(&format!("/proc/{pid}")).exists()
    }

    /// Whether a process runs (exists and is not a zombie waiting for whoever adopted it).
    fn alive(pid: u64) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|s| !s.trim_start().starts_with('Z'))
        })
    }

    fn info(c: Completion) -> String {
        match c {
            Completion::Info(reason) => reason,
            other => panic!("expected info, got {other:?}"),
        }
    }

    const SHORT: Duration = Duration::from_secs(1);
    const LONG: Duration = Duration::from_secs(10);

    #[rustfmt::skip]
    #[tokio::test]
    async fn every_function_goes_out_as_one_request_line_and_its_answer_is_mapped() {
        let fake = Fake::new();
        let client = fake.client(LONG);
        let txn = json!([["r", 3, null], ["append", 3, 1], ["w", "k", 2], ["r", 3, null], ["r", "k", null]]);
        let cases: Vec<(Op, Completion, &str)> = vec![
            (op(F::Read, "r1", Value::Null),  Completion::Ok(Value::Null),    r#"{"id":1,"f":"read","key":"r1","value":null}"#),
            (op(F::Write, "r1", json!(5)),    Completion::Ok(json!(5)),       r#"{"id":2,"f":"write","key":"r1","value":5}"#),
            (op(F::Read, "r1", Value::Null),  Completion::Ok(json!(5)),       r#"{"id":3,"f":"read","key":"r1","value":null}"#),
            (op(F::Cas, "r1", json!([5, 7])), Completion::Ok(json!([5, 7])),  r#"{"id":4,"f":"cas","key":"r1","value":[5,7]}"#),
            (op(F::Read, "r1", Value::Null),  Completion::Ok(json!(7)),       r#"{"id":5,"f":"read","key":"r1","value":null}"#),
            (op(F::Append, "r2", json!(9)),   Completion::Ok(json!(9)),       r#"{"id":6,"f":"append","key":"r2","value":9}"#),
            (op(F::Append, "r2", json!(10)),  Completion::Ok(json!(10)),      r#"{"id":7,"f":"append","key":"r2","value":10}"#),
            (op(F::Read, "r2", Value::Null),  Completion::Ok(json!([9, 10])), r#"{"id":8,"f":"read","key":"r2","value":null}"#),
            (op(F::Txn, "", txn),
             Completion::Ok(json!([["r", 3, null], ["append", 3, 1], ["w", "k", 2], ["r", 3, [1]], ["r", "k", 2]])),
             r#"{"id":9,"f":"txn","key":"","value":[["r","3",null],["append","3",1],["w","k",2],["r","3",null],["r","k",null]]}"#),
        ];
        for (op, want, _) in &cases {
            assert_eq!(&client.invoke(op).await, want, "{op:?}");
        }
        let sent: Vec<&str> = cases.iter().map(|c| c.2).collect();
        assert_eq!(fake.requests(), sent);
    }

    #[tokio::test]
    async fn a_cas_mismatch_stays_a_fail_with_its_reason_and_the_process_is_kept() {
        let fake = Fake::new();
        let client = fake.client(LONG);
        let before = pid(&client).await;
        let cas = op(F::Cas, "r1", json!([1, 2]));
        assert_eq!(
            client.invoke(&cas).await,
            Completion::Fail("cas-mismatch".into())
        );
        assert_eq!(pid(&client).await, before);
        // The same store answers: the write is seen by the next cas.
        assert_eq!(
            client.invoke(&op(F::Write, "r1", json!(1))).await,
            Completion::Ok(json!(1))
        );
        assert_eq!(client.invoke(&cas).await, Completion::Ok(json!([1, 2])));
    }

    #[tokio::test]
    async fn an_info_answer_is_passed_through_and_the_process_is_kept() {
        let fake = Fake::new();
        let client = fake.client(LONG);
        let before = pid(&client).await;
        for f in [F::Write, F::Read] {
            assert_eq!(
                client.invoke(&op(f, "info", json!(1))).await,
                Completion::Info("the node may have it".into()),
                "{f:?}"
            );
        }
        assert_eq!(pid(&client).await, before);
    }

    #[tokio::test]
    async fn a_client_that_never_answers_is_a_timeout_and_the_next_op_runs_on_a_new_process() {
        let fake = Fake::new();
        let client = fake.client(SHORT);
        let before = pid(&client).await;
        let started = Instant::now();
        let reason = info(client.invoke(&op(F::Write, "hang", json!(1))).await);
        let took = started.elapsed();
        assert!(reason.starts_with("timeout"), "{reason}");
        assert!(took >= SHORT && took < SHORT * 3, "{took:?}");
        assert!(!exists(before), "pid {before} was not killed and reaped");
        let after = pid(&client).await;
        assert_ne!(after, before);
        let log = fake.log();
        assert!(
            log.contains(&format!("[faultline] stopped pid {before}: timeout")),
            "{log}"
        );
    }

    #[tokio::test]
    async fn a_slow_start_is_not_a_timeout_but_a_slow_answer_after_it_is() {
        let fake = Fake::new();
        // Starts 1.5 s late: longer than the timeout, well within the start-up grace.
        let client = ExecClient::new(
            ["sh", "-c", "sleep 1.5; exec python3 fake.py requests.txt"]
                .map(String::from)
                .to_vec(),
            fake.dir.path().to_path_buf(),
            SHORT,
            None,
        );
        let started = Instant::now();
        let first = pid(&client).await;
        assert!(started.elapsed() >= Duration::from_millis(1500));
        let reason = info(client.invoke(&op(F::Write, "hang", json!(1))).await);
        assert!(reason.starts_with("timeout after 1s"), "{reason}");
        assert!(!exists(first), "pid {first} was not killed and reaped");
    }

    #[tokio::test]
    async fn a_killed_client_takes_its_children_with_it() {
        let fake = Fake::new();
        // `; true` keeps sh from exec'ing: the fake is sh's child, not the harness's.
        let client = ExecClient::new(
            ["sh", "-c", "python3 fake.py requests.txt; true"]
                .map(String::from)
                .to_vec(),
            fake.dir.path().to_path_buf(),
            SHORT,
            None,
        );
        let before = pid(&client).await;
        info(client.invoke(&op(F::Write, "hang", json!(1))).await);
        // The fake is sh's child: dead at once, but reaped by whoever adopts it, so it may
        // linger as a zombie a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(before) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(before), "the fake under sh outlived its client");
        assert_ne!(pid(&client).await, before);
    }

    #[tokio::test]
    async fn a_client_that_exits_mid_operation_is_info_and_replaced() {
        let fake = Fake::new();
        let client = fake.client(LONG);
        let before = pid(&client).await;
        let reason = info(client.invoke(&op(F::Write, "exit", json!(1))).await);
        assert!(reason.contains("exit status: 3"), "{reason}");
        assert!(!exists(before));
        assert_ne!(pid(&client).await, before);
    }

    #[tokio::test]
    async fn a_client_that_exited_between_operations_is_replaced_before_the_next_is_sent() {
        let fake = Fake::new();
        let client = fake.client(LONG);
        let before = pid(&client).await;
        assert_eq!(
            client.invoke(&op(F::Read, "bye", Value::Null)).await,
            Completion::Ok(Value::Null)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Not an info: nothing was sent to the dead process.
        assert_ne!(pid(&client).await, before);
        assert_eq!(fake.requests().len(), 3);
    }

    #[tokio::test]
    async fn a_malformed_line_is_info_quoting_it_shortened() {
        let fake = Fake::new();
        let client = fake.client(LONG);
        let before = pid(&client).await;
        let reason = info(client.invoke(&op(F::Write, "garbage", json!(1))).await);
        assert!(
            reason.starts_with(r#"malformed answer "not json not json"#),
            "{reason}"
        );
        assert!(
            reason.ends_with('…') && reason.chars().count() < 120,
            "{reason}"
        );
        assert!(!exists(before));
        assert_ne!(pid(&client).await, before);
    }

    #[tokio::test]
    async fn an_answer_with_another_id_is_info_and_the_process_replaced() {
        let fake = Fake::new();
        let client = fake.client(LONG);
        let before = pid(&client).await;
        assert_eq!(
            client.invoke(&op(F::Write, "wrong-id", json!(1))).await,
            Completion::Info("an answer with id 3 to request 2".into())
        );
        assert!(!exists(before));
        assert_ne!(pid(&client).await, before);
    }

    #[tokio::test]
    async fn an_abandoned_operation_leaves_no_stale_answer_for_the_next() {
        let fake = Fake::new();
        let client = fake.client(LONG);
        let before = pid(&client).await;
        // The runner drops the operation's future; the fake answers it 0.5 s later.
        let slow = op(F::Write, "slow", json!(1));
        let dropped = tokio::time::timeout(Duration::from_millis(100), client.invoke(&slow));
        assert!(dropped.await.is_err());
        assert_ne!(pid(&client).await, before);
    }

    #[tokio::test]
    async fn a_missing_program_is_a_fail_and_so_is_an_operation_outside_the_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let client = ExecClient::new(
            vec!["faultline-no-such-client".into(), "x".into()],
            dir.path().to_path_buf(),
            LONG,
            None,
        );
        match client.invoke(&op(F::Write, "r1", json!(1))).await {
            Completion::Fail(e) => assert!(
                e.contains("faultline-no-such-client") && e.contains("No such file"),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
        let empty = ExecClient::new(Vec::new(), dir.path().to_path_buf(), LONG, None);
        assert!(matches!(
            empty.invoke(&op(F::Read, "r1", Value::Null)).await,
            Completion::Fail(_)
        ));
        // A bank operation is refused before anything starts: a fake would record it.
        let fake = Fake::new();
        let client = fake.client(LONG);
        let transfer = op(F::Transfer, "", json!({"from": 0, "to": 1, "amount": 1}));
        assert!(matches!(
            client.invoke(&transfer).await,
            Completion::Fail(_)
        ));
        assert!(fake.requests().is_empty() && fake.log().is_empty());
        assert!(client.status().await.is_err());
    }

    #[tokio::test]
    async fn clones_run_their_own_processes_started_on_first_use() {
        let fake = Fake::new();
        let first = fake.client(LONG);
        let second = first.clone();
        let _unused = first.clone();
        assert!(
            fake.log().is_empty(),
            "a process started before any operation"
        );
        let (a, b) = tokio::join!(pid(&first), pid(&second));
        assert_ne!(a, b);
        assert_eq!(pid(&first).await, a);
        // Separate stores: a write through one handle is not read through the other.
        let write = op(F::Write, "r1", json!(4));
        assert_eq!(first.invoke(&write).await, Completion::Ok(json!(4)));
        let read = op(F::Read, "r1", Value::Null);
        assert_eq!(second.invoke(&read).await, Completion::Ok(Value::Null));
        let log = fake.log();
        assert_eq!(log.matches("[faultline] started pid").count(), 2, "{log}");
        for p in [a, b] {
            // The fake's own stderr, and the start of each process, in the log.
            assert!(log.contains(&format!("fake {p} up")), "{log}");
            assert!(
                log.contains(&format!("started pid {p}: python3 fake.py requests.txt")),
                "{log}"
            );
        }
    }

    /// The fake's store as a model: the completions a seeded run must get.
    fn model(store: &mut HashMap<String, Value>, op: &Op) -> Completion {
        let get =
            |store: &HashMap<String, Value>, k: &str| store.get(k).cloned().unwrap_or(Value::Null);
        match op.f {
            F::Read => Completion::Ok(get(store, &op.key)),
            F::Write => {
                store.insert(op.key.clone(), op.value.clone());
                Completion::Ok(op.value.clone())
            }
            F::Cas => {
                if get(store, &op.key) != op.value[0] {
                    return Completion::Fail("cas-mismatch".into());
                }
                store.insert(op.key.clone(), op.value[1].clone());
                Completion::Ok(op.value.clone())
            }
            F::Txn => {
                let mops = op.value.as_array().unwrap();
                let done = mops.iter().map(|m| {
                    let k = wire_key(&m[1]);
                    match m[0].as_str().unwrap() {
                        "r" => json!([m[0], m[1], get(store, &k)]),
                        "w" => {
                            store.insert(k, m[2].clone());
                            m.clone()
                        }
                        _ => {
                            let list = store.entry(k).or_insert_with(|| json!([]));
                            list.as_array_mut().unwrap().push(m[2].clone());
                            m.clone()
                        }
                    }
                });
                Completion::Ok(Value::Array(done.collect()))
            }
            f => panic!("{f:?} is not generated here"),
        }
    }

    #[tokio::test]
    async fn a_seeded_run_of_registers_and_transactions_matches_a_model_of_the_fake() {
        let seed = 18;
        println!("seed {seed}");
        let fake = Fake::new();
        let client = fake.client(LONG);
        let config = |shape| GeneratorConfig {
            mix: Mix::default(),
            active_keys: 3,
            ops_per_key: 40,
            value_range: 3,
            rate: 0.0,
            concurrency: 1,
            shape,
        };
        let shapes = [Shape::Register, Shape::Txn(crate::txn::TxnSpec::default())];
        let mut store = HashMap::new();
        let mut outcomes = HashMap::<&str, usize>::new();
        for shape in shapes {
            let mut generator = Generator::new(config(shape), seed);
            for _ in 0..150 {
                let op = generator.next_op();
                let want = model(&mut store, &op);
                let got = client.invoke(&op).await;
                assert_eq!(got, want, "seed {seed}: {op:?}");
                *outcomes.entry(got.kind()).or_default() += 1;
            }
        }
        // The run exercised both answers the fake gives.
        assert!(
            outcomes["ok"] > 200 && outcomes["fail"] > 10,
            "{outcomes:?}"
        );
        assert_eq!(fake.log().matches("started pid").count(), 1);
    }

    #[rustfmt::skip]
    #[test]
    fn answer_lines_are_read_strictly() {
        let malformed = |line: &str| Err(format!("malformed answer {line:?}"));
        let cases: Vec<(&str, Result<Answer, String>)> = vec![
            (r#"{"id":4,"type":"ok","value":5}"#,              Ok(Answer::Ok(Some(json!(5))))),
            ("{\"id\":4,\"type\":\"ok\",\"value\":[1]}\r",     Ok(Answer::Ok(Some(json!([1]))))),
            (r#"{"id":4,"type":"ok"}"#,                        Ok(Answer::Ok(None))),
            (r#"{"id":4,"type":"fail","error":"cas-mismatch"}"#, Ok(Answer::Fail("cas-mismatch".into()))),
            (r#"{"id":4,"type":"fail"}"#,                      Ok(Answer::Fail("fail".into()))),
            (r#"{"id":4,"type":"info","error":{"code":7}}"#,   Ok(Answer::Info(r#"{"code":7}"#.into()))),
            (r#"{"id":5,"type":"ok"}"#,                        Err("an answer with id 5 to request 4".into())),
            (r#"{"id":4,"type":"maybe"}"#,                     malformed(r#"{"id":4,"type":"maybe"}"#)),
            (r#"{"type":"ok"}"#,                               malformed(r#"{"type":"ok"}"#)),
            (r#"{"id":"4","type":"ok"}"#,                      malformed(r#"{"id":"4","type":"ok"}"#)),
            (r#"[4,"ok"]"#,                                    malformed(r#"[4,"ok"]"#)),
            ("",                                               malformed("")),
        ];
        for (line, want) in cases {
            assert_eq!(read_answer(format!("{line}\n").as_bytes(), 4), want, "{line}");
        }
    }

    #[test]
    fn an_ok_answer_that_does_not_fit_the_operation_is_info() {
        let read = op(F::Read, "r1", Value::Null);
        assert!(matches!(
            complete(&read, Answer::Ok(None)),
            Completion::Info(_)
        ));
        let txn = op(F::Txn, "", json!([["r", 3, null], ["w", 4, 1]]));
        for answered in [
            json!(null),
            json!([["r", "3", 1]]),
            json!([["r", "4", 1], ["w", "4", 1]]),
            json!([["w", "3", 1], ["w", "4", 1]]),
        ] {
            let c = complete(&txn, Answer::Ok(Some(answered.clone())));
            assert!(matches!(c, Completion::Info(_)), "{answered}: {c:?}");
        }
        assert_eq!(
            complete(
                &txn,
                Answer::Ok(Some(json!([["r", "3", [2]], ["w", "4", 1]])))
            ),
            Completion::Ok(json!([["r", 3, [2]], ["w", 4, 1]]))
        );
    }
}
