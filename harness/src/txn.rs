//! The transactional workloads: Elle's list-append and rw-register transactions, and Jepsen's
//! bank, as `[txn]` and `[bank]` tables and their seeded generators.
//!
//! A transaction is one operation `f = "txn"` whose value lists micro-ops: `["append", k, v]`,
//! `["w", k, v]`, `["r", k, null]` (the completion fills in each read). Keys are integers from a
//! rotating pool, as Elle's generator: `keys` keys are active at once, and a key that has taken
//! `max-writes-per-key` writes is retired for a fresh one, so every key's history stays short and
//! its version order easy to recover. Written values are 1, 2, 3, ... per key: unique, so a read
//! names the transaction that wrote what it saw.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::generator::{F, Op};

/// Which micro-ops a transaction has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TxnKind {
    /// `append` and `r` of lists: reads reveal the whole version order.
    #[default]
    ListAppend,
    /// `w` and `r` of registers.
    RwRegister,
}

impl TxnKind {
    /// The name used in workload files.
    pub fn as_str(self) -> &'static str {
        match self {
            TxnKind::ListAppend => "list-append",
            TxnKind::RwRegister => "rw-register",
        }
    }
}

/// The `[txn]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct TxnSpec {
    /// list-append or rw-register. Default list-append.
    pub kind: TxnKind,
    /// Keys active at once. Default 10.
    pub keys: u64,
    /// Writes a key takes before it is retired. Default 32.
    pub max_writes_per_key: u64,
    /// Fewest micro-ops in a transaction. Default 1.
    pub min_ops: usize,
    /// Most micro-ops in a transaction. Default 4.
    pub max_ops: usize,
    /// The consistency model the system promises and the history is checked against:
    /// read-uncommitted, read-committed, repeatable-read, snapshot-isolation, serializable or
    /// strict-serializable. Default strict-serializable.
    pub model: String,
    /// A stronger model whose anomalies are also looked for and reported, without making the
    /// run invalid unless `model` forbids them (to show a system's documented anomalies beside
    /// a check aimed at what it promises). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
}

impl Default for TxnSpec {
    fn default() -> Self {
        Self {
            kind: TxnKind::ListAppend,
            keys: 10,
            max_writes_per_key: 32,
            min_ops: 1,
            max_ops: 4,
            model: "strict-serializable".into(),
            search: None,
        }
    }
}

/// The consistency models a `[txn]` table may name.
pub const MODELS: &[&str] = &[
    "read-uncommitted",
    "read-committed",
    "repeatable-read",
    "snapshot-isolation",
    "serializable",
    "strict-serializable",
];

/// The `[bank]` table: `accounts` accounts holding `total` together; transfers of 1 to
/// `max-transfer` between two of them, and reads of every balance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct BankSpec {
    /// Accounts. Default 5.
    pub accounts: u64,
    /// The sum of every balance, which no transfer changes. Default 100.
    pub total: i64,
    /// The largest transfer. Default 5.
    pub max_transfer: i64,
}

impl Default for BankSpec {
    fn default() -> Self {
        Self {
            accounts: 5,
            total: 100,
            max_transfer: 5,
        }
    }
}

/// Elle's generator of transactions over a rotating key pool.
#[derive(Debug, Clone)]
pub struct TxnGen {
    spec: TxnSpec,
    /// The active keys and the writes each has taken.
    active: Vec<(u64, u64)>,
    next_key: u64,
}

impl TxnGen {
    /// Keys `0..keys` active, none written.
    pub fn new(spec: TxnSpec) -> Self {
        let active = (0..spec.keys.max(1)).map(|k| (k, 0)).collect();
        Self {
            next_key: spec.keys.max(1),
            spec,
            active,
        }
    }

    /// The next transaction: `min-ops..=max-ops` micro-ops, each a read or a write (even odds)
    /// of an active key.
    pub fn next_op(&mut self, rng: &mut ChaCha8Rng) -> Op {
        let n = rng.random_range(self.spec.min_ops.max(1)..=self.spec.max_ops.max(1));
        let mut ops = Vec::with_capacity(n);
        for _ in 0..n {
            let slot = rng.random_range(0..self.active.len());
            let key = self.active[slot].0;
            if rng.random_bool(0.5) {
                ops.push(json!(["r", key, null]));
                continue;
            }
            self.active[slot].1 += 1;
            let value = self.active[slot].1;
            let f = match self.spec.kind {
                TxnKind::ListAppend => "append",
                TxnKind::RwRegister => "w",
            };
            ops.push(json!([f, key, value]));
            if value >= self.spec.max_writes_per_key.max(1) {
                self.active[slot] = (self.next_key, 0);
                self.next_key += 1;
            }
        }
        Op {
            f: F::Txn,
            key: String::new(),
            value: Value::Array(ops),
        }
    }
}

/// Jepsen's bank generator: reads and transfers at even odds.
#[derive(Debug, Clone)]
pub struct BankGen {
    spec: BankSpec,
}

impl BankGen {
    /// A generator over `spec`'s accounts.
    pub fn new(spec: BankSpec) -> Self {
        Self { spec }
    }

    /// A read of every balance, or a transfer between two different accounts.
    pub fn next_op(&mut self, rng: &mut ChaCha8Rng) -> Op {
        let n = self.spec.accounts.max(2);
        if rng.random_bool(0.5) {
            return Op {
                f: F::BankRead,
                key: String::new(),
                value: Value::Null,
            };
        }
        let from = rng.random_range(0..n);
        let to = (from + rng.random_range(1..n)) % n;
        let amount = rng.random_range(1..=self.spec.max_transfer.max(1));
        Op {
            f: F::Transfer,
            key: String::new(),
            value: json!({ "from": from, "to": to, "amount": amount }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rand::SeedableRng;

    use super::*;

    #[test]
    fn txns_have_the_asked_length_and_values_unique_per_key() {
        let seed = 7;
        println!("seed {seed}");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let spec = TxnSpec {
            keys: 3,
            max_writes_per_key: 5,
            min_ops: 2,
            max_ops: 3,
            ..TxnSpec::default()
        };
        let mut g = TxnGen::new(spec);
        let mut written: HashMap<u64, Vec<u64>> = HashMap::new();
        let mut reads = 0;
        for _ in 0..500 {
            let op = g.next_op(&mut rng);
            assert_eq!(op.f, F::Txn);
            let mops = op.value.as_array().unwrap();
            assert!((2..=3).contains(&mops.len()), "{mops:?}");
            for m in mops {
                let key = m[1].as_u64().unwrap();
                match m[0].as_str().unwrap() {
                    "append" => written.entry(key).or_default().push(m[2].as_u64().unwrap()),
                    "r" => {
                        assert!(m[2].is_null());
                        reads += 1;
                    }
                    other => panic!("{other} in a list-append txn"),
                }
            }
        }
        assert!(reads > 300, "{reads} reads");
        // Every key takes 1, 2, ... up to 5 and is then retired: many keys, each short.
        assert!(written.len() > 50, "{} keys", written.len());
        for (k, vs) in &written {
            let want: Vec<u64> = (1..=vs.len() as u64).collect();
            assert_eq!(vs, &want, "key {k}");
            assert!(vs.len() <= 5, "key {k} took {} writes", vs.len());
        }
    }

    #[test]
    fn rw_register_txns_write_registers() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut g = TxnGen::new(TxnSpec {
            kind: TxnKind::RwRegister,
            ..TxnSpec::default()
        });
        let names: std::collections::BTreeSet<String> = (0..200)
            .flat_map(|_| g.next_op(&mut rng).value.as_array().unwrap().clone())
            .map(|m| m[0].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["r".to_string(), "w".to_string()].into());
    }

    #[test]
    fn transfers_move_money_between_two_different_accounts() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut g = BankGen::new(BankSpec::default());
        let (mut reads, mut transfers) = (0, 0);
        for _ in 0..1000 {
            let op = g.next_op(&mut rng);
            match op.f {
                F::BankRead => reads += 1,
                F::Transfer => {
                    transfers += 1;
                    let v = &op.value;
                    assert_ne!(v["from"], v["to"]);
                    assert!(v["from"].as_u64().unwrap() < 5 && v["to"].as_u64().unwrap() < 5);
                    assert!((1..=5).contains(&v["amount"].as_i64().unwrap()));
                }
                f => panic!("{f:?}"),
            }
        }
        assert!(reads > 400 && transfers > 400, "{reads} {transfers}");
    }
}
