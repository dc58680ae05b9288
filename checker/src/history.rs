//! The history model: ops as recorded, and the pairing of each invocation with its completion.
//!
//! A [`History`] is built from ops in order of occurrence and is validated on construction: a
//! completion without an invocation, or a second invocation while the process still has one
//! outstanding, is an [`Error::Invalid`] naming the line. This module never interprets values:
//! that is the models' job.

use ahash::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;

/// Who issued an op: a client process (by number), the nemesis, or the watch recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Process {
    /// A client process. After an `info` completion a client continues under a fresh number.
    Client(u64),
    /// The fault injector. Its ops are kept for reports but never checked.
    Nemesis,
    /// The recorder of etcd watch responses (`"process":"watch"`): `info` lines with no
    /// invocation, one per response a watcher received. Only the watch checker reads them;
    /// they are neither client operations nor faults.
    Watch,
}

impl std::fmt::Display for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Process::Client(p) => write!(f, "{p}"),
            Process::Nemesis => f.write_str("nemesis"),
            Process::Watch => f.write_str("watch"),
        }
    }
}

impl Serialize for Process {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Process::Client(p) => s.serialize_u64(*p),
            Process::Nemesis => s.serialize_str("nemesis"),
            Process::Watch => s.serialize_str("watch"),
        }
    }
}

impl<'de> Deserialize<'de> for Process {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Process::from_json(&v).map_err(serde::de::Error::custom)
    }
}

impl Process {
    /// Reads a process from JSON: a non-negative integer or the string `"nemesis"` or `"watch"`.
    pub fn from_json(v: &Value) -> Result<Process, String> {
        match v {
            Value::Number(n) => n
                .as_u64()
                .map(Process::Client)
                .ok_or_else(|| format!("field \"process\": {n} is not a non-negative integer")),
            Value::String(s) if s == "nemesis" => Ok(Process::Nemesis),
            Value::String(s) if s == "watch" => Ok(Process::Watch),
            other => Err(format!(
                "field \"process\": expected an integer, \"nemesis\" or \"watch\", got {other}"
            )),
        }
    }
}

/// The type of an op: an invocation or one of the three completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    /// The process started the operation.
    Invoke,
    /// The operation took effect.
    Ok,
    /// The operation definitely did not take effect.
    Fail,
    /// Indeterminate: it may take effect at any time after its invocation, or never.
    Info,
}

impl OpType {
    /// Parses `invoke`, `ok`, `fail` or `info`.
    pub fn parse(s: &str) -> Option<OpType> {
        match s {
            "invoke" => Some(OpType::Invoke),
            "ok" => Some(OpType::Ok),
            "fail" => Some(OpType::Fail),
            "info" => Some(OpType::Info),
            _ => None,
        }
    }

    /// The lowercase name, as written in histories.
    pub fn as_str(self) -> &'static str {
        match self {
            OpType::Invoke => "invoke",
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            OpType::Info => "info",
        }
    }
}

/// One line of a history: an invocation or a completion, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Position in the history as recorded (the file's `index` field, or the position when
    /// the file has none).
    pub index: u64,
    /// Nanoseconds since the run started, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<u64>,
    /// Who issued it.
    pub process: Process,
    /// Invocation or completion.
    #[serde(rename = "type")]
    pub kind: OpType,
    /// The function: `read`, `write`, `cas`, `get`, `put`, `append`, `acquire`, `txn`, ...
    pub f: String,
    /// The key, for multi-key histories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The argument (on invocations) or the result (on completions).
    #[serde(default)]
    pub value: Value,
    /// The node the client talked to, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Why a `fail` or `info` completion happened, when recorded (`cas-mismatch`, `no-leader`,
    /// `timeout`, ...). EDN's `:error` keyword, string or vector is read as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The 1-based line of the source file where the op starts (0 when built in memory).
    #[serde(skip)]
    pub line: usize,
}

/// How a client operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Took effect, with the completion's value as its result.
    Ok,
    /// Definitely did not take effect; checkers drop it.
    Fail,
    /// Indeterminate (an `info` completion, or no completion at all by the end of the history).
    Info,
}

/// A client operation: an invocation paired with its completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// The client process.
    pub process: u64,
    /// Position of the invocation in [`History::ops`].
    pub invoke: usize,
    /// Position of the completion in [`History::ops`], if it completed.
    pub complete: Option<usize>,
    /// How it ended.
    pub outcome: Outcome,
}

impl Operation {
    /// The position in [`History::ops`] after which the operation can no longer take effect:
    /// the completion of an `ok` or `fail` op; `None` (never) for indeterminate ops.
    pub fn return_position(&self) -> Option<usize> {
        match self.outcome {
            Outcome::Info => None,
            _ => self.complete,
        }
    }
}

fn invalid(op: &Op, message: String) -> Error {
    Error::Invalid {
        file: None,
        line: op.line,
        message,
    }
}

/// `op` invokes while process `p`'s `prev_f` invoked at `prev_line` is outstanding.
pub(crate) fn already_outstanding(op: &Op, p: u64, prev_f: &str, prev_line: usize) -> Error {
    invalid(
        op,
        format!(
            "process {p} invokes {:?} while its {prev_f:?} invoked at line {prev_line} is still \
             outstanding",
            op.f
        ),
    )
}

/// `op` completes with no invocation of process `p` outstanding.
pub(crate) fn no_invocation(op: &Op, p: u64) -> Error {
    invalid(
        op,
        format!(
            "{} completion of {:?} by process {p} without an invocation",
            op.kind.as_str(),
            op.f
        ),
    )
}

/// `op` completes another function than process `p` invoked.
pub(crate) fn other_f(op: &Op, p: u64, inv_f: &str, inv_line: usize) -> Error {
    invalid(
        op,
        format!(
            "process {p} completes {:?} but invoked {inv_f:?} at line {inv_line}",
            op.f
        ),
    )
}

/// `op` completes another key than process `p` invoked.
pub(crate) fn other_key(op: &Op, p: u64, inv_key: Option<&str>, inv_line: usize) -> Error {
    invalid(
        op,
        format!(
            "process {p} completes key {:?} but invoked key {inv_key:?} at line {inv_line}",
            op.key
        ),
    )
}

/// A validated history: the ops in order of occurrence and the client operations they form.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Every op, in order of occurrence, nemesis ops included.
    pub ops: Vec<Op>,
    /// Client operations, in order of invocation.
    pub operations: Vec<Operation>,
    /// Problems that were tolerated (a truncated last line), for the report.
    pub warnings: Vec<String>,
}

impl History {
    /// Validates `ops` (in order of occurrence) and pairs invocations with completions.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the line of the first op that is a completion without an
    /// outstanding invocation, a second invocation while one is outstanding, or a completion
    /// whose `f` differs from its invocation's.
    pub fn from_ops(ops: Vec<Op>, warnings: Vec<String>) -> Result<History, Error> {
        let mut operations: Vec<Operation> = Vec::new();
        let mut outstanding: HashMap<u64, usize> = HashMap::default();
        for (pos, op) in ops.iter().enumerate() {
            // Nemesis and watch lines are events, not invocations: nothing to pair.
            let Process::Client(p) = op.process else {
                continue;
            };
            match op.kind {
                OpType::Invoke => {
                    if let Some(&prev) = outstanding.get(&p) {
                        let prev_op = &ops[operations[prev].invoke];
                        return Err(already_outstanding(op, p, &prev_op.f, prev_op.line));
                    }
                    outstanding.insert(p, operations.len());
                    operations.push(Operation {
                        process: p,
                        invoke: pos,
                        complete: None,
                        outcome: Outcome::Info,
                    });
                }
                kind => {
                    let Some(o) = outstanding.remove(&p) else {
                        return Err(no_invocation(op, p));
                    };
                    let inv = &ops[operations[o].invoke];
                    if inv.f != op.f {
                        return Err(other_f(op, p, &inv.f, inv.line));
                    }
                    if inv.key != op.key && op.key.is_some() {
                        return Err(other_key(op, p, inv.key.as_deref(), inv.line));
                    }
                    operations[o].complete = Some(pos);
                    operations[o].outcome = match kind {
                        OpType::Ok => Outcome::Ok,
                        OpType::Fail => Outcome::Fail,
                        _ => Outcome::Info,
                    };
                }
            }
        }
        Ok(History {
            ops,
            operations,
            warnings,
        })
    }

    /// The invocation of `o`.
    pub fn invocation(&self, o: &Operation) -> &Op {
        &self.ops[o.invoke]
    }

    /// The completion of `o`, if any.
    pub fn completion(&self, o: &Operation) -> Option<&Op> {
        o.complete.map(|c| &self.ops[c])
    }

    /// The key of `o` (from its invocation, else its completion).
    pub fn key(&self, o: &Operation) -> Option<&str> {
        let inv = self.invocation(o);
        inv.key
            .as_deref()
            .or_else(|| self.completion(o).and_then(|c| c.key.as_deref()))
    }

    /// True when any client op carries a key.
    pub fn has_keys(&self) -> bool {
        self.ops
            .iter()
            .any(|o| o.key.is_some() && matches!(o.process, Process::Client(_)))
    }

    /// The nemesis ops, for reports.
    pub fn nemesis_ops(&self) -> impl Iterator<Item = &Op> {
        self.ops.iter().filter(|o| o.process == Process::Nemesis)
    }

    /// The watch recorder's lines (`"process":"watch"`), for the watch checker.
    pub fn watch_ops(&self) -> impl Iterator<Item = &Op> {
        self.ops.iter().filter(|o| o.process == Process::Watch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(line: usize, process: u64, kind: OpType, f: &str) -> Op {
        Op {
            index: line as u64,
            time: None,
            process: Process::Client(process),
            kind,
            f: f.into(),
            key: None,
            value: Value::Null,
            node: None,
            error: None,
            line,
        }
    }

    #[test]
    fn pairs_invocations_with_completions_and_open_ends_are_info() {
        let h = History::from_ops(
            vec![
                op(1, 1, OpType::Invoke, "read"),
                op(2, 2, OpType::Invoke, "write"),
                op(3, 1, OpType::Ok, "read"),
                op(4, 3, OpType::Invoke, "cas"),
                op(5, 3, OpType::Fail, "cas"),
            ],
            vec![],
        )
        .unwrap();
        assert_eq!(h.operations.len(), 3);
        assert_eq!(h.operations[0].complete, Some(2));
        assert_eq!(h.operations[0].outcome, Outcome::Ok);
        assert_eq!(h.operations[1].complete, None);
        assert_eq!(h.operations[1].outcome, Outcome::Info);
        assert_eq!(h.operations[1].return_position(), None);
        assert_eq!(h.operations[2].outcome, Outcome::Fail);
    }

    #[test]
    fn completion_without_invocation_names_its_line() {
        let e = History::from_ops(
            vec![
                op(1, 1, OpType::Invoke, "read"),
                op(2, 2, OpType::Ok, "read"),
            ],
            vec![],
        )
        .unwrap_err();
        assert_eq!(e.line(), Some(2));
        assert!(e.to_string().contains("without an invocation"), "{e}");
    }

    #[test]
    fn second_invocation_while_outstanding_names_both_lines() {
        let e = History::from_ops(
            vec![
                op(1, 1, OpType::Invoke, "read"),
                op(2, 1, OpType::Invoke, "write"),
            ],
            vec![],
        )
        .unwrap_err();
        assert_eq!(e.line(), Some(2));
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn nemesis_ops_are_kept_but_not_paired() {
        let mut n = op(1, 0, OpType::Info, "start-partition");
        n.process = Process::Nemesis;
        let h = History::from_ops(vec![n, op(2, 1, OpType::Invoke, "read")], vec![]).unwrap();
        assert_eq!(h.ops.len(), 2);
        assert_eq!(h.operations.len(), 1);
        assert_eq!(h.nemesis_ops().count(), 1);
    }

    #[test]
    fn watch_lines_are_neither_operations_nor_faults() {
        let text = concat!(
            r#"{"index":0,"time":1,"process":1,"type":"invoke","f":"put","key":"/k","value":{"value":1}}"#,
            "\n",
            r#"{"index":1,"time":2,"process":"watch","type":"info","f":"watch-events","node":"n1","value":{"watcher":"w1","stream":1,"revision":5,"events":[]}}"#,
            "\n",
            r#"{"index":2,"time":3,"process":1,"type":"ok","f":"put","key":"/k","value":{"value":1,"revision":5}}"#,
            "\n",
        );
        let h = crate::parse_history(text, false).unwrap();
        assert_eq!(h.ops[1].process, Process::Watch);
        assert_eq!(
            h.operations.len(),
            1,
            "the put, paired across the watch line"
        );
        assert_eq!(h.operations[0].complete, Some(2));
        assert_eq!(h.nemesis_ops().count(), 0);
        assert_eq!(h.watch_ops().count(), 1);
        let s = crate::stats(&h);
        assert_eq!((s.total.count, s.nemesis_ops, s.watch_ops), (1, 0, 1));
        assert!(crate::availability::nemesis_intervals(&h).is_empty());
        assert_eq!(crate::perf::op_points(&h).len(), 1);
        assert_eq!(serde_json::to_value(Process::Watch).unwrap(), "watch");
        assert_eq!(
            Process::from_json(&serde_json::json!("watch")),
            Ok(Process::Watch)
        );
        // The field-by-field reader (here for an `error` the fast reader refuses) reads it too.
        let (ops, _) = crate::parse_jsonl(
            r#"{"time":1,"process":"watch","type":"info","f":"watch-broken","value":{"watcher":"w1","stream":1},"error":["unavailable"]}"#,
        )
        .unwrap();
        assert_eq!(ops[0].process, Process::Watch);
        assert_eq!(ops[0].error.as_deref(), Some("unavailable"));
    }
}
