//! elle-cli's Jepsen histories (`elle/elle-cli/`) get the verdicts elle-cli 0.1.9 gives them
//! (its `test.sh`), with the options it is run with, and the invalid ones for the right
//! reason. The Elle (txn) histories of that folder are another test's.

use std::path::PathBuf;

use faultline_checker::{
    BankOptions, CounterOptions, History, LongForkOptions, SetFullOptions, SetOptions, Validity,
    check_bank, check_counter, check_history, check_long_fork, check_set, check_set_full,
    parse_edn_value, read_history,
};

use crate::testdata;

fn path(name: &str) -> PathBuf {
    testdata().join("elle/elle-cli").join(name)
}

fn history(name: &str) -> History {
    read_history(&path(name)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn bank_is_valid() {
    let h = history("bank.edn");
    let r = check_bank(&h, &BankOptions::default());
    assert_eq!(r.valid, Validity::Valid, "{:?}", r.errors);
    // Ten accounts, 100 in account 0 at first; the reads that ended ok, not the info one.
    assert_eq!(
        (r.total, r.total_inferred, r.accounts.len()),
        (Some(100), true, 10)
    );
    assert_eq!((r.counts.reads, r.counts.errors), (168, 0));
    assert_eq!(
        (
            r.counts.transfers,
            r.counts.transfers_ok,
            r.counts.transfers_failed
        ),
        (152, 53, 99)
    );
    // With Jepsen's test map (the total given) it is the same.
    let given = BankOptions {
        total: Some(100),
        ..BankOptions::default()
    };
    assert_eq!(check_bank(&h, &given).valid, Validity::Valid);
    // And a wrong total would be caught on every read.
    let wrong = BankOptions {
        total: Some(99),
        ..BankOptions::default()
    };
    let r = check_bank(&h, &wrong);
    assert_eq!((r.valid, r.counts.wrong_total), (Validity::Invalid, 168));
    // By content: a transfer means the bank checker.
    let all = check_history(&h, &Default::default()).unwrap();
    assert_eq!(all.valid, Validity::Valid);
    assert!(all.bank.is_some() && all.linearizable.is_none());
}

#[test]
fn bank_neg_is_valid_with_or_without_negative_balances_allowed() {
    // One read of {0 10, 1 10, 2 10}: nothing negative in it, so both options agree (elle-cli's
    // test runs it without -n).
    let h = history("bank-neg.edn");
    for negative_balances_allowed in [false, true] {
        let opts = BankOptions {
            negative_balances_allowed,
            ..BankOptions::default()
        };
        let r = check_bank(&h, &opts);
        assert_eq!(r.valid, Validity::Valid);
        assert_eq!((r.counts.reads, r.total), (1, Some(30)));
    }
}

#[test]
fn bank_tidb_is_invalid_for_reads_with_the_wrong_total() {
    let h = history("bank-tidb.edn");
    let r = check_bank(&h, &BankOptions::default());
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!(r.total, Some(100));
    assert_eq!(r.counts.reads, 1805);
    // Every error is a wrong total: no unknown account, null or negative balance.
    assert_eq!(r.counts.errors, r.counts.wrong_total);
    assert!(r.errors.iter().all(|e| e.kind == "wrong-total"));
    // 1731 of the 1805 reads (counted independently from the file's text), the first the
    // read completed at index 258, with 105.
    assert_eq!(r.counts.wrong_total, 1731);
    let first = r.first_error.as_ref().unwrap();
    assert_eq!(
        (first.kind, first.index, first.line),
        ("wrong-total", 258, 259)
    );
    assert!(first.message.contains("off by +5"), "{}", first.message);
    let (lo, hi) = (r.lowest.as_ref().unwrap(), r.highest.as_ref().unwrap());
    assert_eq!((lo.total, hi.total), (97, 267));
    assert_eq!((r.deviations[&-3], r.deviations[&5]), (25, 30));
    assert_eq!(
        r.deviations.values().sum::<usize>(),
        r.counts.wrong_total,
        "every wrong total is tallied"
    );
    // The first one, as the file has it.
    let text = std::fs::read_to_string(path("bank-tidb.edn")).unwrap();
    let line = text.lines().nth(first.line - 1).unwrap();
    assert!(
        line.contains(":ok, :f :read") && line.contains(&format!(":index {}}}", first.index)),
        "{line}"
    );
    let value =
        parse_edn_value(&line[line.find(":value ").unwrap() + 7..line.find(", :index").unwrap()])
            .unwrap();
    let sum: i64 = value
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_ne!(sum, 100);
    assert!(
        first
            .message
            .contains(&format!("sum to {sum}, expected 100")),
        "{}",
        first.message
    );
    let lines = check_history(&h, &Default::default())
        .unwrap()
        .anomaly_lines();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("bank wrong-total: "), "{lines:?}");
}

#[test]
fn counter_is_valid() {
    let h = history("counter.edn");
    let r = check_counter(&h, &CounterOptions::default());
    assert_eq!(r.valid, Validity::Valid);
    // 287 acknowledged adds of 1 and no read at all.
    assert_eq!((r.counts.adds_ok, r.counts.reads), (287, 0));
    assert_eq!(r.final_bounds, [287, 287]);
    let all = check_history(&h, &Default::default()).unwrap();
    assert!(
        all.counter.is_some(),
        "adds of integers and no list read: the counter"
    );
    assert_eq!(all.valid, Validity::Valid);
}

#[test]
fn set_is_valid() {
    let h = history("set.edn");
    let r = check_set(&h, &SetOptions::default());
    assert_eq!(r.valid, Validity::Valid);
    assert_eq!(
        (r.counts.attempted, r.counts.acknowledged, r.counts.ok),
        (3, 3, 3)
    );
    let all = check_history(&h, &Default::default()).unwrap();
    assert!(all.set.is_some(), "a read of a list: the set");
    assert_eq!(all.valid, Validity::Valid);
}

#[test]
fn set_full_is_invalid_every_added_pair_lost() {
    // The adds add pairs [0 i]; the one read lists the numbers 0..292, none of which is a pair.
    let h = history("set_full.edn");
    let r = check_set_full(&h, &SetFullOptions::default());
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!((r.counts.attempted, r.counts.reads), (293, 1));
    assert_eq!(
        (r.counts.lost, r.counts.stable, r.counts.never_read),
        (293, 0, 0)
    );
    assert_eq!(r.lost[0], serde_json::json!([0, 0]));
    let e = &r.errors[0];
    assert_eq!((e.kind, e.index, e.line), ("lost", 587, 588));
    assert!(
        e.message.starts_with("[0,0] (known at index 1)"),
        "{}",
        e.message
    );
    // Jepsen's plain set says the same, for both reasons.
    let r = check_set(&h, &SetOptions::default());
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!((r.counts.lost, r.counts.unexpected), (293, 293));
}

/// long-fork.edn's ops have no `:process`: the EDN reader takes them as process 0's, pairing
/// them in order as Jepsen does.
fn long_fork_history() -> History {
    history("long-fork.edn")
}

#[test]
fn long_fork_is_invalid_with_group_size_3() {
    let h = long_fork_history();
    let opts = LongForkOptions {
        group_size: Some(3),
    };
    let r = check_long_fork(&h, &opts);
    assert_eq!(r.valid, Validity::Invalid);
    assert_eq!((r.counts.reads, r.counts.groups, r.counts.forks), (2, 1, 1));
    let f = &r.forks[0];
    // The first read saw 1 but not 2 written, the second 2 but not 1.
    assert_eq!((f.a_index, f.b_index), (1, 3));
    assert_eq!((f.a_only.as_str(), f.b_only.as_str()), ("1", "2"));
    assert_eq!(f.a_read, "0=1 1=1 2=nil");
    // Another group size makes the history illegal, as in Jepsen (elle-cli's default, 0, too).
    for n in [0, 2] {
        let opts = LongForkOptions {
            group_size: Some(n),
        };
        assert_eq!(check_long_fork(&h, &opts).valid, Validity::Unknown);
    }
    let all = check_history(&h, &Default::default()).unwrap();
    assert!(all.long_fork.is_some());
    assert_eq!(all.valid, Validity::Invalid);
}
