//! Counterexamples for non-linearizable histories: as data (JSON) and as an SVG timeline.
//!
//! A counterexample names the operation that cannot be linearized (the earliest return in the
//! history that no linearization gets past), the operations concurrent with it, the longest
//! linearization found of everything before its return, and the model states reachable just
//! before it. The SVG draws one lane per process with a bar per operation, the failing one in
//! red; it is a plain string so that the HTML report can embed it.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::compact::{COp, Compact, NONE};
use crate::history::Outcome;

/// Most operations of the linearized prefix kept in a counterexample (the last ones).
pub const PREFIX_TAIL: usize = 50;

/// One client operation, as shown in counterexamples.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OpSummary {
    /// Client process.
    pub process: u64,
    /// Function.
    pub f: String,
    /// Key, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// The invocation's value.
    pub input: Value,
    /// The completion's value (absent when indeterminate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The error the completion recorded (a failed CAS's `cas-mismatch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `index` of the invocation.
    pub invoke_index: u64,
    /// `index` of the completion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete_index: Option<u64>,
    /// Source line of the invocation (0 if built in memory).
    pub invoke_line: usize,
    /// Source line of the completion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete_line: Option<usize>,
    /// Time of the invocation, ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoke_time: Option<u64>,
    /// Time of the completion, ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete_time: Option<u64>,
    #[serde(skip)]
    pub(crate) invoke_pos: usize,
    #[serde(skip)]
    pub(crate) return_pos: Option<usize>,
}

impl OpSummary {
    /// Summarizes `o` of a compact history.
    pub fn from_compact(history: &Compact, o: &COp) -> OpSummary {
        let some = |x: u64| (x != u64::MAX).then_some(x);
        let done = o.complete != NONE;
        OpSummary {
            process: o.process,
            f: history.f(o).to_string(),
            key: history.key(o).map(str::to_string),
            outcome: o.outcome,
            input: history.values.value(o.input).clone(),
            output: history
                .output(o)
                .filter(|_| o.outcome == Outcome::Ok)
                .cloned(),
            error: history.error(o).map(str::to_string),
            invoke_index: o.invoke_index,
            complete_index: some(o.complete_index),
            invoke_line: o.invoke_line as usize,
            complete_line: done.then_some(o.complete_line as usize),
            invoke_time: some(o.invoke_time),
            complete_time: some(o.complete_time),
            invoke_pos: o.call as usize,
            return_pos: o.return_position(),
        }
    }

    /// The history position where this operation, failing, ends linearizability: its return
    /// (its invocation if it has none).
    pub(crate) fn failure_pos(&self) -> usize {
        self.return_pos.unwrap_or(self.invoke_pos)
    }

    /// A short text form: `p3 cas [1,2] ok`, `p1 read -> 4`, `cas [1,2] (fail: cas-mismatch)`.
    pub fn label(&self) -> String {
        let mut s = format!("{} {}", self.f, compact(&self.input));
        if let Some(o) = self.output.as_ref().filter(|o| **o != self.input) {
            s = format!("{} -> {}", self.f, compact(o));
        }
        match self.outcome {
            Outcome::Info => s.push_str(" ?"),
            Outcome::Fail => match &self.error {
                Some(e) => {
                    let _ = write!(s, " (fail: {e})");
                }
                None => s.push_str(" (fail)"),
            },
            Outcome::Ok => {}
        }
        s
    }
}

/// A short rendering of a value. Long lists keep their end, where appends land and where two
/// states of a list-append history differ: `[(37 more) 40,41,42,43]`.
fn compact(v: &Value) -> String {
    const TAIL: usize = 4;
    let s = match v {
        Value::Null => "nil".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.len() > TAIL + 1 => {
            let tail: Vec<String> = items[items.len() - TAIL..]
                .iter()
                .map(Value::to_string)
                .collect();
            return format!("[({} more) {}]", items.len() - TAIL, tail.join(","));
        }
        other => other.to_string(),
    };
    if s.chars().count() > 28 {
        format!("{}...", s.chars().take(25).collect::<String>())
    } else {
        s
    }
}

/// Why a history is not linearizable, for one key.
#[derive(Debug, Clone, Serialize)]
pub struct Counterexample {
    /// The key, if the history is partitioned by key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The operation that cannot be linearized: every linearization of the operations before
    /// its return leaves the model in a state where it (or one concurrent with it) is impossible.
    pub op: OpSummary,
    /// Operations concurrent with it (overlapping its invocation-to-return interval).
    pub concurrent: Vec<OpSummary>,
    /// Length of the longest linearizable prefix found (operations linearized before the
    /// failing one's return).
    pub prefix_length: usize,
    /// The last operations of that prefix, in linearization order.
    pub prefix_tail: Vec<OpSummary>,
    /// Model states reachable just before the failing operation's return.
    pub states_before: Vec<Value>,
    /// Whether `states_before` is every such state (false if the enumeration was cut short).
    pub states_complete: bool,
    /// A one-line explanation.
    pub message: String,
    /// An SVG timeline of the failing operation and its neighbours (not in the JSON).
    #[serde(skip)]
    pub svg: String,
}

impl Counterexample {
    pub(crate) fn new(
        key: Option<String>,
        op: OpSummary,
        concurrent: Vec<OpSummary>,
        prefix: Vec<OpSummary>,
        states_before: Vec<Value>,
        states_complete: bool,
    ) -> Counterexample {
        let prefix_length = prefix.len();
        let prefix_tail = prefix[prefix.len().saturating_sub(PREFIX_TAIL)..].to_vec();
        let states: Vec<String> = states_before.iter().take(6).map(compact).collect();
        let message = format!(
            "process {} {} (line {}) cannot be linearized{}: in every state reachable before it \
             returns ({}{}), it or an operation concurrent with it is impossible",
            op.process,
            op.label(),
            op.invoke_line,
            key.as_ref()
                .map(|k| format!(" on key {k:?}"))
                .unwrap_or_default(),
            states.join(", "),
            if states_before.len() > 6 { ", ..." } else { "" }
        );
        let mut c = Counterexample {
            key,
            op,
            concurrent,
            prefix_length,
            prefix_tail,
            states_before,
            states_complete,
            message,
            svg: String::new(),
        };
        c.svg = c.to_svg();
        c
    }

    /// Renders the timeline: one lane per process, a bar per operation from invocation to
    /// completion (indeterminate ones run to the right edge, dashed), the failing one in red,
    /// the last operations of the linearized prefix in grey.
    pub fn to_svg(&self) -> String {
        let tail_start = self.prefix_tail.len().saturating_sub(8);
        let mut ops: Vec<(&OpSummary, Role)> = vec![(&self.op, Role::Failing)];
        ops.extend(self.concurrent.iter().map(|o| (o, Role::Concurrent)));
        for o in &self.prefix_tail[tail_start..] {
            if !ops.iter().any(|(x, _)| x.invoke_pos == o.invoke_pos) {
                ops.push((o, Role::Prefix));
            }
        }
        // X axis: history order, compressed to the ranks of the drawn endpoints.
        let mut points: BTreeSet<usize> = BTreeSet::new();
        for (o, _) in &ops {
            points.insert(o.invoke_pos);
            if let Some(r) = o.return_pos {
                points.insert(r);
            }
        }
        let points: Vec<usize> = points.into_iter().collect();
        let rank = |p: usize| points.partition_point(|&x| x < p);
        let mut lanes: Vec<u64> = ops.iter().map(|(o, _)| o.process).collect();
        lanes.sort_unstable();
        lanes.dedup();
        let step = (900.0 / points.len().max(1) as f64).clamp(14.0, 60.0);
        let left = 70.0;
        let plot_w = step * (points.len() as f64 + 1.0);
        let width = left + plot_w + 20.0;
        let lane_h = 30.0;
        let top = 46.0;
        let height = top + lane_h * lanes.len() as f64 + 20.0;
        let x_of = |p: usize| left + step * (rank(p) as f64 + 0.5);

        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
        );
        s.push_str(r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
        let title = format!(
            "Not linearizable{}: {} (process {})",
            self.key
                .as_ref()
                .map(|k| format!(" (key {k})"))
                .unwrap_or_default(),
            self.op.label(),
            self.op.process
        );
        let _ = write!(
            s,
            r#"<text x="8" y="16" font-size="13" font-weight="bold">{}</text>"#,
            esc(&title)
        );
        let _ = write!(
            s,
            r##"<text x="8" y="32" fill="#555">history order →   red: cannot be linearized · blue: concurrent · grey: linearized before · dashed: indeterminate</text>"##
        );
        for (li, p) in lanes.iter().enumerate() {
            let y = top + lane_h * li as f64;
            let _ = write!(
                s,
                r##"<line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#eee"/><text x="8" y="{:.1}">process {p}</text>"##,
                y + lane_h / 2.0,
                left + plot_w,
                y + lane_h / 2.0,
                y + lane_h / 2.0 + 4.0
            );
        }
        let right_edge = left + plot_w - 4.0;
        // Draw the failing op last, on top.
        for (o, role) in ops.iter().rev() {
            let li = lanes.binary_search(&o.process).unwrap_or(0);
            let y = top + lane_h * li as f64 + 5.0;
            let x1 = x_of(o.invoke_pos) - step * 0.4;
            let x2 = o.return_pos.map_or(right_edge, |r| x_of(r) + step * 0.4);
            let (fill, stroke, sw) = match role {
                Role::Failing => ("#fdd", "#d00", 2.5),
                Role::Concurrent => ("#e3edfb", "#3a6fc4", 1.0),
                Role::Prefix => ("#eee", "#999", 1.0),
            };
            let dash = if o.return_pos.is_none() {
                r#" stroke-dasharray="4 3""#
            } else {
                ""
            };
            let tip = format!(
                "process {} {}: invoked line {} (index {}){}",
                o.process,
                o.label(),
                o.invoke_line,
                o.invoke_index,
                o.complete_line
                    .map(|l| format!(", completed line {l}"))
                    .unwrap_or_else(|| ", indeterminate".into())
            );
            let _ = write!(
                s,
                r#"<g><title>{}</title><rect x="{x1:.1}" y="{y:.1}" width="{:.1}" height="20" rx="3" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"{dash}/><text x="{:.1}" y="{:.1}">{}</text></g>"#,
                esc(&tip),
                (x2 - x1).max(4.0),
                x1 + 3.0,
                y + 14.0,
                esc(&o.label())
            );
        }
        s.push_str("</svg>");
        s
    }
}

#[derive(Clone, Copy)]
enum Role {
    Failing,
    Concurrent,
    Prefix,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::compact;
    use serde_json::json;

    #[test]
    fn long_lists_keep_their_end_and_other_values_their_start() {
        assert_eq!(compact(&json!([0, 1, 2, 3, 4, 5, 6])), "[(3 more) 3,4,5,6]");
        assert_eq!(compact(&json!([0, 1, 2, 3, 4])), "[0,1,2,3,4]");
        assert_eq!(compact(&json!(null)), "nil");
        let long = "x".repeat(40);
        assert_eq!(compact(&json!(long)), format!("{}...", "x".repeat(25)));
    }
}
