//! The generator: which operation each client process issues next, and when.
//!
//! Every choice (function, key, value) flows from the run's seed. Keys are *independent*
//! (Jepsen's `independent` generator): a small pool of active keys, each retired after a fixed
//! number of operations and replaced by a fresh one, so that every key's history stays short
//! enough to check exhaustively.
//!
//! The generator never sleeps and never talks to the network: the runner asks it for the next
//! operation and for the pause before it.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An operation's function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum F {
    /// Read a key's value.
    Read,
    /// Write a value.
    Write,
    /// Compare-and-set: `[expected, new]`.
    Cas,
    /// Append a value unique to its key to the list at the key (reads then return the list).
    Append,
    /// A transaction: the value is a list of micro-ops, Elle's `["append", k, v]`,
    /// `["w", k, v]` and `["r", k, null]` (a completion fills in each read's result).
    Txn,
    /// A bank transfer: `{"from": a, "to": b, "amount": n}`.
    Transfer,
    /// A bank read of every account: `null`, completed with `{"<account>": balance, ...}`.
    BankRead,
}

impl F {
    /// The name written in histories.
    pub fn name(self) -> &'static str {
        match self {
            F::Read => "read",
            F::Write => "write",
            F::Cas => "cas",
            F::Append => "append",
            F::Txn => "txn",
            F::Transfer => "transfer",
            F::BankRead => "read",
        }
    }
}

/// One operation to invoke.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    /// What to do.
    pub f: F,
    /// Which key (`r0`, `r1`, ...).
    pub key: String,
    /// The argument: `null` for a read, the value for a write, `[old, new]` for a cas.
    pub value: Value,
}

impl Op {
    /// Whether the operation cannot change anything: a read, a bank read, or a transaction of
    /// reads only. Not knowing its outcome is then the same as it not having happened.
    pub fn read_only(&self) -> bool {
        match self.f {
            F::Read | F::BankRead => true,
            F::Txn => self
                .value
                .as_array()
                .is_some_and(|ops| ops.iter().all(|m| m[0] == "r")),
            F::Write | F::Cas | F::Append | F::Transfer => false,
        }
    }
}

/// Relative weights of the functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// Weight of reads.
    #[serde(default)]
    pub read: u32,
    /// Weight of writes.
    #[serde(default)]
    pub write: u32,
    /// Weight of compare-and-sets.
    #[serde(default)]
    pub cas: u32,
    /// Weight of list appends (each appends a value not yet appended to its key, so that a
    /// read shows exactly which appends took effect, and in which order). Not mixed with
    /// writes and compare-and-sets: a key holds either a register or a list.
    #[serde(default)]
    pub append: u32,
    /// Each cas compares against the value its process last read of that key (a process that
    /// has read nothing of the key reads first) and writes a value unique in the run, as a
    /// client doing read-modify-write does; so two acknowledged cas from one read value are two
    /// updates from the same state. Default false: random `[from, to]` within `value-range`.
    #[serde(
        default,
        rename = "cas-from-read",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub cas_from_read: bool,
}

impl Mix {
    /// The sum of the weights.
    pub fn total(&self) -> u32 {
        self.read + self.write + self.cas + self.append
    }
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            read: 1,
            write: 1,
            cas: 1,
            append: 0,
            cas_from_read: false,
        }
    }
}

/// How the generator chooses keys and values.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    /// Function weights.
    pub mix: Mix,
    /// How many keys are in use at once.
    pub active_keys: usize,
    /// Operations on one key before it is retired for a fresh one (0: never).
    pub ops_per_key: u64,
    /// Values written are drawn from `0..value_range` (small ranges make CAS succeed often).
    pub value_range: u32,
    /// Target total rate of operations per second across all processes (0: as fast as possible).
    pub rate: f64,
    /// Number of client processes sharing that rate.
    pub concurrency: usize,
    /// What an operation is: a register or list operation (the mix above), a transaction or a
    /// bank operation.
    pub shape: Shape,
}

/// What the generator makes.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Shape {
    /// Single-key operations from the mix.
    #[default]
    Register,
    /// Elle's transactions (`[txn]`).
    Txn(crate::txn::TxnSpec),
    /// Bank transfers and reads (`[bank]`).
    Bank(crate::txn::BankSpec),
}

struct ActiveKey {
    id: u64,
    used: u64,
    /// The next value to append to this key (appended values are 0, 1, 2, ... per key).
    next_append: u64,
}

impl ActiveKey {
    /// A key that has seen no operation yet.
    fn fresh(id: u64) -> Self {
        Self {
            id,
            used: 0,
            next_append: 0,
        }
    }
}

/// A seeded source of operations.
pub struct Generator {
    config: GeneratorConfig,
    rng: ChaCha8Rng,
    keys: Vec<ActiveKey>,
    next_key: u64,
    /// Every key handed out so far, for the final reads.
    touched: Vec<String>,
    txn: Option<crate::txn::TxnGen>,
    bank: Option<crate::txn::BankGen>,
}

impl Generator {
    /// A generator whose choices all follow from `seed`.
    ///
    /// # Panics
    /// When the mix has no positive weight or no key may be active (the workload parser rejects
    /// both before this is reached).
    pub fn new(config: GeneratorConfig, seed: u64) -> Self {
        assert!(config.mix.total() > 0, "empty op mix");
        assert!(config.active_keys > 0, "no active keys");
        let keys = (0..config.active_keys as u64)
            .map(ActiveKey::fresh)
            .collect();
        let touched = (0..config.active_keys)
            .map(|id| key_name(id as u64))
            .collect();
        let (txn, bank) = match &config.shape {
            Shape::Register => (None, None),
            Shape::Txn(spec) => (Some(crate::txn::TxnGen::new(spec.clone())), None),
            Shape::Bank(spec) => (None, Some(crate::txn::BankGen::new(spec.clone()))),
        };
        Self {
            txn,
            bank,
            next_key: config.active_keys as u64,
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            keys,
            touched,
        }
    }

    /// The next operation.
    pub fn next_op(&mut self) -> Op {
        if let Some(g) = &mut self.txn {
            return g.next_op(&mut self.rng);
        }
        if let Some(g) = &mut self.bank {
            return g.next_op(&mut self.rng);
        }
        let m = self.config.mix;
        let pick = self.rng.random_range(0..m.total());
        let f = if pick < m.read {
            F::Read
        } else if pick < m.read + m.write {
            F::Write
        } else if pick < m.read + m.write + m.cas {
            F::Cas
        } else {
            F::Append
        };
        let slot = self.rng.random_range(0..self.keys.len());
        let key = key_name(self.keys[slot].id);
        let appended = self.keys[slot].next_append;
        if f == F::Append {
            self.keys[slot].next_append += 1;
        }
        self.keys[slot].used += 1;
        if self.config.ops_per_key > 0 && self.keys[slot].used >= self.config.ops_per_key {
            self.keys[slot] = ActiveKey::fresh(self.next_key);
            self.touched.push(key_name(self.next_key));
            self.next_key += 1;
        }
        let range = self.config.value_range.max(1);
        let value = match f {
            F::Read => Value::Null,
            F::Write => json!(self.rng.random_range(0..range)),
            F::Cas => json!([
                self.rng.random_range(0..range),
                self.rng.random_range(0..range)
            ]),
            F::Append => json!(appended),
            // Not in a register mix: transactions and bank operations have their own generators.
            F::Txn | F::Transfer | F::BankRead => Value::Null,
        };
        Op { f, key, value }
    }

    /// The pause a process takes before its next operation so that all processes together come
    /// near the target rate: exponentially distributed with mean `concurrency / rate` (Jepsen's
    /// stagger), which avoids processes marching in lockstep.
    pub fn pause(&mut self) -> Duration {
        if self.config.rate <= 0.0 {
            return Duration::ZERO;
        }
        let mean = self.config.concurrency.max(1) as f64 / self.config.rate;
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        Duration::from_secs_f64((-u.ln() * mean).min(mean * 10.0))
    }

    /// Whether a cas compares against its process's last read (`[ops] cas-from-read`).
    pub fn cas_from_read(&self) -> bool {
        self.config.mix.cas_from_read
    }

    /// Every key handed out so far, in order of first use.
    pub fn touched_keys(&self) -> &[String] {
        &self.touched
    }
}

fn key_name(id: u64) -> String {
    format!("r{id}")
}

/// A writer's wait before its next operation when writers pace themselves (the watch and queue
/// workloads): an exponentially distributed gap of mean `mean` seconds, so the writers together
/// make a Poisson stream at the workload's rate; no wait when `mean` is `None`. False when
/// `stop` came first.
pub async fn pace(
    rng: &mut impl Rng,
    mean: Option<f64>,
    stop: &tokio_util::sync::CancellationToken,
) -> bool {
    let Some(mean) = mean else {
        return !stop.is_cancelled();
    };
    let gap = -mean * (1.0 - rng.random::<f64>()).ln();
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(Duration::from_secs_f64(gap)) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GeneratorConfig {
        GeneratorConfig {
            mix: Mix::default(),
            active_keys: 3,
            ops_per_key: 10,
            value_range: 5,
            rate: 100.0,
            concurrency: 4,
            shape: Shape::Register,
        }
    }

    #[test]
    fn same_seed_same_operations_and_pauses() {
        let (mut a, mut b) = (Generator::new(config(), 7), Generator::new(config(), 7));
        for _ in 0..200 {
            assert_eq!(a.next_op(), b.next_op());
            assert_eq!(a.pause(), b.pause());
        }
        let mut c = Generator::new(config(), 8);
        let mut a = Generator::new(config(), 7);
        let differ = (0..50).any(|_| a.next_op() != c.next_op());
        assert!(differ, "seeds 7 and 8 gave the same 50 operations");
    }

    #[test]
    fn keys_are_retired_after_their_operation_budget() {
        let mut g = Generator::new(config(), 1);
        let mut per_key = std::collections::HashMap::<String, u64>::new();
        for _ in 0..300 {
            *per_key.entry(g.next_op().key).or_default() += 1;
        }
        assert!(per_key.values().all(|&n| n <= 10), "{per_key:?}");
        // 300 ops at 10 per key: about 30 keys, all of them listed for the final reads.
        assert!(per_key.len() >= 28, "{}", per_key.len());
        for k in per_key.keys() {
            assert!(
                g.touched_keys().contains(k),
                "{k} missing from touched keys"
            );
        }
    }

    #[test]
    fn appends_carry_values_unique_to_their_key() {
        let mut cfg = config();
        cfg.mix = Mix {
            read: 1,
            write: 0,
            cas: 0,
            append: 2,
            cas_from_read: false,
        };
        let mut g = Generator::new(cfg, 5);
        let mut seen = std::collections::HashMap::<String, Vec<u64>>::new();
        let mut reads = 0;
        for _ in 0..600 {
            let op = g.next_op();
            match op.f {
                F::Append => seen
                    .entry(op.key)
                    .or_default()
                    .push(op.value.as_u64().expect("an append's value is an integer")),
                F::Read => reads += 1,
                f => panic!("{f:?} is not in the mix"),
            }
        }
        assert!(reads > 100, "{reads} reads of 600 at weight 1:2");
        for (key, values) in seen {
            let want: Vec<u64> = (0..values.len() as u64).collect();
            assert_eq!(values, want, "appends to {key} are not 0, 1, 2, ...");
        }
    }

    #[test]
    fn mix_weights_are_respected() {
        let mut cfg = config();
        cfg.mix = Mix {
            read: 0,
            write: 1,
            cas: 0,
            append: 0,
            cas_from_read: false,
        };
        let mut g = Generator::new(cfg.clone(), 3);
        assert!((0..100).all(|_| g.next_op().f == F::Write));
        cfg.mix = Mix {
            read: 3,
            write: 1,
            cas: 0,
            append: 0,
            cas_from_read: false,
        };
        let mut g = Generator::new(cfg, 3);
        let reads = (0..4000).filter(|_| g.next_op().f == F::Read).count();
        assert!(
            (2700..3300).contains(&reads),
            "{reads} reads of 4000 at weight 3:1"
        );
    }

    #[test]
    fn values_have_the_shape_of_their_function() {
        let mut g = Generator::new(config(), 11);
        for _ in 0..200 {
            let op = g.next_op();
            match op.f {
                F::Read => assert!(op.value.is_null()),
                F::Write => assert!(op.value.as_u64().is_some_and(|v| v < 5)),
                F::Cas => assert_eq!(op.value.as_array().map(Vec::len), Some(2)),
                f => panic!("the default mix has no {f:?}"),
            }
        }
    }

    #[test]
    fn a_txn_shape_makes_transactions_from_the_same_seed_alike() {
        let mut cfg = config();
        cfg.shape = Shape::Txn(crate::txn::TxnSpec::default());
        let (mut a, mut b) = (Generator::new(cfg.clone(), 9), Generator::new(cfg, 9));
        for _ in 0..100 {
            let op = a.next_op();
            assert_eq!(op.f, F::Txn);
            assert!(op.key.is_empty(), "a txn names its keys in its value");
            assert_eq!(op, b.next_op());
        }
    }

    #[test]
    fn pauses_average_concurrency_over_rate() {
        let mut g = Generator::new(config(), 5);
        let n = 20_000;
        let total: f64 = (0..n).map(|_| g.pause().as_secs_f64()).sum();
        let mean = total / n as f64;
        // concurrency 4 / rate 100 = 40 ms.
        assert!((0.036..0.044).contains(&mean), "mean pause {mean}");
        let mut unlimited = config();
        unlimited.rate = 0.0;
        assert_eq!(Generator::new(unlimited, 5).pause(), Duration::ZERO);
    }
}
