//! A search that blows up ends as `unknown` with a reason, never a hang or an OOM kill.

use std::time::Duration;

use faultline_checker::{CheckOptions, ModelKind, Validity, check, read_history};

use crate::testdata;

#[test]
fn memory_budget_turns_a_blow_up_into_unknown() {
    // Porcupine's c50-bad: key "0" explores millions of configurations when searched to the end.
    let h = read_history(&testdata().join("porcupine/kv/c50-bad.edn")).unwrap();
    let opts = CheckOptions {
        model: Some(ModelKind::Kv),
        stop_on_invalid: false,
        memory_limit: 8 << 20,
        threads: Some(1),
        ..CheckOptions::default()
    };
    let r = check(&h, &opts).unwrap();
    assert_eq!(r.valid, Validity::Invalid, "other keys are found invalid");
    let k0 = r
        .keys
        .iter()
        .find(|k| k.key.as_deref() == Some("0"))
        .unwrap();
    assert_eq!(k0.valid, Validity::Unknown);
    assert!(
        k0.reason.as_deref().unwrap().contains("memory budget"),
        "{:?}",
        k0.reason
    );
}

#[test]
fn time_limit_turns_a_blow_up_into_unknown() {
    // All 50 clients' appends on 10 keys in one model state: far too many states to enumerate.
    let h = read_history(&testdata().join("porcupine/kv/c50-bad.edn")).unwrap();
    let opts = CheckOptions {
        model: Some(ModelKind::Kv),
        partition: false,
        time_limit: Some(Duration::from_millis(300)),
        ..CheckOptions::default()
    };
    let r = check(&h, &opts).unwrap();
    if r.valid == Validity::Unknown {
        assert!(
            r.reason.as_deref().unwrap().contains("time limit"),
            "{:?}",
            r.reason
        );
    } else {
        // A fast machine may find the violation in time; it must then be the right verdict.
        assert_eq!(r.valid, Validity::Invalid);
    }
}

#[test]
fn stopping_at_the_first_invalid_key_marks_the_rest_unknown() {
    let h = read_history(&testdata().join("porcupine/kv/c50-bad.edn")).unwrap();
    let opts = CheckOptions {
        model: Some(ModelKind::Kv),
        threads: Some(1),
        ..CheckOptions::default()
    };
    let r = check(&h, &opts).unwrap();
    assert_eq!(r.valid, Validity::Invalid);
    for k in r.keys.iter().filter(|k| k.valid == Validity::Unknown) {
        assert!(
            k.reason
                .as_deref()
                .unwrap()
                .contains("not checked to the end"),
            "{:?}",
            k.reason
        );
    }
    assert!(r.counterexample().is_some());
}
