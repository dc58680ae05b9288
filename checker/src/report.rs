//! Self-contained HTML: a run's `report.html`, the results index and the page frame `compare`
//! uses. Everything is inline (CSS, SVG, the timeline's script and data): the files work from
//! disk, offline, and can be mailed around. It never reads or writes files: callers pass the run's
//! `run.json` and `results.json` as JSON values and get a string back.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::perf::{Perf, outcome_index};
use crate::plot;

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1000px;margin:0 auto;padding:1em 1.5em 4em}
h1{font-size:1.5em;margin:.3em 0}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
.banner{padding:.8em 1.5em;color:#fff;font-size:1.2em}
.valid{background:#0072B2}.invalid{background:#D55E00}.unknown{background:#E69F00;color:#222}
.badge{display:inline-block;padding:0 .5em;border-radius:.3em;color:#fff;font-weight:600}
.badge.unknown{color:#222}
pre{background:#f0f0f0;padding:.5em;overflow-x:auto}
svg{max-width:100%;height:auto;display:block;margin:.5em 0}
.plot{background:#fff;border:1px solid #e5e5e5;margin:.8em 0}
.muted{color:#666;font-size:.9em}
#tl-box{background:#fff;border:1px solid #e5e5e5;overflow-y:auto;max-height:640px}
#tl{width:100%;display:block;cursor:grab}
button{margin-right:.3em}
tr.bad td{background:#fbe0d0}tr.hl td{background:#fff1bf}
table.pair{width:100%;table-layout:fixed}table.pair>tbody>tr>td{width:50%}
.violation{border-left:4px solid #D55E00;padding:.1em 0 .1em .8em;margin:1.2em 0}
"#;

/// Records script errors from the very first line, so a test can read them from the DOM.
const ERROR_HOOK: &str = "<script>window.__errors=[];window.addEventListener('error',function(e){window.__errors.push(String(e.message))});</script>";
const ERROR_REPORT: &str = "<p class=\"muted\">page script status: <span id=\"js-status\" data-errors=\"-1\">not run</span></p>\
<script>window.addEventListener('load',function(){var s=document.getElementById('js-status');s.dataset.errors=String(window.__errors.length);\
s.textContent=window.__errors.length?'script errors: '+window.__errors.join('; '):'js-ok';});</script>";

/// A complete HTML page with the shared style.
pub fn page(title: &str, banner: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title>{ERROR_HOOK}\
<style>{CSS}</style></head><body>{banner}<main>{body}{ERROR_REPORT}</main></body></html>\n",
        escape(title)
    )
}

fn verdict_of(results: &Value) -> &str {
    results
        .get("valid")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
}

/// A coloured verdict badge.
pub fn badge(verdict: &str) -> String {
    let class = match verdict {
        "valid" | "invalid" => verdict,
        _ => "unknown",
    };
    format!("<span class=\"badge {class}\">{}</span>", escape(verdict))
}

fn s(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(x) => x.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Formats milliseconds (`-` for NaN).
pub fn ms(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// What a run's report is made of.
#[derive(Debug)]
pub struct RunReport<'a> {
    /// `run.json` (`Null` if absent: a history checked outside a run).
    pub run: &'a Value,
    /// `results.json`.
    pub results: &'a Value,
    /// The metrics, with their op points.
    pub perf: &'a Perf,
    /// A title, e.g. `register-partition/20261122T024631Z`.
    pub name: &'a str,
    /// Files of the run folder to link to, relative to it (`history.jsonl`, `nodes/n1.log`, ...).
    pub files: &'a [String],
    /// The run's `counterexample.svg` (the first invalid key's), shown with that key's anomaly
    /// when `results.json` carries no SVG of its own.
    pub counterexample_svg: Option<&'a str>,
}

/// The run's `report.html`.
pub fn run_html(r: &RunReport<'_>) -> String {
    let verdict = verdict_of(r.results);
    let class = match verdict {
        "valid" | "invalid" => verdict,
        _ => "unknown",
    };
    let banner = format!(
        "<div class=\"banner {class}\" id=\"verdict\" data-verdict=\"{v}\"><b>{V}</b> &middot; {name}</div>",
        v = escape(verdict),
        V = escape(&verdict.to_uppercase()),
        name = escape(r.name)
    );
    let mut b = String::new();
    let _ = write!(b, "<h1>Faultline report: {}</h1>", escape(r.name));
    for checker in ["linearizable", "watch", "lease", "queue"] {
        if let Some(reason) = r
            .results
            .pointer(&format!("/{checker}/reason"))
            .and_then(Value::as_str)
        {
            let _ = write!(b, "<p>{}</p>", escape(reason));
        }
    }
    what_ran(&mut b, r.run);
    headline(&mut b, r.perf);
    stats_table(&mut b, r.results);
    let nodes: Vec<String> = r
        .run
        .get("nodes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|n| n.get("name")?.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    b.push_str("<h2 id=\"plots\">Plots</h2><p class=\"muted\">Shaded bands are faults, labelled by kind; the final heal ends the last one.</p>");
    for svg in [
        plot::latency_scatter(r.perf, 20_000),
        plot::latency_quantiles(r.perf),
        plot::throughput(r.perf),
        plot::availability(r.perf),
        plot::leader_timeline(r.perf, &nodes),
    ] {
        let _ = write!(b, "<div class=\"plot\">{svg}</div>");
    }
    recovery_table(&mut b, r.perf);
    if let Some(w) = r.results.get("watch") {
        watch_section(&mut b, w);
    }
    if let Some(l) = r.results.get("lease") {
        lease_section(&mut b, l);
    }
    if let Some(q) = r.results.get("queue") {
        queue_section(&mut b, q);
    }
    if let Some(t) = r.results.get("txn") {
        txn_section(&mut b, t);
    }
    for (id, title) in JEPSEN_CHECKERS {
        if let Some(x) = r.results.get(id) {
            jepsen_section(&mut b, id, title, x);
        }
    }
    if let Some(m) = r.results.get("membership") {
        membership_section(&mut b, m);
    }
    // Histories checked for watches, leases or queues only have no linearizability result.
    if r.results.get("linearizable").is_some() {
        anomalies(&mut b, r.results, r.counterexample_svg);
        keys_table(&mut b, r.results);
    }
    timeline(&mut b, r.perf);
    b.push_str("<h2 id=\"files\">Files</h2><ul>");
    for f in r.files {
        let _ = write!(b, "<li><a href=\"{0}\">{0}</a></li>", escape(f));
    }
    b.push_str("</ul>");
    let warnings: Vec<&Value> = ["linearizable", "watch", "lease", "queue"]
        .iter()
        .filter_map(|c| r.results.pointer(&format!("/{c}/warnings")))
        .filter_map(Value::as_array)
        .flatten()
        .collect();
    if !warnings.is_empty() {
        b.push_str("<h2>Warnings</h2><ul>");
        for x in warnings {
            let _ = write!(b, "<li>{}</li>", escape(x.as_str().unwrap_or_default()));
        }
        b.push_str("</ul>");
    }
    page(&format!("{verdict}: {}", r.name), &banner, &b)
}

/// The membership check: the acknowledged members and each member's contradicting voters.
fn membership_section(b: &mut String, m: &Value) {
    let list = |v: &Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let _ = write!(
        b,
        "<h2 id=\"membership\">Membership</h2><p>{}: the members the acknowledged changes made: \
         <b>{}</b>{}.</p>",
        escape(m["valid"].as_str().unwrap_or("unknown")),
        escape(&list(&m["acknowledged"])),
        match list(&m["uncertain"]) {
            u if u.is_empty() => String::new(),
            u => format!(
                " (not compared, their changes were indeterminate: {})",
                escape(&u)
            ),
        }
    );
    let unexplained = m["unexplained"].as_array().cloned().unwrap_or_default();
    if !unexplained.is_empty() {
        b.push_str(
            "<p>During the run, nodes counted voters that no prefix of the changes explains              (each change in turn from the original members; a node may lag, an indeterminate              change may be in or out, an acknowledged one is never skipped):</p><table><tr>             <th>time</th><th>node</th><th>its voters</th><th>acknowledged changes by then</th></tr>",
        );
        for u in &unexplained {
            let _ = write!(
                b,
                "<tr><td>{:.1} s</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                u["time_s"].as_f64().unwrap_or(0.0),
                escape(u["node"].as_str().unwrap_or_default()),
                escape(&list(&u["voters"])),
                escape(&list(&u["acknowledged"])),
            );
        }
        b.push_str("</table>");
    }
    if let Some(sizes) = m["sizes_disagree"].as_object().filter(|s| !s.is_empty()) {
        let said: Vec<String> = sizes.iter().map(|(n, c)| format!("{n}: {c}")).collect();
        let _ = write!(
            b,
            "<p>At the end the members do not agree on how many voters the group has (members              of one group that drifted apart, or a size no acknowledged change made): {}.</p>",
            escape(&said.join(", "))
        );
    }
    let contradictions = m["contradictions"].as_array().cloned().unwrap_or_default();
    if contradictions.is_empty() {
        b.push_str("<p>At the end, every member that answered counts exactly these as voters.</p>");
        return;
    }
    b.push_str(
        "<table><tr><th>member</th><th>its voters</th><th>removal acknowledged, still voting</th>\
         <th>addition acknowledged, not voting</th></tr>",
    );
    for c in &contradictions {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(c["node"].as_str().unwrap_or_default()),
            escape(&list(&c["voters"])),
            escape(&list(&c["removed_but_voting"])),
            escape(&list(&c["added_but_missing"])),
        );
    }
    b.push_str("</table>");
}

fn what_ran(b: &mut String, run: &Value) {
    if run.is_null() {
        return;
    }
    b.push_str("<h2 id=\"what\">What ran</h2><table>");
    let faults = run
        .pointer("/workload/nemesis/faults")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let bugs = run
        .pointer("/workload/node/bugs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let rows = [
        ("workload", s(run, &["workload", "name"])),
        ("description", s(run, &["workload", "description"])),
        ("target", s(run, &["workload", "target"])),
        ("nodes", s(run, &["workload", "nodes"])),
        ("time limit (s)", s(run, &["workload", "time-limit"])),
        ("rate (ops/s)", s(run, &["workload", "rate"])),
        ("concurrency", s(run, &["workload", "concurrency"])),
        (
            "faults",
            if faults.is_empty() {
                "none".into()
            } else {
                faults
            },
        ),
        (
            "planted bugs",
            if bugs.is_empty() { "none".into() } else { bugs },
        ),
        ("seed", s(run, &["seed"])),
        ("build label", s(run, &["label"])),
        ("node binary", s(run, &["node", "binary"])),
        ("node sha256", s(run, &["node", "sha256"])),
        ("node origin", s(run, &["node", "origin"])),
        ("started", s(run, &["started"])),
        ("harness", s(run, &["harness_version"])),
    ];
    for (k, v) in rows {
        let _ = write!(b, "<tr><th>{k}</th><td>{}</td></tr>", escape(&v));
    }
    let _ = write!(
        b,
        "</table><p>Reproduce:</p><pre id=\"reproduce\">{}</pre>",
        escape(&s(run, &["reproduce"]))
    );
}

fn headline(b: &mut String, p: &Perf) {
    let m = &p.summary;
    let _ = write!(
        b,
        "<h2 id=\"summary\">Summary</h2><table><tr><th>completed ops</th><th>ok</th><th>ok/s</th>\
<th>availability</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>max ms</th><th>duration s</th></tr>\
<tr><td class=num>{}</td><td class=num>{}</td><td class=num>{:.1}</td><td class=num>{:.2}%</td>\
<td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td></tr></table>\
<p class=\"muted\">Latency quantiles are of ok operations; availability is the share of completed operations \
that got a definite answer (ok, or a fail such as cas-mismatch), not a timeout or a fail such as no-leader.</p>",
        m.completed,
        m.ok,
        m.ok_per_s,
        m.availability * 100.0,
        ms(m.p50_ms),
        ms(m.p95_ms),
        ms(m.p99_ms),
        ms(m.max_ms),
        p.seconds
    );
}

fn stats_table(b: &mut String, results: &Value) {
    let Some(by_f) = results.pointer("/stats/by_f").and_then(Value::as_object) else {
        return;
    };
    b.push_str("<h2 id=\"stats\">Operations by function and outcome</h2><table><tr><th>f</th><th>count</th><th>ok</th><th>fail</th><th>info</th></tr>");
    let mut rows: Vec<(&String, &Value)> = by_f.iter().collect();
    if let Some(t) = results.pointer("/stats/total") {
        rows.push((const_total(), t));
    }
    for (f, c) in rows {
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td></tr>",
            escape(f),
            s(c, &["count"]),
            s(c, &["ok"]),
            s(c, &["fail"]),
            s(c, &["info"])
        );
    }
    b.push_str("</table>");
}

fn const_total() -> &'static String {
    static TOTAL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOTAL.get_or_init(|| "all".to_string())
}

fn opt_s(x: Option<f64>) -> String {
    x.map_or("not recovered".into(), |x| format!("{x:.1}"))
}

fn recovery_table(b: &mut String, p: &Perf) {
    b.push_str("<h2 id=\"recovery\">Faults and recovery</h2>");
    if p.nemesis.is_empty() {
        b.push_str("<p>No faults were injected.</p>");
        return;
    }
    b.push_str(
        "<p class=\"muted\">Recovered after: seconds from the fault's stop to the first 1 s window with at least 80% of \
the ok-rate of the 5 s before the fault started. Unavailable: whole seconds from start to recovery below 50% of that rate.</p>\
<table><tr><th>fault</th><th>start s</th><th>stop s</th><th>baseline ok/s</th><th>recovered after s</th><th>unavailable s</th></tr>",
    );
    for f in &p.nemesis {
        let r = p
            .recovery
            .iter()
            .find(|r| r.start_s == f.start_s && r.kind == f.kind);
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=num>{:.1}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td></tr>",
            escape(&f.label),
            f.start_s,
            f.stop_s.map_or("never".into(), |x| format!(
                "{x:.1}{}",
                if f.heal { " (heal)" } else { "" }
            )),
            r.map_or("-".into(), |r| format!("{:.1}", r.baseline_ok_per_s)),
            r.map_or("-".into(), |r| opt_s(r.recovered_after_s)),
            r.map_or("-".into(), |r| format!("{:.0}", r.unavailable_s)),
        );
    }
    b.push_str("</table><table><tr><th>fault kind</th><th>unavailable s (total)</th></tr>");
    for (k, v) in &p.unavailable_s {
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=num>{v:.0}</td></tr>",
            escape(k)
        );
    }
    b.push_str("</table>");
}

fn op_table(b: &mut String, caption: &str, ops: &[Value]) {
    if ops.is_empty() {
        return;
    }
    let _ = write!(
        b,
        "<p>{}</p><table><tr><th>process</th><th>f</th><th>input</th><th>output</th><th>outcome</th><th>invoked s</th><th>completed s</th><th>line</th></tr>",
        escape(caption)
    );
    let secs = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_f64)
            .map_or("-".to_string(), |t| format!("{:.4}", t / 1e9))
    };
    for o in ops {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td></tr>",
            escape(&s(o, &["process"])),
            escape(&s(o, &["f"])),
            escape(&o.get("input").map_or(String::new(), Value::to_string)),
            escape(&o.get("output").map_or(String::new(), Value::to_string)),
            escape(&s(o, &["outcome"])),
            secs(o, "invoke_time"),
            secs(o, "complete_time"),
            escape(&s(o, &["invoke_line"]))
        );
    }
    b.push_str("</table>");
}

fn anomalies(b: &mut String, results: &Value, first_svg: Option<&str>) {
    b.push_str("<h2 id=\"anomalies\">Anomalies</h2>");
    let keys = results
        .pointer("/linearizable/keys")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut any = false;
    for k in &keys {
        let Some(c) = k.get("counterexample").filter(|c| !c.is_null()) else {
            continue;
        };
        let _ = write!(
            b,
            "<div class=\"anomaly\"><h3>key {}</h3><p>{}</p>",
            escape(&s(k, &["key"])),
            escape(&s(c, &["message"])),
        );
        let list = |name: &str| -> Vec<Value> {
            c.get(name)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        op_table(
            b,
            "The operation that cannot be linearized:",
            &c.get("op").cloned().into_iter().collect::<Vec<_>>(),
        );
        op_table(b, "Operations concurrent with it:", &list("concurrent"));
        op_table(
            b,
            "The last operations linearized before it:",
            &list("prefix_tail"),
        );
        if let Some(states) = c.get("states_before").and_then(Value::as_array) {
            let _ = write!(
                b,
                "<p>States reachable before it returns: <code>{}</code></p>",
                escape(&Value::Array(states.clone()).to_string())
            );
        }
        // The checker's own SVG: trusted, inlined as is.
        let svg = c
            .get("svg")
            .and_then(Value::as_str)
            .or(if any { None } else { first_svg });
        if let Some(svg) = svg {
            let _ = write!(b, "<div class=\"plot\">{svg}</div>");
        }
        b.push_str("</div>");
        any = true;
    }
    if !any {
        b.push_str(match verdict_of(results) {
            "valid" => "<p>None: the history is linearizable.</p>",
            _ => "<p>No counterexample was found (see the reasons per key below).</p>",
        });
    }
}

fn keys_table(b: &mut String, results: &Value) {
    let Some(keys) = results
        .pointer("/linearizable/keys")
        .and_then(Value::as_array)
    else {
        return;
    };
    let _ = write!(
        b,
        "<h2 id=\"keys\">Per key</h2><p class=\"muted\">model {}, {} ops, checked in {} ms</p>\
<table><tr><th>key</th><th>verdict</th><th>ops</th><th>configurations</th><th>ms</th><th>reason</th></tr>",
        escape(&s(results, &["linearizable", "model"])),
        escape(&s(results, &["linearizable", "ops"])),
        escape(&s(results, &["linearizable", "elapsed_ms"]))
    );
    for k in keys {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td>{}</td></tr>",
            escape(&s(k, &["key"])),
            badge(&s(k, &["valid"])),
            escape(&s(k, &["ops"])),
            escape(&s(k, &["configurations"])),
            k.get("elapsed_ms")
                .and_then(Value::as_f64)
                .map_or(String::new(), ms),
            escape(&s(k, &["reason"]))
        );
    }
    b.push_str("</table>");
}

/// Seconds, from a JSON number of nanoseconds (`-` when absent).
fn secs(v: Option<&Value>) -> String {
    v.and_then(Value::as_f64)
        .map_or("-".into(), |t| format!("{:.3}", t / 1e9))
}

/// A cell's text: strings as they are, other JSON as JSON, absent as empty.
fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(x)) => x.clone(),
        Some(other) => other.to_string(),
    }
}

/// The "Watch guarantees" section: one row per guarantee, then each listed violation with the
/// offending response beside the one before it.
fn watch_section(b: &mut String, w: &Value) {
    let c = &w["counts"];
    let _ = write!(
        b,
        "<h2 id=\"watch\">Watch guarantees</h2><p>{} &middot; {} watchers, {} streams ({} resumed, \
{} canceled by compaction, {} broken), {} responses, {} events, {} progress notifications; \
{} acknowledged writes. Checked in {} ms.</p>",
        badge(&s(w, &["valid"])),
        s(c, &["watchers"]),
        s(c, &["streams"]),
        s(c, &["resumes"]),
        s(c, &["compactions"]),
        s(c, &["broken"]),
        s(c, &["responses"]),
        s(c, &["events"]),
        s(c, &["progress_notifications"]),
        s(c, &["acknowledged_writes"]),
        w.get("elapsed_ms")
            .and_then(Value::as_f64)
            .map_or("-".into(), ms),
    );
    b.push_str(
        "<table id=\"watch-guarantees\"><tr><th>guarantee</th><th>promise</th><th>streams</th>\
<th>events checked</th><th>violations</th></tr>",
    );
    for g in w["guarantees"].as_array().into_iter().flatten() {
        let bad = g["violations"].as_u64().unwrap_or(0) > 0;
        let _ = write!(
            b,
            "<tr{}><td>{}</td><td>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td></tr>",
            if bad { " class=\"bad\"" } else { "" },
            escape(&s(g, &["name"])),
            escape(&s(g, &["promise"])),
            s(g, &["streams"]),
            s(g, &["events"]),
            s(g, &["violations"]),
        );
    }
    b.push_str("</table>");
    let list = w["violations"].as_array().cloned().unwrap_or_default();
    let total: u64 = w["guarantees"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["violations"].as_u64())
        .sum();
    if list.len() as u64 != total {
        let _ = write!(
            b,
            "<p class=\"muted\">Listed: the earliest violations of each guarantee, {} of {total}.</p>",
            list.len()
        );
    }
    for v in &list {
        let _ = write!(
            b,
            "<div class=\"violation\"><h3>{}: watcher {} on {}, stream {}, at {} s (index {})</h3><p>{}</p>",
            escape(&s(v, &["guarantee"])),
            escape(&s(v, &["watcher"])),
            escape(&text(v.get("member"))),
            s(v, &["stream"]),
            secs(v.get("time")),
            s(v, &["index"]),
            escape(&s(v, &["message"])),
        );
        let event = v.get("event").filter(|e| !e.is_null());
        let in_response = |r: &Value| {
            event.is_some_and(|e| {
                r["events"]
                    .as_array()
                    .is_some_and(|evs| evs.iter().any(|x| x == e))
            })
        };
        if let Some(e) = event
            && !v.get("response").is_some_and(in_response)
        {
            let _ = write!(
                b,
                "<p>The event: <code>{}</code></p>",
                escape(&e.to_string())
            );
        }
        b.push_str(
            "<table class=\"pair\"><tr><th>previous on this stream</th><th>offending</th></tr><tr>",
        );
        for side in ["previous", "response"] {
            b.push_str("<td>");
            match v.get(side).filter(|r| !r.is_null()) {
                Some(r) => response_table(b, r, event),
                None => b.push_str("<p class=\"muted\">none</p>"),
            }
            b.push_str("</td>");
        }
        b.push_str("</tr></table></div>");
    }
}

/// A watch response: its header, then its events (the offending one highlighted).
fn response_table(b: &mut String, r: &Value, offending: Option<&Value>) {
    let _ = write!(
        b,
        "<p><b>{}</b>, stream {}, header revision {}, at {} s (index {}) on {}</p>",
        escape(&s(r, &["f"])),
        s(r, &["stream"]),
        escape(&text(r.get("revision"))),
        secs(r.get("time")),
        s(r, &["index"]),
        escape(&text(r.get("node"))),
    );
    let events = r["events"].as_array().cloned().unwrap_or_default();
    if events.is_empty() {
        return;
    }
    let total = r["events_total"].as_u64().unwrap_or(events.len() as u64);
    let from = r["events_from"].as_u64().unwrap_or(0);
    if total > events.len() as u64 {
        let _ = write!(
            b,
            "<p class=\"muted\">events {}..{} of {total}</p>",
            from + 1,
            from + events.len() as u64
        );
    }
    b.push_str("<table><tr><th>type</th><th>key</th><th>value</th><th>mod-revision</th></tr>");
    for e in &events {
        let _ = write!(
            b,
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td class=num>{}</td></tr>",
            if Some(e) == offending {
                " class=\"hl\""
            } else {
                ""
            },
            escape(&text(e.get("type"))),
            escape(&text(e.get("key"))),
            escape(&text(e.get("value"))),
            escape(&text(e.get("mod-revision"))),
        );
    }
    b.push_str("</table>");
}

/// The "Lease guarantees" section: counts, then each listed violation with the promise beside
/// the observation.
fn lease_section(b: &mut String, l: &Value) {
    let c = &l["counts"];
    let _ = write!(
        b,
        "<h2 id=\"lease\">Lease guarantees</h2><p>{} &middot; {} leases, {} grants, {} keepalives \
acknowledged, {} observations of a lease or key gone; tolerance {} ms.</p>\
<p class=\"muted\">An acknowledged grant or keepalive invoked at t with TTL T promises the lease \
lives until at least t + T; an observation that it is gone completing before that (less the \
tolerance) is a violation.</p>",
        badge(&s(l, &["valid"])),
        s(c, &["leases"]),
        s(c, &["grants"]),
        s(c, &["keepalives_ok"]),
        s(c, &["observations"]),
        s(l, &["tolerance_ms"]),
    );
    if let Some(kinds) = l["violation_counts"].as_object()
        && !kinds.is_empty()
    {
        b.push_str("<table id=\"lease-kinds\"><tr><th>violation</th><th>count</th></tr>");
        for (k, n) in kinds {
            let _ = write!(
                b,
                "<tr class=\"bad\"><td>{}</td><td class=num>{n}</td></tr>",
                escape(k)
            );
        }
        b.push_str("</table>");
    }
    for v in l["violations"].as_array().into_iter().flatten() {
        let _ = write!(
            b,
            "<div class=\"violation\"><h3>{}: lease {} at {} s, {} ms early</h3><p>{}</p>\
<table class=\"pair\"><tr><th>promise</th><th>observation</th></tr><tr>",
            escape(&s(v, &["kind"])),
            s(v, &["lease"]),
            secs(v.get("time")),
            v["early_ms"].as_f64().map_or("-".into(), ms),
            escape(&s(v, &["message"])),
        );
        for side in ["promise", "observation"] {
            let o = &v[side];
            let _ = write!(b, "<td><table>");
            let mut rows = vec![
                ("f", text(o.get("f"))),
                ("process", text(o.get("process"))),
                ("node", text(o.get("node"))),
                ("key", text(o.get("key"))),
                ("invoked s", secs(o.get("invoke_time"))),
                ("completed s", secs(o.get("complete_time"))),
                ("index", text(o.get("invoke_index"))),
                ("answer", text(o.get("value"))),
                ("error", text(o.get("error"))),
            ];
            if side == "promise" {
                rows.push(("promised until s", secs(v.get("promised_until"))));
            }
            for (k, x) in rows.into_iter().filter(|r| !r.1.is_empty()) {
                let _ = write!(b, "<tr><th>{k}</th><td>{}</td></tr>", escape(&x));
            }
            b.push_str("</table></td>");
        }
        b.push_str("</tr></table></div>");
    }
}

/// Jepsen's workload checkers: `results.json` key and section title.
const JEPSEN_CHECKERS: [(&str, &str); 5] = [
    ("bank", "Bank"),
    ("set", "Set"),
    ("set_full", "Set (full)"),
    ("counter", "Counter"),
    ("long_fork", "Long fork"),
];

/// A section for one of Jepsen's workload checkers (bank, set, set-full, counter, long-fork):
/// the verdict and why it is unknown, the counts, and the errors found (kind, op index, line,
/// process, what is wrong).
fn jepsen_section(b: &mut String, id: &str, title: &str, x: &Value) {
    let _ = write!(
        b,
        "<h2 id=\"{id}\">{title}</h2><p>{} &middot; Jepsen's {} checker.</p>",
        badge(&s(x, &["valid"])),
        id.replace('_', "-")
    );
    if let Some(reason) = x.get("reason").and_then(Value::as_str) {
        let _ = write!(b, "<p>{}</p>", escape(reason));
    }
    if let Some(counts) = x.get("counts").and_then(Value::as_object) {
        let _ = write!(
            b,
            "<table id=\"{id}-counts\"><tr><th>count</th><th>value</th></tr>"
        );
        for (k, v) in counts {
            let _ = write!(
                b,
                "<tr><td>{}</td><td class=num>{}</td></tr>",
                escape(k),
                escape(&text(Some(v)))
            );
        }
        b.push_str("</table>");
    }
    let errors = x["errors"].as_array().cloned().unwrap_or_default();
    if errors.is_empty() {
        return;
    }
    let _ = write!(
        b,
        "<h3 id=\"{id}-errors\">Errors</h3><p class=\"muted\">The first {} of each kind.</p>\
<table><tr><th>kind</th><th>index</th><th>line</th><th>process</th><th>what</th></tr>",
        crate::jepsen::MAX_EXAMPLES
    );
    for e in &errors {
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=num>{}</td><td class=num>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&text(e.get("kind"))),
            escape(&text(e.get("index"))),
            escape(&text(e.get("line"))),
            escape(&text(e.get("process"))),
            escape(&text(e.get("message")))
        );
    }
    b.push_str("</table>");
}

/// The "Transactions" section (Elle's list-append or rw-register): the verdict against the
/// model, the counts, the models ruled out, the anomaly table, and each example: its message,
/// its transactions, for cycles each step and the drawing.
fn txn_section(b: &mut String, t: &Value) {
    let c = &t["counts"];
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    let _ = write!(
        b,
        "<h2 id=\"txn\">Transactions</h2><p>{} &middot; {} against {} &middot; {} ok, {} failed, \
{} indeterminate transactions over {} keys, {} micro-ops &middot; {} dependency edges, {} cycle \
components (largest {}) &middot; inferred in {} ms, cycles searched in {} ms.</p>",
        badge(&s(t, &["valid"])),
        escape(&s(t, &["kind"])),
        escape(&s(t, &["model"])),
        n("ok"),
        n("fail"),
        n("info"),
        n("keys"),
        n("micro_ops"),
        n("edges"),
        n("sccs"),
        n("largest_scc"),
        ms(t["infer_ms"].as_f64().unwrap_or(0.0)),
        ms(t["search_ms"].as_f64().unwrap_or(0.0)),
    );
    if let Some(reason) = t.get("reason").and_then(Value::as_str) {
        let _ = write!(b, "<p>{}</p>", escape(reason));
    }
    let models = |k: &str| -> Vec<String> {
        t[k].as_array()
            .map(|a| a.iter().filter_map(|m| m.as_str().map(escape)).collect())
            .unwrap_or_default()
    };
    let (not, also) = (models("not"), models("also_not"));
    if !not.is_empty() {
        let _ = write!(b, "<p id=\"txn-not\">Ruled out: <b>{}</b>", not.join(", "));
        if !also.is_empty() {
            let _ = write!(b, "; also {}", also.join(", "));
        }
        b.push_str(".</p>");
    }
    let anomalies = t["anomalies"].as_object().cloned().unwrap_or_default();
    if anomalies.is_empty() {
        b.push_str("<p>No anomaly found.</p>");
        return;
    }
    let forbidden: Vec<&str> = t["forbidden"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    b.push_str(
        "<table id=\"txn-anomalies\"><tr><th>anomaly</th><th>cases</th><th>forbidden by the \
model</th></tr>",
    );
    for (name, count) in &anomalies {
        let _ = write!(
            b,
            "<tr><td><a href=\"#txn-{0}\">{0}</a></td><td class=num>{1}</td><td>{2}</td></tr>",
            escape(name),
            escape(&text(Some(count))),
            if forbidden.contains(&name.as_str()) {
                "yes"
            } else {
                "no"
            }
        );
    }
    b.push_str("</table>");
    for name in anomalies.keys() {
        let examples = t["examples"][name].as_array().cloned().unwrap_or_default();
        let _ = write!(
            b,
            "<h3 id=\"txn-{0}\">{0}</h3><p class=\"muted\">{1} example{2} of {3}.</p>",
            escape(name),
            examples.len(),
            if examples.len() == 1 { "" } else { "s" },
            escape(&text(anomalies.get(name)))
        );
        for e in &examples {
            b.push_str("<div class=\"txn-example\">");
            let _ = write!(b, "<pre>{}</pre>", escape(&text(e.get("message"))));
            let txns = e["txns"].as_array().cloned().unwrap_or_default();
            if !txns.is_empty() {
                b.push_str(
                    "<table><tr><th>txn</th><th>process</th><th>index</th><th>outcome</th>\
<th>micro-ops</th></tr>",
                );
                for x in &txns {
                    let _ = write!(
                        b,
                        "<tr><td>{}</td><td>{}</td><td class=num>{}</td><td>{}</td>\
<td><code>{}</code></td></tr>",
                        escape(&text(x.get("name"))),
                        escape(&text(x.get("process"))),
                        escape(&text(x.get("index"))),
                        escape(&text(x.get("outcome"))),
                        escape(&text(x.get("ops")))
                    );
                }
                b.push_str("</table>");
            }
            if let Some(svg) = e.get("svg").and_then(Value::as_str) {
                // Built by the checker from escaped text: safe to inline.
                let _ = write!(b, "<div class=\"plot\">{svg}</div>");
            }
            b.push_str("</div>");
        }
    }
}

/// The "Queue" section: the counts (violations highlighted), the per-writer losses as ranges,
/// the drains, and the values behind each finding.
fn queue_section(b: &mut String, q: &Value) {
    let c = &q["counts"];
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    let exactly_once = q["exactly_once"].as_bool().unwrap_or(false);
    let _ = write!(
        b,
        "<h2 id=\"queue\">Queue</h2><p>{} &middot; {} publishes attempted, {} drains judged ({} \
without a list){}. Checked in {} ms.</p>\
<p class=\"muted\">Lost: acknowledged, and read by no drain that began after the acknowledgement. \
Per writer, a lost value below the smallest n read of that writer is <i>prefix</i>, between the \
smallest and largest <i>middle</i> (a hole: the worst case), above the largest (or of a writer \
with nothing read) <i>postfix</i>.</p>",
        badge(&s(q, &["valid"])),
        n("attempted"),
        n("drains"),
        n("drains_failed"),
        if exactly_once {
            ", exactly once: duplicates are violations"
        } else {
            ""
        },
        q.get("elapsed_ms")
            .and_then(Value::as_f64)
            .map_or("-".into(), ms),
    );
    let rows: [(&str, &str, &str, bool); 16] = [
        (
            "attempted",
            "attempted",
            "values some client tried to publish",
            false,
        ),
        (
            "acknowledged",
            "acknowledged",
            "publishes that ended ok",
            false,
        ),
        (
            "failed",
            "failed",
            "publishes that definitely failed",
            false,
        ),
        (
            "indeterminate",
            "indeterminate",
            "publishes that ended info or never completed",
            false,
        ),
        ("read", "read", "distinct values some ok drain read", false),
        ("lost", "lost", "acknowledged, never read", true),
        (
            "lost prefix",
            "lost_prefix",
            "below the writer's first read",
            true,
        ),
        (
            "lost middle",
            "lost_middle",
            "between the writer's first and last read",
            true,
        ),
        (
            "lost postfix",
            "lost_postfix",
            "above the writer's last read",
            true,
        ),
        ("unexpected", "unexpected", "read, never published", true),
        (
            "failed but read",
            "failed_but_read",
            "definitely failed, yet read",
            true,
        ),
        (
            "recovered",
            "recovered",
            "indeterminate and read (fine)",
            false,
        ),
        (
            "duplicated",
            "duplicated",
            "occurrences beyond the first within one drain",
            exactly_once,
        ),
        (
            "inconsistent drains",
            "inconsistent_drains",
            "values one drain read and another lacked although it began later (informational)",
            false,
        ),
        (
            "late",
            "late",
            "acknowledged after the last drain began and not read: not lost",
            false,
        ),
        (
            "drains",
            "drains",
            "drains that ended ok with a list",
            false,
        ),
    ];
    b.push_str("<table id=\"queue-counts\"><tr><th>count</th><th>values</th><th>what</th></tr>");
    for (label, key, what, breaks) in rows {
        let _ = write!(
            b,
            "<tr{}><td>{label}</td><td class=num>{}</td><td>{what}</td></tr>",
            if breaks && n(key) > 0 {
                " class=\"bad\""
            } else {
                ""
            },
            n(key),
        );
    }
    b.push_str("</table>");

    b.push_str(
        "<h3>Per writer</h3><table id=\"queue-writers\"><tr><th>writer</th><th>attempted</th>\
<th>acknowledged</th><th>read</th><th>first n read</th><th>last n read</th><th>lost</th>\
<th>prefix</th><th>middle</th><th>postfix</th><th>lost n</th></tr>",
    );
    for w in q["writers"].as_array().into_iter().flatten() {
        let _ = write!(
            b,
            "<tr{}><td>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td>\
<td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td>\
<td class=num>{}</td><td class=num>{}</td><td>{}</td></tr>",
            if w["lost"].as_u64().unwrap_or(0) > 0 {
                " class=\"bad\""
            } else {
                ""
            },
            s(w, &["writer"]),
            s(w, &["attempted"]),
            s(w, &["acknowledged"]),
            s(w, &["read"]),
            s(w, &["first_read"]),
            s(w, &["last_read"]),
            s(w, &["lost"]),
            s(w, &["lost_prefix"]),
            s(w, &["lost_middle"]),
            s(w, &["lost_postfix"]),
            escape(&s(w, &["lost_ranges"])),
        );
    }
    b.push_str("</table>");

    b.push_str(
        "<h3>Drains</h3><table id=\"queue-drains\"><tr><th>completion index</th><th>process</th>\
<th>node</th><th>invoked s</th><th>completed s</th><th>messages</th><th>distinct</th>\
<th>duplicated</th><th>unexpected</th><th>missing</th></tr>",
    );
    for d in q["drains"].as_array().into_iter().flatten() {
        let _ = write!(
            b,
            "<tr><td class=num>{}</td><td>{}</td><td>{}</td><td class=num>{}</td><td class=num>{}</td>\
<td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td></tr>",
            s(d, &["complete_index"]),
            escape(&s(d, &["process"])),
            escape(&text(d.get("node"))),
            secs(d.get("invoke_time")),
            secs(d.get("complete_time")),
            s(d, &["messages"]),
            s(d, &["distinct"]),
            s(d, &["duplicated"]),
            s(d, &["unexpected"]),
            s(d, &["missing"]),
        );
    }
    b.push_str(
        "</table><p class=\"muted\">Missing: values acknowledged before the drain began that it \
lacks. Examples name drains by their completion index.</p>",
    );

    for (kind, title, count) in [
        ("lost", "Lost", "lost"),
        ("unexpected", "Unexpected", "unexpected"),
        ("failed_but_read", "Failed but read", "failed_but_read"),
        ("duplicated", "Duplicated", "duplicated"),
        (
            "inconsistent_drains",
            "Inconsistent drains",
            "inconsistent_drains",
        ),
    ] {
        let list = q["examples"][kind].as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            continue;
        }
        let _ = write!(
            b,
            "<h3 id=\"queue-{kind}\">{title}</h3><p class=\"muted\">{} listed of {}.</p>\
<table><tr><th>writer</th><th>n</th><th>seq</th><th>detail</th><th>publish</th><th>invoked s</th>\
<th>completed s</th><th>index</th><th>answer</th><th>drains</th></tr>",
            list.len(),
            n(count),
        );
        for x in &list {
            let p = x.get("publish").filter(|p| !p.is_null());
            let detail = match kind {
                "lost" => text(x.get("part")),
                "duplicated" => format!(
                    "{} times{}",
                    s(x, &["occurrences"]),
                    x["seqs"].as_array().map_or(String::new(), |a| format!(
                        ", seqs {}",
                        a.iter()
                            .map(Value::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                ),
                _ => String::new(),
            };
            let list_of = |k: &str| {
                x[k].as_array().map_or(String::new(), |a| {
                    a.iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
            };
            let mut drains = String::new();
            if !list_of("read_by").is_empty() {
                drains = format!("read by {}", list_of("read_by"));
            }
            if !list_of("missing_from").is_empty() {
                drains = format!("{drains}; missing from {}", list_of("missing_from"));
            }
            let answer = p.map_or(String::new(), |p| match p.get("error") {
                Some(e) if !e.is_null() => format!("{} ({})", text(p.get("value")), text(Some(e))),
                _ => text(p.get("value")),
            });
            let _ = write!(
                b,
                "<tr{}><td>{}</td><td class=num>{}</td><td class=num>{}</td><td>{}</td><td>{}</td>\
<td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td>{}</td><td>{}</td></tr>",
                if kind == "lost" && text(x.get("part")) == "middle" {
                    " class=\"hl\""
                } else {
                    ""
                },
                s(x, &["writer"]),
                s(x, &["n"]),
                s(x, &["seq"]),
                escape(&detail),
                escape(&p.map_or("never published".into(), |p| format!(
                    "process {} on {}, {}",
                    text(p.get("process")),
                    text(p.get("node")),
                    text(p.get("outcome"))
                ))),
                secs(p.and_then(|p| p.get("invoke_time"))),
                secs(p.and_then(|p| p.get("complete_time"))),
                p.map_or(String::new(), |p| text(p.get("invoke_index"))),
                escape(&answer),
                escape(&drains),
            );
        }
        b.push_str("</table>");
    }
}

/// Compact data for the timeline canvas: lanes by process, and per op five integers
/// `lane, start, end, outcome, f` with times in tenths of a millisecond.
pub fn timeline_data(p: &Perf) -> String {
    let mut procs: Vec<u64> = p.points.iter().map(|o| o.process).collect();
    procs.sort_unstable();
    procs.dedup();
    let lane: BTreeMap<u64, usize> = procs.iter().enumerate().map(|(i, &p)| (p, i)).collect();
    let fs: Vec<&String> = p.throughput.keys().collect();
    let mut ops = String::with_capacity(p.points.len() * 24);
    for (i, o) in p.points.iter().enumerate() {
        if i > 0 {
            ops.push(',');
        }
        let _ = write!(
            ops,
            "{},{},{},{},{}",
            lane[&o.process],
            (o.start_s * 1e4).round() as u64,
            (o.end_s * 1e4).round() as u64,
            outcome_index(o.outcome),
            fs.iter().position(|f| **f == o.f).unwrap_or(0)
        );
    }
    let faults: Vec<String> = p
        .nemesis
        .iter()
        .map(|f| {
            format!(
                "[{},{},{}]",
                (f.start_s * 1e4).round() as u64,
                (f.stop_s.unwrap_or(p.seconds as f64) * 1e4).round() as u64,
                serde_json::to_string(&f.label).unwrap_or_default()
            )
        })
        .collect();
    format!(
        "{{\"lanes\":{},\"procs\":{},\"fs\":{},\"end\":{},\"faults\":[{}],\"ops\":[{ops}]}}",
        procs.len(),
        serde_json::to_string(&procs).unwrap_or_default(),
        serde_json::to_string(&fs).unwrap_or_default(),
        p.seconds * 10_000,
        faults.join(",")
    )
}

const TIMELINE_JS: &str = r#"(function(){
var d=JSON.parse(document.getElementById('tl-data').textContent);
var c=document.getElementById('tl'),x=c.getContext('2d'),info=document.getElementById('tl-info');
var col=['#0072B2','#D55E00','#E69F00'],oc=['ok','fail','info'],v0=0,v1=Math.max(d.end,1),N=d.ops.length/5;
var lh=Math.max(3,Math.min(14,Math.floor(560/Math.max(d.lanes,1)))),top=18;
function draw(){
 var W=c.clientWidth||960;c.width=W;c.height=top+d.lanes*lh+4;var k=W/(v1-v0),n=0,o=d.ops;
 x.clearRect(0,0,W,c.height);x.font='11px sans-serif';
 d.faults.forEach(function(f){if(f[1]<v0||f[0]>v1)return;var a=(f[0]-v0)*k;x.fillStyle='rgba(86,180,233,0.22)';
  x.fillRect(a,0,Math.max(1,(f[1]-f[0])*k),c.height);x.fillStyle='#000';x.fillText(f[2],Math.max(a,0)+2,11);});
 for(var i=0;i<o.length;i+=5){var s=o[i+1],e=o[i+2];if(e<v0||s>v1)continue;
  x.fillStyle=col[o[i+3]];x.fillRect((s-v0)*k,top+o[i]*lh+1,Math.max(1,(e-s)*k),lh-2);n++;}
 info.textContent='showing '+(v0/1e4).toFixed(2)+' s to '+(v1/1e4).toFixed(2)+' s: '+n+' of '+N+' ops, '+d.lanes+' process lanes';
 c.dataset.drawn=String(n);}
function zoom(f,at){var m=at===undefined?(v0+v1)/2:at,w=(v1-v0)*f;w=Math.min(Math.max(w,10),d.end||1);
 v0=Math.max(0,m-(m-v0)*f);v1=v0+w;if(v1>d.end){v1=Math.max(d.end,1);v0=Math.max(0,v1-w);}draw();}
function pan(f){var w=v1-v0,s=w*f;v0=Math.min(Math.max(0,v0+s),Math.max(0,d.end-w));v1=v0+w;draw();}
document.getElementById('tl-in').onclick=function(){zoom(0.5)};
document.getElementById('tl-out').onclick=function(){zoom(2)};
document.getElementById('tl-left').onclick=function(){pan(-0.5)};
document.getElementById('tl-right').onclick=function(){pan(0.5)};
document.getElementById('tl-reset').onclick=function(){v0=0;v1=Math.max(d.end,1);draw()};
c.addEventListener('wheel',function(e){e.preventDefault();var r=c.getBoundingClientRect();
 zoom(e.deltaY<0?0.8:1.25,v0+(e.clientX-r.left)/r.width*(v1-v0));},{passive:false});
var drag=null;c.addEventListener('mousedown',function(e){drag=e.clientX});
window.addEventListener('mouseup',function(){drag=null});
c.addEventListener('mousemove',function(e){if(drag===null)return;var r=c.getBoundingClientRect();
 var dv=(drag-e.clientX)/r.width*(v1-v0);drag=e.clientX;var w=v1-v0;v0=Math.min(Math.max(0,v0+dv),Math.max(0,d.end-w));v1=v0+w;draw();});
c.addEventListener('click',function(e){var r=c.getBoundingClientRect(),t=v0+(e.clientX-r.left)/r.width*(v1-v0),
 l=Math.floor((e.clientY-r.top-top)/lh),o=d.ops;for(var i=0;i<o.length;i+=5){if(o[i]===l&&o[i+1]<=t&&o[i+2]>=t){
 info.textContent='process '+d.procs[l]+': '+d.fs[o[i+4]]+' '+oc[o[i+3]]+', '+(o[i+1]/1e4).toFixed(4)+' s to '+(o[i+2]/1e4).toFixed(4)+' s ('+((o[i+2]-o[i+1])/10).toFixed(1)+' ms)';return;}}});
window.addEventListener('resize',draw);draw();})();"#;

fn timeline(b: &mut String, p: &Perf) {
    let _ = write!(
        b,
        "<h2 id=\"timeline\">History timeline</h2><p class=\"muted\">One lane per client process; bars from \
invocation to completion: <span style=\"color:#0072B2\">&#9632; ok</span> <span style=\"color:#D55E00\">&#9632; fail</span> \
<span style=\"color:#E69F00\">&#9632; info</span>; shaded: faults. Scroll to zoom, drag to pan, click an op for details.</p>\
<p><button id=\"tl-in\">zoom in</button><button id=\"tl-out\">zoom out</button><button id=\"tl-left\">&larr;</button>\
<button id=\"tl-right\">&rarr;</button><button id=\"tl-reset\">all</button> <span id=\"tl-info\" class=\"muted\"></span></p>\
<div id=\"tl-box\"><canvas id=\"tl\" height=\"100\"></canvas></div>\
<script type=\"application/json\" id=\"tl-data\">{}</script><script>{TIMELINE_JS}</script>",
        timeline_data(p).replace("</", "<\\/")
    );
}

/// One row of the results index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexEntry {
    /// Link to the run's report, relative to the index.
    pub href: String,
    /// Workload name.
    pub workload: String,
    /// The run folder's UTC stamp (sorts by time).
    pub stamp: String,
    /// Build label.
    pub label: String,
    /// Node binary sha256 (first 12 hex digits shown).
    pub sha256: String,
    /// `valid`, `invalid`, `unknown` (or `no results`).
    pub verdict: String,
    /// Completed ops.
    pub ops: Option<usize>,
    /// p99 of ok latency, ms.
    pub p99_ms: Option<f64>,
    /// `available / completed` (see [`crate::availability::is_unavailable`]).
    pub availability: Option<f64>,
}

/// `results/index.html`: every run, newest first.
pub fn index_html(entries: &[IndexEntry]) -> String {
    let mut v: Vec<&IndexEntry> = entries.iter().collect();
    v.sort_by(|a, b| b.stamp.cmp(&a.stamp).then(a.workload.cmp(&b.workload)));
    let mut b = format!(
        "<h1>Faultline runs</h1><p class=\"muted\">{} runs, newest first. Regenerated after every run and by <code>faultline report</code>.</p>\
<table id=\"runs\"><tr><th>time (UTC)</th><th>workload</th><th>build</th><th>verdict</th><th>ops</th><th>p99 ms</th><th>availability</th><th>report</th></tr>",
        v.len()
    );
    for e in v {
        let build = match (e.label.is_empty(), e.sha256.get(..12)) {
            (false, Some(h)) => format!("{} ({h})", e.label),
            (false, None) => e.label.clone(),
            (true, Some(h)) => h.to_string(),
            (true, None) => String::new(),
        };
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td><a href=\"{}\">report</a></td></tr>",
            escape(&e.stamp),
            escape(&e.workload),
            escape(&build),
            badge(&e.verdict),
            e.ops.map_or("-".into(), |x| x.to_string()),
            e.p99_ms.map_or("-".into(), ms),
            e.availability
                .map_or("-".into(), |a| format!("{:.1}%", a * 100.0)),
            escape(&e.href)
        );
    }
    b.push_str("</table>");
    page("Faultline runs", "", &b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perf::tests::history;

    #[rustfmt::skip]
    fn perf() -> Perf {
        Perf::new(&history(&[
            (0, "read",  "ok",   100,  110),
            (7, "write", "fail", 200,  500),
        ]), &[])
    }

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn report_shows_verdict_counterexample_and_plots() {
        let results = serde_json::json!({
            "valid": "invalid",
            "linearizable": {"valid": "invalid", "model": "cas-register", "ops": 2, "elapsed_ms": 1.5,
                "keys": [{"key": "r1", "valid": "invalid", "ops": 2, "configurations": 9, "elapsed_ms": 1.0,
                    "counterexample": {"message": "read 3 but <nothing> wrote 3", "op": {"f": "read"}, "concurrent": [{"process": 4, "f": "write", "input": 3, "outcome": "info"}]}}]},
            "stats": {"by_f": {"read": {"count": 1, "ok": 1, "fail": 0, "info": 0}}, "total": {"count": 2, "ok": 1, "fail": 1, "info": 0}}
        });
        let run = serde_json::json!({"seed": 42, "reproduce": "faultline run x --seed 42", "nodes": [{"name": "n1"}]});
        let files = vec!["history.jsonl".to_string(), "nodes/n1.log".to_string()];
        let html = run_html(&RunReport {
            run: &run,
            results: &results,
            perf: &perf(),
            name: "x/1",
            files: &files,
            counterexample_svg: Some("<svg id=\"cx\"></svg>"),
        });
        assert!(html.contains("data-verdict=\"invalid\""));
        assert!(html.contains("read 3 but &lt;nothing&gt; wrote 3"));
        assert!(
            html.contains("<svg id=\"cx\">"),
            "the run's counterexample.svg"
        );
        assert!(
            html.contains("<td>write</td><td>3</td>"),
            "the concurrent op's row"
        );
        assert!(html.contains("faultline run x --seed 42"));
        assert!(html.contains("href=\"nodes/n1.log\""));
        assert_eq!(
            html.matches("<svg").count(),
            6,
            "five plots and the counterexample"
        );
        assert!(!html.contains("src=\"http"), "no network resources");
        assert!(!html.contains("<script src"));
    }

    fn report_of(results: &Value) -> String {
        run_html(&RunReport {
            run: &Value::Null,
            results,
            perf: &perf(),
            name: "w/1",
            files: &[],
            counterexample_svg: None,
        })
    }

    #[test]
    fn report_shows_watch_guarantees_and_violations_side_by_side() {
        let results = serde_json::json!({
            "valid": "invalid",
            "watch": {"valid": "invalid", "elapsed_ms": 2.0,
                "counts": {"watchers": 2, "streams": 3, "responses": 9, "events": 20, "progress_notifications": 4,
                    "resumes": 1, "canceled": 0, "compactions": 0, "broken": 1, "acknowledged_writes": 7},
                "guarantees": [
                    {"name": "ordered", "promise": "Events are ordered.", "streams": 3, "events": 20, "violations": 0},
                    {"name": "bookmarkable", "promise": "Progress <means> sent.", "streams": 2, "events": 5, "violations": 1}],
                "violations": [{"guarantee": "bookmarkable", "watcher": "w1", "member": "n2", "stream": 1,
                    "time": 1_500_000_000u64, "index": 42, "events": 1,
                    "message": "Event put /k = 118 at revision 118 arrived after a progress notification at revision 120.",
                    "event": {"type": "put", "key": "/k", "value": 118, "mod-revision": 118},
                    "response": {"f": "watch-events", "index": 42, "time": 1_500_000_000u64, "stream": 1, "node": "n2", "revision": 120,
                        "events": [{"type": "put", "key": "/k", "value": 118, "mod-revision": 118}], "events_total": 1, "events_from": 0},
                    "previous": {"f": "watch-progress", "index": 41, "time": 1_400_000_000u64, "stream": 1, "node": "n2", "revision": 120,
                        "events": [], "events_total": 0, "events_from": 0}}]},
            "stats": {"by_f": {}, "total": {"count": 0, "ok": 0, "fail": 0, "info": 0}}
        });
        let html = report_of(&results);
        assert!(html.contains("id=\"watch\""));
        assert!(
            html.contains("<tr class=\"bad\"><td>bookmarkable</td>"),
            "the violated row"
        );
        assert!(html.contains("Progress &lt;means&gt; sent."));
        assert!(html.contains("bookmarkable: watcher w1 on n2, stream 1, at 1.500 s (index 42)"));
        assert!(html.contains("previous on this stream</th><th>offending"));
        assert!(html.contains("<b>watch-progress</b>, stream 1, header revision 120"));
        assert!(
            html.contains("<tr class=\"hl\"><td>put</td><td>/k</td><td>118</td>"),
            "the offending event"
        );
        assert!(
            !html.contains("id=\"anomalies\"") && !html.contains("id=\"keys\""),
            "no linearizability sections"
        );
        assert!(
            !html.contains("src=\"http") && !html.contains("<link"),
            "self-contained"
        );
    }

    #[test]
    fn report_shows_lease_promise_beside_observation() {
        let results = serde_json::json!({
            "valid": "invalid",
            "lease": {"valid": "invalid", "tolerance_ms": 100.0,
                "counts": {"leases": 1, "grants": 1, "keepalives_ok": 3, "observations": 1},
                "violation_counts": {"revoked-while-kept-alive": 1},
                "violations": [{"kind": "revoked-while-kept-alive", "lease": 7587, "time": 6_000_000_000u64, "index": 5,
                    "message": "Lease 7587 was gone 2000 ms early.", "promised_until": 8_000_000_000u64, "ttl": 5, "early_ms": 2000.0,
                    "promise": {"f": "lease-keepalive", "process": 1, "node": "n2", "invoke_index": 2, "invoke_time": 3_000_000_000u64,
                        "complete_index": 3, "complete_time": 3_010_000_000u64, "value": {"lease": 7587, "ttl": 5}},
                    "observation": {"f": "lease-keepalive", "process": 1, "node": "n3", "invoke_index": 4, "invoke_time": 5_990_000_000u64,
                        "complete_index": 5, "complete_time": 6_000_000_000u64, "value": {"lease": 7587, "ttl": 0}}}]},
            "stats": {"by_f": {}, "total": {"count": 0, "ok": 0, "fail": 0, "info": 0}}
        });
        let html = report_of(&results);
        assert!(html.contains("id=\"lease\""));
        assert!(html.contains("revoked-while-kept-alive: lease 7587 at 6.000 s, 2000 ms early"));
        assert!(html.contains("<th>promise</th><th>observation</th>"));
        assert!(html.contains("<tr><th>promised until s</th><td>8.000</td></tr>"));
        assert!(
            html.contains("{&quot;lease&quot;:7587,&quot;ttl&quot;:0}"),
            "the observation's answer"
        );
        assert!(!html.contains("id=\"anomalies\""));
    }

    #[test]
    fn report_shows_a_jepsen_checkers_counts_and_errors() {
        let lines = [
            r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"read","value":null}"#,
            r#"{"index":1,"time":2,"process":0,"type":"ok","f":"read","value":{"0":10,"1":10}}"#,
            r#"{"index":2,"time":3,"process":1,"type":"invoke","f":"transfer","value":{"from":0,"to":1,"amount":5}}"#,
            r#"{"index":3,"time":4,"process":1,"type":"ok","f":"transfer","value":{"from":0,"to":1,"amount":5}}"#,
            r#"{"index":4,"time":5,"process":0,"type":"invoke","f":"read","value":null}"#,
            r#"{"index":5,"time":6,"process":0,"type":"ok","f":"read","value":{"0":5,"1":12}}"#,
        ];
        let h = crate::parse_history(&(lines.join("\n") + "\n"), false).unwrap();
        let r = crate::check_history(&h, &crate::CheckOptions::default()).unwrap();
        let results = serde_json::to_value(&r).unwrap();
        assert_eq!(results["bank"]["counts"]["wrong_total"], 1);
        let html = report_of(&results);
        assert!(html.contains("data-verdict=\"invalid\""));
        assert!(html.contains("id=\"bank\"") && html.contains("id=\"bank-counts\""));
        assert!(html.contains("<tr><td>wrong_total</td><td class=num>1</td></tr>"));
        assert!(html.contains(
            "<td>wrong-total</td><td class=num>5</td><td class=num>6</td><td>0</td>\
<td>balances sum to 17, expected 20 (off by -3)</td>"
        ));
        assert!(!html.contains("id=\"set\""));
    }

    #[test]
    fn report_shows_txn_anomalies_cycles_and_svgs() {
        // Write skew: G2-item under strict serializability.
        let lines = [
            r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"txn","value":[["r",1,null],["r",2,null],["append",1,1]]}"#,
            r#"{"index":1,"time":2,"process":1,"type":"invoke","f":"txn","value":[["r",1,null],["r",2,null],["append",2,1]]}"#,
            r#"{"index":2,"time":3,"process":0,"type":"ok","f":"txn","value":[["r",1,[]],["r",2,[]],["append",1,1]]}"#,
            r#"{"index":3,"time":4,"process":1,"type":"ok","f":"txn","value":[["r",1,[]],["r",2,[]],["append",2,1]]}"#,
        ];
        let h = crate::parse_history(&(lines.join("\n") + "\n"), false).unwrap();
        let r = crate::check_history(&h, &crate::CheckOptions::default()).unwrap();
        let results = serde_json::to_value(&r).unwrap();
        let html = report_of(&results);
        assert!(html.contains("data-verdict=\"invalid\""));
        assert!(html.contains("id=\"txn\"") && html.contains("id=\"txn-anomalies\""));
        assert!(html.contains("<a href=\"#txn-G2-item\">G2-item</a>"));
        assert!(html.contains("Ruled out: <b>repeatable-read</b>"));
        assert!(html.contains("<code>[:r 1 []] [:r 2 []] [:append 1 1]</code>"));
        assert!(html.contains("-rw-&gt;"));
        assert!(html.contains("<svg") && html.contains("marker-end"));
    }

    #[test]
    fn report_shows_queue_counts_writers_and_lost_values() {
        // Writer 1 publishes 0..=3; the drain reads 0 and 2, and 9.9 nobody published.
        let mut lines = Vec::new();
        for n in 0..4u64 {
            lines.push(format!(
                r#"{{"time":{},"process":1,"type":"invoke","f":"publish","value":{{"writer":1,"n":{n}}},"node":"n2"}}"#,
                n * 2_000_000
            ));
            lines.push(format!(
                r#"{{"time":{},"process":1,"type":"ok","f":"publish","value":{{"writer":1,"n":{n},"seq":{}}},"node":"n2"}}"#,
                n * 2_000_000 + 1_000_000,
                n + 1
            ));
        }
        lines.push(
            r#"{"time":10000000,"process":2,"type":"invoke","f":"drain","value":null,"node":"n1"}"#
                .into(),
        );
        lines.push(r#"{"time":20000000,"process":2,"type":"ok","f":"drain","value":[{"writer":1,"n":0,"seq":1},{"writer":1,"n":2,"seq":3},{"writer":9,"n":9,"seq":5}],"node":"n1"}"#.into());
        let h = crate::parse_history(&(lines.join("\n") + "\n"), false).unwrap();
        let r = crate::check_history(&h, &crate::CheckOptions::default()).unwrap();
        let results = serde_json::to_value(&r).unwrap();
        assert_eq!(results["queue"]["counts"]["lost"], 2);
        let html = report_of(&results);
        assert!(html.contains("id=\"queue\""));
        assert!(html.contains("data-verdict=\"invalid\""));
        assert!(
            html.contains("<tr class=\"bad\"><td>lost</td><td class=num>2</td>"),
            "lost highlighted"
        );
        assert!(html.contains("<tr><td>recovered</td><td class=num>0</td>"));
        assert!(
            html.contains("<td>1, 3</td></tr>"),
            "the writer's lost ranges"
        );
        assert!(html.contains("id=\"queue-lost\""));
        assert!(html.contains("<tr class=\"hl\"><td>1</td><td class=num>1</td><td class=num>2</td><td>middle</td><td>process 1 on n2, ok</td>"));
        assert!(html.contains(
            "<td>9</td><td class=num>9</td><td class=num>5</td><td></td><td>never published</td>"
        ));
        assert!(
            !html.contains("id=\"anomalies\""),
            "no linearizability sections"
        );
        assert!(
            !html.contains("src=\"http") && !html.contains("<link"),
            "self-contained"
        );
    }

    #[test]
    fn timeline_data_is_compact_and_lanes_by_process() {
        let d: Value = serde_json::from_str(&timeline_data(&perf())).unwrap();
        assert_eq!(d["lanes"], 2);
        assert_eq!(d["procs"], serde_json::json!([0, 7]));
        // lane, start, end (tenths of ms), outcome, f index ("read" < "write")
        assert_eq!(
            d["ops"],
            serde_json::json!([0, 1000, 1100, 0, 0, 1, 2000, 5000, 1, 1])
        );
    }

    #[test]
    fn index_lists_newest_first() {
        let e = |stamp: &str, v: &str| IndexEntry {
            href: format!("w/{stamp}/report.html"),
            workload: "w".into(),
            stamp: stamp.into(),
            verdict: v.into(),
            ..IndexEntry::default()
        };
        let html = index_html(&[
            e("20260101T000000Z", "valid"),
            e("20270101T000000Z", "invalid"),
        ]);
        let a = html.find("20270101T000000Z").unwrap();
        let b = html.find("20260101T000000Z").unwrap();
        assert!(a < b);
        assert!(html.contains("badge invalid"));
    }

    /// A seeded synthetic history of `n` ops over 6 processes, with a partition in the middle.
    pub(crate) fn big_history(n: usize, seed: u64) -> crate::History {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut lines = Vec::with_capacity(2 * n + 2);
        let span_ns = 20 * n as u64 * 1000; // 20 µs per op: 2 s per 100,000 ops... scaled below
        let per_proc = n / 6;
        let fs = ["read", "write", "cas"];
        let mut events: Vec<(u64, String)> = Vec::with_capacity(2 * n + 2);
        for p in 0..6u64 {
            let mut t = rng.random_range(0..1_000_000u64);
            for _ in 0..per_proc {
                let f = fs[rng.random_range(0..3)];
                let lat = rng.random_range(500_000..5_000_000u64)
                    * if rng.random_bool(0.01) { 100 } else { 1 };
                let kind = match rng.random_range(0..100) {
                    0..=89 => "ok",
                    90..=96 => "fail",
                    _ => "info",
                };
                events.push((
                    t,
                    format!(r#""process":{p},"type":"invoke","f":"{f}","value":null"#),
                ));
                events.push((
                    t + lat,
                    format!(r#""process":{p},"type":"{kind}","f":"{f}","value":null"#),
                ));
                t += lat + rng.random_range(0..2_000_000u64);
            }
        }
        let _ = span_ns;
        let end = events.iter().map(|e| e.0).max().unwrap_or(0);
        events.push((
            end / 3,
            r#""process":"nemesis","type":"info","f":"start-partition","value":{"kind":"halves"}"#
                .into(),
        ));
        events.push((
            end / 2,
            r#""process":"nemesis","type":"info","f":"stop-partition","value":{"heal":true}"#
                .into(),
        ));
        events.sort_by_key(|e| e.0);
        for (i, (t, rest)) in events.iter().enumerate() {
            lines.push(format!("{{\"index\":{i},\"time\":{t},{rest}}}"));
        }
        crate::parse_history(&lines.join("\n"), false).unwrap()
    }

    #[test]
    fn a_100k_op_report_stays_bounded() {
        let h = big_history(100_000, 1);
        let started = std::time::Instant::now();
        let p = Perf::new(&h, &[]);
        let results = serde_json::json!({"valid": "valid", "linearizable": {"keys": []}});
        let html = run_html(&RunReport {
            run: &Value::Null,
            results: &results,
            perf: &p,
            name: "big",
            files: &[],
            counterexample_svg: None,
        });
        eprintln!(
            "100,000-op report: {} bytes in {:.2} s (seed 1)",
            html.len(),
            started.elapsed().as_secs_f64()
        );
        assert_eq!(p.points.len(), 99_996);
        // The scatter is sampled to 20,000 points; the timeline keeps every op in compact form.
        assert!(
            html.contains("ok sampled: 20000 of 99996 shown") || html.contains("of 99996 shown")
        );
        assert!(html.len() < 12_000_000, "{} bytes", html.len());
    }
}
