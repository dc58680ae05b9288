//! Each model on small hand-written histories (EDN tables, one op per line).

use faultline_checker::{CheckOptions, ModelKind, Validity, check, parse_history};

fn verdict(model: ModelKind, edn: &str) -> Validity {
    let h = parse_history(edn, true).unwrap_or_else(|e| panic!("{e}"));
    let opts = CheckOptions {
        model: Some(model),
        stop_on_invalid: false,
        ..CheckOptions::default()
    };
    check(&h, &opts).unwrap_or_else(|e| panic!("{e}")).valid
}

#[test]
#[rustfmt::skip]
fn cas_register_reads_nil_until_written_and_cas_needs_the_old_value() {
    let ok = "[{:process 0 :type :invoke :f :read :value nil}
               {:process 0 :type :ok     :f :read :value nil}
               {:process 0 :type :invoke :f :write :value 1}
               {:process 0 :type :ok     :f :write :value 1}
               {:process 1 :type :invoke :f :cas :value [1 2]}
               {:process 1 :type :ok     :f :cas :value [1 2]}
               {:process 2 :type :invoke :f :cas :value [1 3]}
               {:process 2 :type :fail   :f :cas :value [1 3]}
               {:process 0 :type :invoke :f :read :value nil}
               {:process 0 :type :ok     :f :read :value 2}]";
    assert_eq!(verdict(ModelKind::CasRegister, ok), Validity::Valid);
    let bad = ok.replace(":ok     :f :read :value 2", ":ok     :f :read :value 3");
    assert_eq!(verdict(ModelKind::CasRegister, &bad), Validity::Invalid);
}

#[test]
#[rustfmt::skip]
fn an_info_read_constrains_nothing() {
    let h = "[{:process 0 :type :invoke :f :write :value 1}
              {:process 0 :type :ok     :f :write :value 1}
              {:process 1 :type :invoke :f :read :value nil}
              {:process 1 :type :info   :f :read :value nil}]";
    assert_eq!(verdict(ModelKind::CasRegister, h), Validity::Valid);
}

#[test]
#[rustfmt::skip]
fn mutex_cannot_be_acquired_twice() {
    let bad = "[{:process 0 :type :invoke :f :acquire}
                {:process 0 :type :ok     :f :acquire}
                {:process 1 :type :invoke :f :acquire}
                {:process 1 :type :ok     :f :acquire}]";
    assert_eq!(verdict(ModelKind::Mutex, bad), Validity::Invalid);
    let ok = "[{:process 0 :type :invoke :f :acquire}
               {:process 0 :type :ok     :f :acquire}
               {:process 1 :type :invoke :f :acquire}
               {:process 0 :type :invoke :f :release}
               {:process 0 :type :ok     :f :release}
               {:process 1 :type :ok     :f :acquire}]";
    assert_eq!(verdict(ModelKind::Mutex, ok), Validity::Valid);
}

#[test]
#[rustfmt::skip]
fn kv_appends_concatenate_per_key_from_empty() {
    let ok = r#"[{:process 0 :type :invoke :f :append :key "a" :value "x"}
                 {:process 0 :type :ok     :f :append :key "a" :value "x"}
                 {:process 1 :type :invoke :f :append :key "a" :value "y"}
                 {:process 2 :type :invoke :f :get    :key "a" :value nil}
                 {:process 2 :type :ok     :f :get    :key "a" :value "xy"}
                 {:process 1 :type :ok     :f :append :key "a" :value "y"}
                 {:process 2 :type :invoke :f :get    :key "b" :value nil}
                 {:process 2 :type :ok     :f :get    :key "b" :value ""}
                 {:process 2 :type :invoke :f :put    :key "a" :value "z"}
                 {:process 2 :type :ok     :f :put    :key "a" :value "z"}
                 {:process 2 :type :invoke :f :get    :key "a" :value nil}
                 {:process 2 :type :ok     :f :get    :key "a" :value "z"}]"#;
    assert_eq!(verdict(ModelKind::Kv, ok), Validity::Valid);
    let bad = ok.replace(r#":value "xy"}"#, r#":value "yx"}"#);
    assert_eq!(verdict(ModelKind::Kv, &bad), Validity::Invalid);
}

#[test]
#[rustfmt::skip]
fn list_append_reads_the_whole_list() {
    let ok = "[{:process 0 :type :invoke :f :append :key 1 :value 5}
               {:process 0 :type :ok     :f :append :key 1 :value 5}
               {:process 0 :type :invoke :f :append :key 1 :value 6}
               {:process 1 :type :invoke :f :read   :key 1 :value nil}
               {:process 1 :type :ok     :f :read   :key 1 :value [5]}
               {:process 1 :type :invoke :f :read   :key 1 :value nil}
               {:process 1 :type :ok     :f :read   :key 1 :value [5 6]}]";
    assert_eq!(verdict(ModelKind::ListAppend, ok), Validity::Valid);
    let bad = ok.replace(":value [5 6]", ":value [6 5]");
    assert_eq!(verdict(ModelKind::ListAppend, &bad), Validity::Invalid);
}

#[test]
#[rustfmt::skip]
fn multi_register_txns_are_atomic() {
    let bad = "[{:process 0 :type :invoke :f :txn :value [[:write :x 1] [:write :y 1]]}
                {:process 0 :type :ok     :f :txn :value [[:write :x 1] [:write :y 1]]}
                {:process 1 :type :invoke :f :txn :value [[:read :x nil] [:read :y nil]]}
                {:process 1 :type :ok     :f :txn :value [[:read :x 1] [:read :y 2]]}]";
    assert_eq!(verdict(ModelKind::MultiRegister, bad), Validity::Invalid);
    let ok = bad.replace("[:read :y 2]", "[:read :y 1]");
    assert_eq!(verdict(ModelKind::MultiRegister, &ok), Validity::Valid);
}

#[test]
fn an_unknown_function_is_a_model_error_naming_its_line() {
    let h = parse_history(
        "[{:process 0 :type :invoke :f :read}\n{:process 0 :type :ok :f :read :value 1}\n{:process 0 :type :invoke :f :frob :value 1}]",
        true,
    )
    .unwrap();
    let opts = CheckOptions {
        model: Some(ModelKind::CasRegister),
        ..CheckOptions::default()
    };
    let e = check(&h, &opts).unwrap_err();
    assert_eq!(e.line(), Some(3));
    assert!(e.to_string().contains("frob"), "{e}");
}

/// Forty appends left indeterminate at once (clients cut off with a deposed leader), one of them
/// seen by a read: checked without trying every subset and order of the forty.
fn many_indeterminate_appends(last_read: &str) -> String {
    let mut h = String::from(
        "[{:process 0 :type :invoke :f :append :key 1 :value 0}
          {:process 0 :type :ok     :f :append :key 1 :value 0}\n",
    );
    for p in 1..=40 {
        h += &format!(
            "{{:process {p} :type :invoke :f :append :key 1 :value {}}}\n",
            100 + p
        );
    }
    for p in 1..=40 {
        h += &format!(
            "{{:process {p} :type :info   :f :append :key 1 :value {}}}\n",
            100 + p
        );
    }
    h += "{:process 0 :type :invoke :f :read :key 1 :value nil}
          {:process 0 :type :ok     :f :read :key 1 :value [0 105]}
          {:process 0 :type :invoke :f :append :key 1 :value 1}
          {:process 0 :type :ok     :f :append :key 1 :value 1}
          {:process 0 :type :invoke :f :read :key 1 :value nil}\n";
    h += &format!("{{:process 0 :type :ok     :f :read :key 1 :value {last_read}}}]");
    h
}

#[test]
fn indeterminate_appends_no_read_shows_do_not_blow_up_the_search() {
    let check_small = |edn: &str| {
        let h = parse_history(edn, true).unwrap_or_else(|e| panic!("{e}"));
        let opts = CheckOptions {
            model: Some(ModelKind::ListAppend),
            memory_limit: 16 << 20,
            ..CheckOptions::default()
        };
        check(&h, &opts).unwrap_or_else(|e| panic!("{e}")).valid
    };
    assert_eq!(
        check_small(&many_indeterminate_appends("[0 105 1]")),
        Validity::Valid
    );
    // The acknowledged append of 1 is missing: a lost write.
    assert_eq!(
        check_small(&many_indeterminate_appends("[0 105]")),
        Validity::Invalid
    );
    // 104 was never seen before; appearing after 1 is fine (it was indeterminate).
    assert_eq!(
        check_small(&many_indeterminate_appends("[0 105 1 104]")),
        Validity::Valid
    );
    // 105 cannot move behind 1.
    assert_eq!(
        check_small(&many_indeterminate_appends("[0 1 105]")),
        Validity::Invalid
    );
}
