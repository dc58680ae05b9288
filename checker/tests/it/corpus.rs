//! Every history of the shared corpus gets its known verdict.

use std::path::{Path, PathBuf};

use faultline_checker::{
    CheckOptions, FailReading, ModelKind, Outcome, Validity, check, read_history,
};

use crate::testdata;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "edn"))
        .collect();
    v.sort();
    v
}

fn verdict(path: &Path, model: ModelKind) -> Validity {
    verdict_read(path, model, FailReading::default())
}

fn verdict_read(path: &Path, model: ModelKind, fail_reading: FailReading) -> Validity {
    let h = read_history(path).unwrap_or_else(|e| panic!("{e}"));
    // Knossos's own test starts its multi-register at {:x 0 :y 0}.
    let initial = (model == ModelKind::MultiRegister).then(|| serde_json::json!({"x": 0, "y": 0}));
    let opts = CheckOptions {
        model: Some(model),
        initial,
        fail_reading,
        ..CheckOptions::default()
    };
    let r = check(&h, &opts).unwrap_or_else(|e| panic!("{e}"));
    if r.valid == Validity::Invalid {
        let c = r
            .counterexample()
            .expect("an invalid result has a counterexample");
        assert!(c.svg.starts_with("<svg") && c.svg.ends_with("</svg>"));
    }
    r.valid
}

fn expect_all(dir: &str, model: ModelKind, expected: impl Fn(&Path) -> Validity) -> usize {
    let fs = files(&testdata().join(dir));
    assert!(!fs.is_empty(), "no files in {dir}");
    let wrong: Vec<String> = fs
        .iter()
        .filter_map(|f| {
            let (want, got) = (expected(f), verdict(f, model));
            (want != got).then(|| format!("{}: expected {want}, got {got}", f.display()))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    fs.len()
}

#[test]
fn knossos_cas_register_good_histories_are_linearizable() {
    expect_all("knossos/cas-register/good", ModelKind::CasRegister, |_| {
        Validity::Valid
    });
}

#[test]
fn knossos_cas_register_bad_histories_are_not() {
    expect_all("knossos/cas-register/bad", ModelKind::CasRegister, |_| {
        Validity::Invalid
    });
}

#[test]
fn knossos_multi_register_good_is_linearizable() {
    expect_all(
        "knossos/multi-register/good",
        ModelKind::MultiRegister,
        |_| Validity::Valid,
    );
}

#[test]
fn knossos_mutex_etcd_is_not_linearizable() {
    expect_all("knossos/mutex/bad", ModelKind::Mutex, |_| Validity::Invalid);
}

#[test]
fn porcupine_etcd_histories_match_their_names() {
    let n = expect_all("porcupine/etcd", ModelKind::CasRegister, |f| {
        let name = f.file_name().unwrap().to_string_lossy();
        if name.contains(".valid.") {
            Validity::Valid
        } else {
            Validity::Invalid
        }
    });
    assert_eq!(n, 102);
}

/// Item 1 of issue 25: every CAS-register history of the corpus under both readings of a
/// `:fail` (none of them records why a fail failed). Knossos's histories keep Knossos's verdicts
/// under Knossos's reading, Porcupine's keep Porcupine's under Porcupine's; the histories whose
/// verdict differs between the readings are listed here, so that a change shows.
#[test]
fn fail_readings_keep_each_corpus_verdict_and_the_differences_are_known() {
    let mut differ = Vec::new();
    let mut observing_fails = 0;
    for (dir, own) in [
        ("knossos/cas-register/good", FailReading::Knossos),
        ("knossos/cas-register/bad", FailReading::Knossos),
        ("porcupine/etcd", FailReading::Porcupine),
    ] {
        for f in files(&testdata().join(dir)) {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let expected = if dir.ends_with("good") || name.contains(".valid.") {
                Validity::Valid
            } else {
                Validity::Invalid
            };
            let h = read_history(&f).unwrap();
            observing_fails += h
                .operations
                .iter()
                .filter(|o| o.outcome == Outcome::Fail && h.invocation(o).f == "cas")
                .count();
            let knossos = verdict_read(&f, ModelKind::CasRegister, FailReading::Knossos);
            let porcupine = verdict_read(&f, ModelKind::CasRegister, FailReading::Porcupine);
            let recorded = verdict_read(&f, ModelKind::CasRegister, FailReading::Recorded);
            let mine = if own == FailReading::Knossos {
                knossos
            } else {
                porcupine
            };
            assert_eq!(
                mine, expected,
                "{dir}/{name} under its own checker's reading"
            );
            assert_eq!(
                recorded, knossos,
                "{dir}/{name}: no error recorded, so as Knossos"
            );
            if knossos != porcupine {
                differ.push(format!(
                    "{dir}/{name}: knossos {knossos}, porcupine {porcupine}"
                ));
            }
        }
    }
    assert!(
        observing_fails > 1700,
        "the corpus has failed CASes: {observing_fails}"
    );
    assert_eq!(
        differ, KNOWN_DIFFERENCES,
        "histories whose verdict depends on the reading"
    );
}

/// Corpus histories whose verdict differs between Knossos's and Porcupine's reading of a fail
/// (measured; README, "Failed operations"): 9 of Knossos's linearizable histories have a
/// failed CAS that no linearization can explain as a mismatch. All 102 of Porcupine's etcd
/// histories keep their verdicts under both readings.
const KNOWN_DIFFERENCES: &[&str] = &[
    "knossos/cas-register/good/memstress3-54.edn: knossos valid, porcupine invalid",
    "knossos/cas-register/good/mongodb-v0-ack-rollback-0.edn: knossos valid, porcupine invalid",
    "knossos/cas-register/good/mongodb-v0-ack-rollback-1.edn: knossos valid, porcupine invalid",
    "knossos/cas-register/good/mongodb-v0-ack-rollback-2.edn: knossos valid, porcupine invalid",
    "knossos/cas-register/good/mongodb-v0-ack-rollback-3.edn: knossos valid, porcupine invalid",
    "knossos/cas-register/good/mongodb-v0-ack-rollback-4.edn: knossos valid, porcupine invalid",
    "knossos/cas-register/good/mongodb-v0-ack-rollback-5.edn: knossos valid, porcupine invalid",
    "knossos/cas-register/good/mongodb-v0-ack-rollback-7.edn: knossos valid, porcupine invalid",
    "knossos/cas-register/good/mongodb-v0-ack-rollback-8.edn: knossos valid, porcupine invalid",
];

#[test]
fn porcupine_kv_histories_match_their_names_per_key() {
    expect_all("porcupine/kv", ModelKind::Kv, |f| {
        let name = f.file_name().unwrap().to_string_lossy();
        if name.contains("-ok") {
            Validity::Valid
        } else {
            Validity::Invalid
        }
    });
}

#[test]
fn porcupine_kv_small_histories_match_unpartitioned() {
    for (name, want) in [
        ("c01-ok", Validity::Valid),
        ("c01-bad", Validity::Invalid),
        ("c10-ok", Validity::Valid),
        ("c10-bad", Validity::Invalid),
    ] {
        let h = read_history(&testdata().join(format!("porcupine/kv/{name}.edn"))).unwrap();
        let opts = CheckOptions {
            model: Some(ModelKind::Kv),
            partition: false,
            ..CheckOptions::default()
        };
        let r = check(&h, &opts).unwrap();
        assert_eq!(r.valid, want, "{name}");
        assert_eq!(r.keys.len(), 1);
    }
}

#[test]
fn inferred_models_match_the_corpus() {
    let cases = [
        (
            "knossos/cas-register/good/cas-register-bug.edn",
            ModelKind::CasRegister,
        ),
        ("knossos/mutex/bad/etcd.edn", ModelKind::Mutex),
        (
            "knossos/multi-register/good/multi-register.edn",
            ModelKind::MultiRegister,
        ),
        ("porcupine/kv/c01-ok.edn", ModelKind::Kv),
    ];
    for (f, m) in cases {
        let h = read_history(&testdata().join(f)).unwrap();
        assert_eq!(ModelKind::infer(&h), m, "{f}");
    }
}
