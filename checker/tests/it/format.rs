//! Reading histories: malformed input is reported with its line and problem.

use faultline_checker::{Error, OpType, Process, parse_history, read_history};

fn jsonl(lines: &[&str]) -> String {
    lines.join("\n") + "\n"
}

const W0: &str = r#"{"index":0,"time":10,"process":1,"type":"invoke","f":"write","key":"r1","value":3,"node":"n1"}"#;
const W1: &str =
    r#"{"index":1,"time":20,"process":1,"type":"ok","f":"write","key":"r1","value":3,"node":"n1"}"#;

fn err(text: &str) -> Error {
    parse_history(text, false).expect_err("should not parse")
}

#[test]
fn reads_every_field_of_a_jsonl_op() {
    let nem = r#"{"index":2,"time":30,"process":"nemesis","type":"info","f":"start-partition","value":{"kind":"halves"}}"#;
    let h = parse_history(&jsonl(&[W0, W1, nem]), false).unwrap();
    let op = &h.ops[0];
    assert_eq!(
        (op.index, op.time, op.process),
        (0, Some(10), Process::Client(1))
    );
    assert_eq!(
        (op.kind, op.f.as_str(), op.key.as_deref()),
        (OpType::Invoke, "write", Some("r1"))
    );
    assert_eq!(
        (op.value.clone(), op.node.as_deref()),
        (serde_json::json!(3), Some("n1"))
    );
    assert_eq!(h.ops[2].process, Process::Nemesis);
    assert_eq!(h.operations.len(), 1);
    assert!(h.warnings.is_empty());
}

#[test]
fn unknown_type_names_line_and_field() {
    let e = err(&jsonl(&[
        W0,
        r#"{"index":1,"process":1,"type":"done","f":"write","value":3}"#,
    ]));
    assert_eq!(e.line(), Some(2));
    let m = e.to_string();
    assert!(m.contains("\"type\"") && m.contains("done"), "{m}");
}

#[test]
fn missing_and_ill_typed_fields_are_named() {
    let e = err(&jsonl(&[r#"{"index":0,"type":"invoke","f":"read"}"#]));
    assert_eq!(e.line(), Some(1));
    assert!(e.to_string().contains("missing field \"process\""), "{e}");
    let e = err(&jsonl(&[
        W0,
        W1,
        r#"{"index":2,"time":"soon","process":1,"type":"invoke","f":"read"}"#,
    ]));
    assert_eq!(e.line(), Some(3));
    assert!(e.to_string().contains("\"time\""), "{e}");
    let e = err(&jsonl(&[
        r#"{"index":0,"process":"bob","type":"invoke","f":"read"}"#,
    ]));
    assert!(e.to_string().contains("\"process\""), "{e}");
}

#[test]
fn malformed_line_in_the_middle_is_an_error() {
    let e = err(&jsonl(&[W0, r#"{"index":1,"process":1,"#, W1]));
    assert_eq!(e.line(), Some(2));
    assert!(e.to_string().contains("invalid JSON"), "{e}");
}

#[test]
fn truncated_last_line_is_a_warning() {
    let text = format!("{W0}\n{W1}\n{}", &W0[..30]);
    let h = parse_history(&text, false).unwrap();
    assert_eq!(h.ops.len(), 2);
    assert_eq!(h.warnings.len(), 1);
    assert!(h.warnings[0].contains("line 3"), "{:?}", h.warnings);
}

#[test]
fn completion_without_invocation_names_its_line() {
    let e = err(&jsonl(&[W1]));
    assert!(matches!(e, Error::Invalid { line: 1, .. }), "{e}");
    assert!(e.to_string().contains("without an invocation"), "{e}");
}

#[test]
fn second_invocation_while_outstanding_is_an_error() {
    let e = err(&jsonl(&[W0, W0]));
    assert_eq!(e.line(), Some(2));
    assert!(e.to_string().contains("outstanding"), "{e}");
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("history.jsonl");
    std::fs::write(&p, jsonl(&[W0, r#"{"process":1,"type":"ok"}"#])).unwrap();
    let m = read_history(&p).unwrap_err().to_string();
    assert!(
        m.contains("history.jsonl") && m.contains("line 2") && m.contains("\"f\""),
        "{m}"
    );
    let e = read_history(&dir.path().join("nope.jsonl")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }));
}

#[test]
fn edn_errors_name_line_and_field() {
    let e = parse_history(
        "[{:process 1 :type :invoke :f :read}\n {:process 1 :type :ok}]",
        true,
    )
    .unwrap_err();
    assert_eq!(e.line(), Some(2));
    assert!(e.to_string().contains(":f"), "{e}");
    let e = parse_history(
        "[{:process 1 :type :invoke :f :read}\n {:process 1 :type :ok :f :read",
        true,
    )
    .unwrap_err();
    assert!(e.to_string().contains("not closed"), "{e}");
}

#[test]
fn edn_sequence_without_vector_and_open_invocations_are_info() {
    let h = parse_history(
        "{:process 0 :type :invoke :f :write :value 1}\n{:process 1, :type :invoke, :f :read}\n{:process 0 :type :ok :f :write :value 1}",
        true,
    )
    .unwrap();
    assert_eq!(h.operations.len(), 2);
    assert_eq!(h.operations[1].outcome, faultline_checker::Outcome::Info);
}

#[test]
fn escaped_strings_and_extra_fields_are_read_too() {
    let h = parse_history(
        &jsonl(&[
            r#"{"index":0,"process":1,"type":"invoke","f":"wr\u0069te","key":"r\"1","value":"a\nb"}"#,
            r#"{"index":1,"process":1,"type":"fail","f":"write","key":"r\"1","value":"a\nb","error":"timeout"}"#,
        ]),
        false,
    )
    .unwrap();
    assert_eq!(h.ops[0].f, "write");
    assert_eq!(h.ops[0].key.as_deref(), Some("r\"1"));
    assert_eq!(h.ops[0].value, serde_json::json!("a\nb"));
    assert_eq!(h.operations[0].outcome, faultline_checker::Outcome::Fail);
}

#[test]
fn error_field_round_trips_from_jsonl() {
    let text = jsonl(&[
        W0,
        r#"{"index":1,"time":20,"process":1,"type":"fail","f":"write","key":"r1","value":3,"node":"n1","error":"cas-mismatch"}"#,
        r#"{"index":2,"time":30,"process":2,"type":"invoke","f":"read","error":null}"#,
        r#"{"index":3,"time":40,"process":2,"type":"info","f":"read","error":["no-leader",503]}"#,
    ]);
    let h = parse_history(&text, false).unwrap();
    let errors: Vec<_> = h.ops.iter().map(|o| o.error.as_deref()).collect();
    assert_eq!(
        errors,
        vec![None, Some("cas-mismatch"), None, Some("no-leader 503")]
    );
    // Written back as JSON, the error is kept, and absent where there is none.
    let back: String = h
        .ops
        .iter()
        .map(|o| serde_json::to_string(o).unwrap() + "\n")
        .collect();
    assert!(back.contains(r#""error":"cas-mismatch""#), "{back}");
    assert_eq!(back.matches("\"error\"").count(), 2, "{back}");
    assert_eq!(parse_history(&back, false).unwrap().ops, h.ops);
}

#[test]
fn error_field_is_read_from_edn_keywords_strings_and_vectors() {
    let h = parse_history(
        r#"[{:process 0 :type :invoke :f :acquire}
 {:process 0 :type :fail :f :acquire :error :already-held}
 {:process 1 :type :invoke :f :read :error nil}
 {:process 1 :type :info :f :read :error "etcdserver: no leader"}
 {:process 2 :type :invoke :f :release}
 {:process 2 :type :fail :f :release :error [:not-found "lease not found"]}
 {:process 3 :type :invoke :f :read}
 {:process 3 :type :info :f :read :error [:temporarily-unavailable nil]}]"#,
        true,
    )
    .unwrap();
    let errors: Vec<_> = h.ops.iter().map(|o| o.error.as_deref()).collect();
    assert_eq!(
        errors,
        vec![
            None,
            Some("already-held"),
            None,
            Some("etcdserver: no leader"),
            None,
            Some("not-found lease not found"),
            None,
            Some("temporarily-unavailable"),
        ]
    );
}
