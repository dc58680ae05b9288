//! What an invalid verdict shows.

use faultline_checker::{CheckOptions, Validity, check, read_history};

use crate::testdata;

#[test]
fn knossos_bad_analysis_blames_a_spurious_read() {
    // Knossos's own test expects the read of 2 or 3 that appears out of nowhere.
    let h = read_history(&testdata().join("knossos/cas-register/bad/bad-analysis.edn")).unwrap();
    let r = check(&h, &CheckOptions::default()).unwrap();
    assert_eq!(r.valid, Validity::Invalid);
    let c = r.counterexample().unwrap();
    assert_eq!(c.op.f, "read");
    assert!([21, 22].contains(&c.op.process), "{:?}", c.op);
    // The other spurious read and the pending write are concurrent with it.
    let procs: Vec<u64> = c.concurrent.iter().map(|o| o.process).collect();
    assert!(procs.contains(&20), "{procs:?}");
    // Before it returns the register holds 0, or 1 if the crashed write took effect.
    let mut states: Vec<String> = c.states_before.iter().map(|v| v.to_string()).collect();
    states.sort();
    assert_eq!(states, ["0", "1"]);
    assert!(c.states_complete);
    assert!(c.prefix_length >= 4);
    assert!(
        c.svg.contains("process 21") && c.svg.contains("#d00"),
        "{}",
        c.svg
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["valid"], "invalid");
    assert_eq!(json["keys"][0]["counterexample"]["op"]["f"], "read");
}

#[test]
fn mutex_counterexample_is_found() {
    let h = read_history(&testdata().join("knossos/mutex/bad/etcd.edn")).unwrap();
    let r = check(&h, &CheckOptions::default()).unwrap();
    assert_eq!(r.valid, Validity::Invalid);
    let c = r.counterexample().unwrap();
    assert!(["acquire", "release"].contains(&c.op.f.as_str()));
    assert!(!c.states_before.is_empty());
}
