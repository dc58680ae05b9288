//! The replicated state machine: a map from keys to JSON values, plus the members' addresses.
//!
//! Commands are applied in log order and must be deterministic: the outcome depends only on the
//! state and the command (no clocks, no randomness, no iteration over hash maps).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A member's addresses, carried in membership changes and snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addrs {
    /// Peer (Raft transport) address, `host:port`.
    pub peer: String,
    /// Client (HTTP API) address, `host:port`.
    pub client: String,
}

impl Addrs {
    /// Parses `peerhost:port/clienthost:port`.
    ///
    /// # Errors
    /// A message saying what is malformed.
    pub fn parse(s: &str) -> Result<Addrs, String> {
        let (peer, client) = s
            .split_once('/')
            .ok_or_else(|| format!("address {s:?} must be PEERHOST:PORT/CLIENTHOST:PORT"))?;
        for a in [peer, client] {
            let (host, port) = a
                .rsplit_once(':')
                .ok_or_else(|| format!("address {a:?} has no port"))?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(format!("address {a:?} is not HOST:PORT"));
            }
        }
        Ok(Addrs {
            peer: peer.to_string(),
            client: client.to_string(),
        })
    }
}

impl std::fmt::Display for Addrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.peer, self.client)
    }
}

/// One micro-operation of a transaction: `["r", key, null]`, `["w", key, value]`,
/// `["append", key, value]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MicroOp(pub String, pub String, pub Value);

/// A client command, as stored in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Command {
    /// Set a key (null removes it).
    Put {
        /// Key.
        key: String,
        /// New value.
        value: Value,
    },
    /// Set `key` to `to` if its current value equals `from` (null matches a missing key).
    Cas {
        /// Key.
        key: String,
        /// Expected value.
        from: Value,
        /// New value.
        to: Value,
    },
    /// Append to the list at `key` (a missing key becomes a one-element list).
    Append {
        /// Key.
        key: String,
        /// Element to append.
        value: Value,
    },
    /// Apply micro-operations atomically, in order; reads see earlier writes of the same txn.
    Txn {
        /// The operations.
        ops: Vec<MicroOp>,
    },
    /// A linearizable read through the log (used for read-only work when no other path exists).
    Get {
        /// Key.
        key: String,
    },
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Applied; a write has no result.
    Done,
    /// A read's value (null if missing).
    Value(Value),
    /// A compare-and-set found another value: nothing changed.
    CasMismatch {
        /// The value found.
        current: Value,
    },
    /// An append found a value that is not a list: nothing changed.
    NotAList {
        /// The key.
        key: String,
        /// The value found.
        current: Value,
    },
    /// A transaction's completed micro-operations (reads filled in).
    Txn(Vec<MicroOp>),
    /// The command was malformed (for example an unknown micro-op): nothing changed.
    Invalid(String),
}

/// The key-value state machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateMachine {
    kv: BTreeMap<String, Value>,
    /// Known members' addresses (from the command line, membership changes and snapshots).
    pub addrs: BTreeMap<u64, Addrs>,
}

fn append_to(current: Option<&Value>, value: Value) -> Result<Value, Value> {
    match current {
        None | Some(Value::Null) => Ok(Value::Array(vec![value])),
        Some(Value::Array(items)) => {
            let mut items = items.clone();
            items.push(value);
            Ok(Value::Array(items))
        }
        Some(other) => Err(other.clone()),
    }
}

impl StateMachine {
    /// The value at `key` (null if missing).
    pub fn get(&self, key: &str) -> Value {
        self.kv.get(key).cloned().unwrap_or(Value::Null)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.kv.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.kv.is_empty()
    }

    fn set(&mut self, key: String, value: Value) {
        if value.is_null() {
            self.kv.remove(&key);
        } else {
            self.kv.insert(key, value);
        }
    }

    /// Applies a command.
    pub fn apply(&mut self, cmd: Command) -> Outcome {
        match cmd {
            Command::Put { key, value } => {
                self.set(key, value);
                Outcome::Done
            }
            Command::Cas { key, from, to } => {
                let current = self.get(&key);
                if current == from {
                    self.set(key, to);
                    Outcome::Done
                } else {
                    Outcome::CasMismatch { current }
                }
            }
            Command::Append { key, value } => match append_to(self.kv.get(&key), value) {
                Ok(v) => {
                    self.kv.insert(key, v);
                    Outcome::Done
                }
                Err(current) => Outcome::NotAList { key, current },
            },
            Command::Get { key } => Outcome::Value(self.get(&key)),
            Command::Txn { ops } => self.apply_txn(ops),
        }
    }

    fn apply_txn(&mut self, ops: Vec<MicroOp>) -> Outcome {
        // Work on an overlay so that a failing micro-op leaves no trace (atomicity).
        let mut overlay: BTreeMap<String, Value> = BTreeMap::new();
        let mut out = Vec::with_capacity(ops.len());
        for MicroOp(f, key, value) in ops {
            let current = overlay.get(&key).cloned().unwrap_or_else(|| self.get(&key));
            match f.as_str() {
                "r" => out.push(MicroOp(f, key, current)),
                "w" => {
                    overlay.insert(key.clone(), value.clone());
                    out.push(MicroOp(f, key, value));
                }
                "append" => match append_to(Some(&current), value.clone()) {
                    Ok(v) => {
                        overlay.insert(key.clone(), v);
                        out.push(MicroOp(f, key, value));
                    }
                    Err(current) => return Outcome::NotAList { key, current },
                },
                other => {
                    return Outcome::Invalid(format!(
                        "unknown micro-op {other:?} (expected r, w or append)"
                    ));
                }
            }
        }
        for (k, v) in overlay {
            self.set(k, v);
        }
        Outcome::Txn(out)
    }

    /// Serializes the whole state (the snapshot data).
    pub fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("state serializes")
    }

    /// Replaces the state with a snapshot's.
    ///
    /// # Errors
    /// The data is not a state-machine snapshot.
    pub fn restore(data: &[u8]) -> Result<StateMachine, serde_json::Error> {
        if data.is_empty() {
            return Ok(StateMachine::default());
        }
        serde_json::from_slice(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn put(k: &str, v: Value) -> Command {
        Command::Put {
            key: k.into(),
            value: v,
        }
    }

    #[test]
    fn cas_applies_only_on_match_and_reports_current() {
        let mut sm = StateMachine::default();
        assert_eq!(
            sm.apply(Command::Cas {
                key: "a".into(),
                from: Value::Null,
                to: json!(1)
            }),
            Outcome::Done
        );
        assert_eq!(
            sm.apply(Command::Cas {
                key: "a".into(),
                from: json!(2),
                to: json!(3)
            }),
            Outcome::CasMismatch { current: json!(1) }
        );
        assert_eq!(sm.get("a"), json!(1));
        assert_eq!(
            sm.apply(Command::Cas {
                key: "a".into(),
                from: json!(1),
                to: json!(3)
            }),
            Outcome::Done
        );
        assert_eq!(sm.get("a"), json!(3));
    }

    #[test]
    fn append_creates_list_and_refuses_non_list() {
        let mut sm = StateMachine::default();
        sm.apply(Command::Append {
            key: "l".into(),
            value: json!(1),
        });
        sm.apply(Command::Append {
            key: "l".into(),
            value: json!(2),
        });
        assert_eq!(sm.get("l"), json!([1, 2]));
        sm.apply(put("s", json!("x")));
        assert_eq!(
            sm.apply(Command::Append {
                key: "s".into(),
                value: json!(3)
            }),
            Outcome::NotAList {
                key: "s".into(),
                current: json!("x")
            }
        );
        assert_eq!(sm.get("s"), json!("x"));
    }

    #[test]
    fn txn_reads_its_own_writes_and_is_atomic() {
        let mut sm = StateMachine::default();
        sm.apply(put("s", json!(7)));
        let ops = vec![
            MicroOp("append".into(), "k".into(), json!(5)),
            MicroOp("r".into(), "k".into(), Value::Null),
            MicroOp("w".into(), "j".into(), json!(1)),
        ];
        assert_eq!(
            sm.apply(Command::Txn { ops }),
            Outcome::Txn(vec![
                MicroOp("append".into(), "k".into(), json!(5)),
                MicroOp("r".into(), "k".into(), json!([5])),
                MicroOp("w".into(), "j".into(), json!(1)),
            ])
        );
        let failing = vec![
            MicroOp("w".into(), "x".into(), json!(1)),
            MicroOp("append".into(), "s".into(), json!(1)),
        ];
        assert!(matches!(
            sm.apply(Command::Txn { ops: failing }),
            Outcome::NotAList { .. }
        ));
        assert_eq!(sm.get("x"), Value::Null, "failed txn left a write behind");
    }

    #[test]
    fn snapshot_round_trips_and_replays_identically() {
        let mut a = StateMachine::default();
        a.addrs
            .insert(1, Addrs::parse("127.0.0.1:1/127.0.0.1:2").unwrap());
        for i in 0..50 {
            a.apply(Command::Append {
                key: format!("k{}", i % 7),
                value: json!(i),
            });
        }
        let b = StateMachine::restore(&a.snapshot()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn command_wire_format_is_stable() {
        let c = Command::Cas {
            key: "k".into(),
            from: json!(1),
            to: json!([2]),
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"op":"cas","key":"k","from":1,"to":[2]}"#
        );
        let t: Command =
            serde_json::from_str(r#"{"op":"txn","ops":[["r","k1",null],["append","k2",5]]}"#)
                .unwrap();
        assert!(matches!(t, Command::Txn { ref ops } if ops.len() == 2));
    }

    #[test]
    fn addrs_parse_rejects_missing_client_part() {
        assert!(Addrs::parse("10.0.0.2:2380").is_err());
        assert!(Addrs::parse("10.0.0.2:2380/10.0.0.2:x").is_err());
        assert_eq!(Addrs::parse("h:1/h:2").unwrap().to_string(), "h:1/h:2");
    }
}
