//! The Galera client: MariaDB's protocol through `mysql_async` (no TLS), one connection per
//! client, pinned to its node (Galera is multi-primary: every node takes writes).
//!
//! A clone is another client of the same node with its own connection: a connection is a
//! session, and a session holds one transaction at a time, so two workers never share one.
//!
//! Operations (tables created by [`GaleraClient::setup`]):
//! - `txn`: `START TRANSACTION`, each micro-op in order, `COMMIT`. List-append as Jepsen's
//!   Galera test: `txn_append (id INT PRIMARY KEY, v TEXT)`, an append is an upsert that
//!   concatenates `,v`, a read parses the comma-separated list (no row: `[]`). rw-register:
//!   `txn_register (id INT PRIMARY KEY, v BIGINT)`, a write upserts, a read gives the value or
//!   null. The ok completion is the micro-ops with each read's result filled in.
//! - Statements go as text with their integers inline (nothing to escape), unless `[galera]
//!   prepared = true` sends them as prepared statements (the binary protocol). Measured here:
//!   with prepared statements about 1 transaction in 1,200 at full speed was brute-force
//!   aborted without the 1213 reaching the client (`SELECT @@in_transaction` read 0 before
//!   `COMMIT`): its later statements ran as autocommit and `COMMIT` acknowledged nothing; with
//!   text, none in 125,000 (see the README's Galera findings).
//! - `transfer` (bank): both balances read in the transaction, `insufficient-funds` (a definite
//!   fail, rolled back) if `from` would go negative, else both updated.
//! - bank `read`: every balance in one transaction, `{"0": b0, "1": b1, ...}`.
//!
//! Classification ([`classify`]; the rule of `client/mod.rs`: never `fail` what may have
//! committed):
//! - a connect failure: `fail`;
//! - before `COMMIT` was sent: 1213 (deadlock, or a certification failure: Galera aborted the
//!   transaction), 1020 (record changed since it was read: snapshot isolation), 1205 (lock wait
//!   timeout) and any other server error: `fail` (nothing commits without `COMMIT`; the
//!   connection is dropped, which rolls the transaction back); a timeout: `fail`;
//! - a broken connection after the transaction sent anything: `info` (as asked of this client;
//!   it is conservative: without `COMMIT` the server rolls back);
//! - at `COMMIT`: 1213 and 1020 are still definite aborts (Galera answers a failed
//!   certification at commit with 1213 and rolls back: `certification-failure`); any other
//!   error, a broken connection or a timeout: `info`;
//! - a read-only transaction (every micro-op a read, or a bank read) whose outcome is unknown:
//!   `fail`, since it changed nothing.
//!
//! After any error the connection is dropped; the next operation connects again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use super::{Completion, Status};
use crate::generator::{F, Op};
use crate::txn::{BankSpec, TxnKind};

/// MariaDB's client port inside each container.
pub const GALERA_PORT: u16 = 3306;
/// The SQL user every client logs in as (no password; created by the image's entrypoint).
pub const GALERA_USER: &str = "faultline";
/// The database of the workload's tables.
pub const GALERA_DATABASE: &str = "faultline";

const APPEND_SQL: &str =
    "INSERT INTO txn_append (id, v) VALUES (?, ?) ON DUPLICATE KEY UPDATE v = CONCAT(v, ',', ?)";
/// [`APPEND_SQL`] for text statements: the list column is text, so its values are quoted.
const APPEND_TEXT_SQL: &str = "INSERT INTO txn_append (id, v) VALUES (?, '?') ON DUPLICATE KEY UPDATE v = CONCAT(v, ',', '?')";
const READ_LIST_SQL: &str = "SELECT v FROM txn_append WHERE id = ?";
const WRITE_SQL: &str =
    "INSERT INTO txn_register (id, v) VALUES (?, ?) ON DUPLICATE KEY UPDATE v = ?";
const READ_REGISTER_SQL: &str = "SELECT v FROM txn_register WHERE id = ?";
const BALANCE_SQL: &str = "SELECT balance FROM accounts WHERE id = ?";
const SET_BALANCE_SQL: &str = "UPDATE accounts SET balance = ? WHERE id = ?";
const BALANCES_SQL: &str = "SELECT id, balance FROM accounts ORDER BY id";

/// The tables, created when absent (Galera replicates DDL in total order).
const TABLES: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS txn_append (id INT PRIMARY KEY, v TEXT) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS txn_register (id INT PRIMARY KEY, v BIGINT) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB",
];

/// Server error: deadlock, or (Galera) a transaction aborted by a conflicting one that
/// certified first.
pub const ER_LOCK_DEADLOCK: u16 = 1213;
/// Server error: record changed since it was last read (`innodb_snapshot_isolation`).
pub const ER_CHECKREAD: u16 = 1020;
/// Server error: lock wait timeout (only the statement is rolled back).
pub const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;

/// Session settings every connection makes right after connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaleraSession {
    /// `READ COMMITTED`, `REPEATABLE READ` or `SERIALIZABLE`.
    pub isolation: &'static str,
    /// `innodb_snapshot_isolation`.
    pub snapshot_isolation: bool,
    /// `wsrep_sync_wait` (0..=15).
    pub sync_wait: u8,
    /// Which table `txn` micro-ops use: list-append or rw-register.
    pub kind: TxnKind,
    /// Micro-ops as prepared statements (binary protocol) instead of text.
    pub prepared: bool,
}

impl GaleraSession {
    /// The `SET SESSION` statements.
    pub fn statements(&self) -> Vec<String> {
        vec![
            format!("SET SESSION TRANSACTION ISOLATION LEVEL {}", self.isolation),
            format!(
                "SET SESSION innodb_snapshot_isolation = {}",
                if self.snapshot_isolation { "ON" } else { "OFF" }
            ),
            format!("SET SESSION wsrep_sync_wait = {}", self.sync_wait),
        ]
    }
}

/// A client bound to one Galera node.
pub struct GaleraClient {
    node: String,
    addr: (String, u16),
    timeout: Duration,
    session: Arc<GaleraSession>,
    conn: Arc<Mutex<Option<Conn>>>,
}

impl Clone for GaleraClient {
    /// Another client of the same node, with a connection of its own.
    fn clone(&self) -> Self {
        Self {
            node: self.node.clone(),
            addr: self.addr.clone(),
            timeout: self.timeout,
            session: self.session.clone(),
            conn: Arc::new(Mutex::new(None)),
        }
    }
}

/// How far an operation got, for telling a definite failure from an unknown outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Connecting (or setting up the session): nothing of the operation was sent.
    Connecting = 0,
    /// Connected, nothing of the operation sent yet.
    Connected = 1,
    /// Statements of the transaction sent, `COMMIT` not yet.
    Sent = 2,
    /// `COMMIT` sent.
    Committing = 3,
}

impl Stage {
    fn from_u8(v: u8) -> Stage {
        match v {
            0 => Stage::Connecting,
            1 => Stage::Connected,
            2 => Stage::Sent,
            _ => Stage::Committing,
        }
    }
}

/// What went wrong, in the terms classification needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server answered with an error.
    Server {
        /// MariaDB's error code.
        code: u16,
        /// Its message.
        message: String,
    },
    /// The connection broke, or the driver gave up on it.
    Broken(String),
    /// No answer within the operation's timeout.
    Timeout,
}

impl From<mysql_async::Error> for Failure {
    fn from(e: mysql_async::Error) -> Self {
        match e {
            mysql_async::Error::Server(s) => Failure::Server {
                code: s.code,
                message: s.message,
            },
            other => Failure::Broken(other.to_string()),
        }
    }
}

/// The completion of an operation that ended in `failure` at `stage`; `read_only` when the
/// operation cannot have changed anything.
pub fn classify(failure: &Failure, stage: Stage, read_only: bool) -> Completion {
    let completion = match (stage, failure) {
        (Stage::Connecting, Failure::Timeout) => Completion::Fail("connect: timeout".into()),
        (Stage::Connecting, Failure::Server { code, message }) => {
            Completion::Fail(format!("connect: error {code}: {message}"))
        }
        (Stage::Connecting, Failure::Broken(e)) => Completion::Fail(format!("connect: {e}")),
        (_, Failure::Server { code, .. }) if *code == ER_LOCK_DEADLOCK => {
            Completion::Fail(if stage == Stage::Committing {
                "certification-failure".into()
            } else {
                "deadlock".into()
            })
        }
        (_, Failure::Server { code, .. }) if *code == ER_CHECKREAD => {
            Completion::Fail("record-changed".into())
        }
        (Stage::Connected | Stage::Sent, Failure::Server { code, .. })
            if *code == ER_LOCK_WAIT_TIMEOUT =>
        {
            Completion::Fail("lock-wait-timeout".into())
        }
        (Stage::Connected | Stage::Sent, Failure::Server { code, message }) => {
            Completion::Fail(format!("error {code}: {message}"))
        }
        (Stage::Connected | Stage::Sent, Failure::Timeout) => {
            Completion::Fail("timeout before commit".into())
        }
        (Stage::Connected, Failure::Broken(e)) => Completion::Fail(format!("broken: {e}")),
        (Stage::Sent, Failure::Broken(e)) => Completion::Info(format!("broken: {e}")),
        (Stage::Committing, Failure::Server { code, message }) => {
            Completion::Info(format!("commit: error {code}: {message}"))
        }
        (Stage::Committing, Failure::Broken(e)) => Completion::Info(format!("commit: {e}")),
        (Stage::Committing, Failure::Timeout) => Completion::Info("commit: timeout".into()),
    };
    match completion {
        Completion::Info(reason) if read_only => Completion::Fail(reason),
        c => c,
    }
}

/// One micro-op of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Micro {
    Append(i64, i64),
    Write(i64, i64),
    Read(i64),
}

/// The micro-ops of a `txn` value, or why it is malformed; each checked against `kind`.
fn parse_txn(value: &Value, kind: TxnKind) -> Result<Vec<Micro>, String> {
    let ops = value
        .as_array()
        .ok_or("a txn's value is a list of micro-ops")?;
    ops.iter()
        .map(|m| {
            let f = m.get(0).and_then(Value::as_str);
            let k = m.get(1).and_then(Value::as_i64);
            let v = m.get(2).and_then(Value::as_i64);
            match (f, k, v, kind) {
                (Some("r"), Some(k), _, _) => Ok(Micro::Read(k)),
                (Some("append"), Some(k), Some(v), TxnKind::ListAppend) => Ok(Micro::Append(k, v)),
                (Some("w"), Some(k), Some(v), TxnKind::RwRegister) => Ok(Micro::Write(k, v)),
                _ => Err(format!(
                    "micro-op {m} does not fit a {} transaction",
                    kind.as_str()
                )),
            }
        })
        .collect()
}

/// `"1,2,3"` -> `[1, 2, 3]`; no row or NULL -> `[]`.
pub fn parse_list(v: Option<&str>) -> Result<Vec<i64>, String> {
    match v {
        None | Some("") => Ok(Vec::new()),
        Some(s) => s
            .split(',')
            .map(|x| {
                x.trim()
                    .parse()
                    .map_err(|_| format!("list element {x:?} in {s:?}"))
            })
            .collect(),
    }
}

/// What `run` ends with when the server did not fail: `Ok(value)` or a definite failure that
/// the client chose (`insufficient-funds`: rolled back, the connection stays).
type Outcome = Result<Value, String>;

impl GaleraClient {
    /// A client of the node `node` at `host:port`; `timeout` bounds each operation (connecting
    /// too).
    pub fn new(node: &str, addr: (String, u16), timeout: Duration, session: GaleraSession) -> Self {
        Self {
            node: node.to_string(),
            addr,
            timeout,
            session: Arc::new(session),
            conn: Arc::new(Mutex::new(None)),
        }
    }

    /// The node this client talks to.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn opts(&self) -> OptsBuilder {
        OptsBuilder::default()
            .ip_or_hostname(self.addr.0.clone())
            .tcp_port(self.addr.1)
            .user(Some(GALERA_USER))
            .db_name(Some(GALERA_DATABASE))
            .prefer_socket(false)
            .tcp_nodelay(true)
            .init(self.session.statements())
    }

    /// Invokes one operation and classifies the answer.
    pub async fn invoke(&self, op: &Op) -> Completion {
        let micro = match op.f {
            F::Txn => match parse_txn(&op.value, self.session.kind) {
                Ok(m) => Some(m),
                Err(e) => return Completion::Fail(format!("malformed: {e}")),
            },
            F::Transfer | F::BankRead => None,
            f => {
                return Completion::Fail(format!(
                    "the Galera client runs transactions and bank operations, not {}",
                    f.name()
                ));
            }
        };
        let mut slot = self.conn.lock().await;
        let stage = AtomicU8::new(Stage::Connecting as u8);
        let ran = tokio::time::timeout(self.timeout, async {
            if slot.is_none() {
                *slot = Some(Conn::new(self.opts()).await?);
            }
            let conn = slot.as_mut().expect("connected above");
            stage.store(Stage::Connected as u8, Ordering::SeqCst);
            match &micro {
                Some(m) => txn(conn, m, &self.session, &op.value, &stage).await,
                None if op.f == F::Transfer => {
                    transfer(conn, &op.value, self.session.prepared, &stage).await
                }
                None => bank_read(conn, &stage).await,
            }
        })
        .await;
        let stage = Stage::from_u8(stage.load(Ordering::SeqCst));
        let failure = match ran {
            Ok(Ok(Ok(value))) => return Completion::Ok(value),
            Ok(Ok(Err(reason))) => return Completion::Fail(reason),
            Ok(Err(e)) => Failure::from(e),
            Err(_) => Failure::Timeout,
        };
        // The session is in an unknown state: start over with a new connection.
        *slot = None;
        classify(&failure, stage, op.read_only())
    }

    /// Creates the tables if absent and, for a bank, the accounts (`total` split evenly, the
    /// remainder in account 0) unless they exist. Idempotent; any node; retried on the
    /// conflicts concurrent setups on several nodes may have.
    ///
    /// # Errors
    /// What the last attempt failed with.
    pub async fn setup(&self, bank: Option<&BankSpec>) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 0..10 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            let done = tokio::time::timeout(self.timeout.max(Duration::from_secs(10)), async {
                let mut conn = Conn::new(self.opts()).await?;
                for sql in TABLES {
                    conn.query_drop(sql).await?;
                }
                if let Some(b) = bank {
                    conn.query_drop(accounts_insert(b)).await?;
                }
                conn.disconnect().await
            })
            .await;
            match done {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "timeout".into(),
            }
        }
        Err(format!("setting up the tables on {}: {last}", self.node))
    }

    /// The node's view: `Ok` only while it serves (wsrep `Synced` in a `Primary` component);
    /// n1 calls itself the leader (Galera has none: it is multi-primary; n1 formed the
    /// cluster, and leader-aimed faults need a target), the others followers; the term is the
    /// cluster configuration id (it grows with every membership change).
    ///
    /// # Errors
    /// When the node does not answer, or answers but does not serve (its wsrep state).
    pub async fn status(&self) -> Result<Status, String> {
        let mut slot = self.conn.lock().await;
        let ran = tokio::time::timeout(self.timeout, async {
            if slot.is_none() {
                *slot = Some(Conn::new(self.opts()).await?);
            }
            let conn = slot.as_mut().expect("connected above");
            conn.query::<(String, String), _>(
                "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state_comment', \
                 'wsrep_cluster_status', 'wsrep_cluster_size', 'wsrep_cluster_conf_id', \
                 'wsrep_last_committed', 'wsrep_ready')",
            )
            .await
        })
        .await;
        let rows = match ran {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                *slot = None;
                return Err(e.to_string());
            }
            Err(_) => {
                *slot = None;
                return Err("timeout".into());
            }
        };
        status_of(node_number(&self.node), &rows)
    }
}

/// `INSERT IGNORE` of every account with its opening balance.
fn accounts_insert(b: &BankSpec) -> String {
    let n = b.accounts.max(1) as i64;
    let rows: Vec<String> = (0..n)
        .map(|a| {
            let balance = b.total / n + if a == 0 { b.total % n } else { 0 };
            format!("({a}, {balance})")
        })
        .collect();
    format!(
        "INSERT IGNORE INTO accounts (id, balance) VALUES {}",
        rows.join(", ")
    )
}

/// `n3` -> 3 (0 for any other name).
fn node_number(name: &str) -> u64 {
    name.trim_start_matches('n').parse().unwrap_or(0)
}

/// A node's status from its `SHOW GLOBAL STATUS` rows.
fn status_of(id: u64, rows: &[(String, String)]) -> Result<Status, String> {
    let get = |k: &str| {
        rows.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let (state, component, ready) = (
        get("wsrep_local_state_comment"),
        get("wsrep_cluster_status"),
        get("wsrep_ready"),
    );
    let size = get("wsrep_cluster_size");
    if state != "Synced" || component != "Primary" || ready != "ON" {
        return Err(format!(
            "not serving: {state}, {component} component of {size}, wsrep_ready {ready}"
        ));
    }
    let committed = get("wsrep_last_committed").parse().unwrap_or(0);
    Ok(Status {
        id,
        role: if id == 1 { "leader" } else { "follower" }.into(),
        term: get("wsrep_cluster_conf_id").parse().unwrap_or(0),
        leader: (id == 1).then_some(1),
        commit: committed,
        applied: committed,
        ..Default::default()
    })
}

/// `START TRANSACTION`, the micro-ops, `COMMIT`.
///
/// With `session.prepared` each micro-op is a prepared statement (binary protocol); otherwise
/// text with the integers inline (`inline`: keys and values are integers, nothing to escape).
async fn txn(
    conn: &mut Conn,
    micro: &[Micro],
    session: &GaleraSession,
    value: &Value,
    stage: &AtomicU8,
) -> Result<Outcome, mysql_async::Error> {
    let (kind, prepared) = (session.kind, session.prepared);
    stage.store(Stage::Sent as u8, Ordering::SeqCst);
    conn.query_drop("START TRANSACTION").await?;
    let mut done = value.as_array().cloned().unwrap_or_default();
    for (i, m) in micro.iter().enumerate() {
        match *m {
            Micro::Append(k, v) if prepared => {
                let v = v.to_string();
                conn.exec_drop(APPEND_SQL, (k, v.clone(), v)).await?;
            }
            Micro::Append(k, v) => conn.query_drop(inline(APPEND_TEXT_SQL, &[k, v, v])).await?,
            Micro::Write(k, v) if prepared => conn.exec_drop(WRITE_SQL, (k, v, v)).await?,
            Micro::Write(k, v) => conn.query_drop(inline(WRITE_SQL, &[k, v, v])).await?,
            Micro::Read(k) => {
                let result = if kind == TxnKind::ListAppend {
                    let row: Option<Option<String>> = if prepared {
                        conn.exec_first(READ_LIST_SQL, (k,)).await?
                    } else {
                        conn.query_first(inline(READ_LIST_SQL, &[k])).await?
                    };
                    match parse_list(row.flatten().as_deref()) {
                        Ok(list) => json!(list),
                        // Not committed (no COMMIT will be sent): a definite failure, and the
                        // dropped connection rolls the transaction back.
                        Err(e) => return Ok(Err(format!("unreadable list: {e}"))),
                    }
                } else {
                    let row: Option<Option<i64>> = if prepared {
                        conn.exec_first(READ_REGISTER_SQL, (k,)).await?
                    } else {
                        conn.query_first(inline(READ_REGISTER_SQL, &[k])).await?
                    };
                    json!(row.flatten())
                };
                done[i] = json!(["r", k, result]);
            }
        }
    }
    stage.store(Stage::Committing as u8, Ordering::SeqCst);
    conn.query_drop("COMMIT").await?;
    Ok(Ok(Value::Array(done)))
}

/// `sql` with each `?` replaced by the next integer (a template quotes what its column needs).
fn inline(sql: &str, args: &[i64]) -> String {
    let mut args = args.iter();
    let mut out = String::with_capacity(sql.len() + 8 * args.len());
    for (i, part) in sql.split('?').enumerate() {
        if i > 0 {
            let a = args.next().expect("one argument per placeholder");
            out.push_str(&a.to_string());
        }
        out.push_str(part);
    }
    out
}

/// A bank transfer: both balances read in the transaction, then both written.
async fn transfer(
    conn: &mut Conn,
    value: &Value,
    prepared: bool,
    stage: &AtomicU8,
) -> Result<Outcome, mysql_async::Error> {
    let field = |k: &str| value.get(k).and_then(Value::as_i64);
    let (Some(from), Some(to), Some(amount)) = (field("from"), field("to"), field("amount")) else {
        return Ok(Err(format!("malformed transfer {value}")));
    };
    stage.store(Stage::Sent as u8, Ordering::SeqCst);
    conn.query_drop("START TRANSACTION").await?;
    let (a, b): (Option<i64>, Option<i64>) = if prepared {
        (
            conn.exec_first(BALANCE_SQL, (from,)).await?,
            conn.exec_first(BALANCE_SQL, (to,)).await?,
        )
    } else {
        (
            conn.query_first(inline(BALANCE_SQL, &[from])).await?,
            conn.query_first(inline(BALANCE_SQL, &[to])).await?,
        )
    };
    let (Some(a), Some(b)) = (a, b) else {
        conn.query_drop("ROLLBACK").await?;
        return Ok(Err("no-such-account".into()));
    };
    if a - amount < 0 {
        conn.query_drop("ROLLBACK").await?;
        return Ok(Err("insufficient-funds".into()));
    }
    if prepared {
        conn.exec_drop(SET_BALANCE_SQL, (a - amount, from)).await?;
        conn.exec_drop(SET_BALANCE_SQL, (b + amount, to)).await?;
    } else {
        conn.query_drop(inline(SET_BALANCE_SQL, &[a - amount, from]))
            .await?;
        conn.query_drop(inline(SET_BALANCE_SQL, &[b + amount, to]))
            .await?;
    }
    stage.store(Stage::Committing as u8, Ordering::SeqCst);
    conn.query_drop("COMMIT").await?;
    Ok(Ok(value.clone()))
}

/// Every balance, read in one transaction.
async fn bank_read(conn: &mut Conn, stage: &AtomicU8) -> Result<Outcome, mysql_async::Error> {
    stage.store(Stage::Sent as u8, Ordering::SeqCst);
    conn.query_drop("START TRANSACTION").await?;
    let rows: Vec<(i64, i64)> = conn.query(BALANCES_SQL).await?;
    stage.store(Stage::Committing as u8, Ordering::SeqCst);
    conn.query_drop("COMMIT").await?;
    let balances: Map<String, Value> = rows
        .into_iter()
        .map(|(id, b)| (id.to_string(), json!(b)))
        .collect();
    Ok(Ok(Value::Object(balances)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16) -> Failure {
        Failure::Server {
            code,
            message: "m".into(),
        }
    }

    fn broken() -> Failure {
        Failure::Broken("connection reset".into())
    }

    #[rustfmt::skip]
    #[test]
    fn errors_become_fail_only_when_nothing_can_have_committed() {
        use Completion::{Fail, Info};
        let cases: Vec<(Failure, Stage, bool, Completion)> = vec![
            // failure         stage                ro     completion
            (broken(),         Stage::Connecting,   false, Fail("connect: connection reset".into())),
            (Failure::Timeout, Stage::Connecting,   false, Fail("connect: timeout".into())),
            (server(1213),     Stage::Sent,         false, Fail("deadlock".into())),
            (server(1213),     Stage::Committing,   false, Fail("certification-failure".into())),
            (server(1020),     Stage::Sent,         false, Fail("record-changed".into())),
            (server(1020),     Stage::Committing,   false, Fail("record-changed".into())),
            (server(1205),     Stage::Sent,         false, Fail("lock-wait-timeout".into())),
            (server(1205),     Stage::Committing,   false, Info("commit: error 1205: m".into())),
            (server(1047),     Stage::Sent,         false, Fail("error 1047: m".into())),
            (server(1047),     Stage::Committing,   false, Info("commit: error 1047: m".into())),
            (Failure::Timeout, Stage::Sent,         false, Fail("timeout before commit".into())),
            (Failure::Timeout, Stage::Committing,   false, Info("commit: timeout".into())),
            (broken(),         Stage::Connected,    false, Fail("broken: connection reset".into())),
            (broken(),         Stage::Sent,         false, Info("broken: connection reset".into())),
            (broken(),         Stage::Committing,   false, Info("commit: connection reset".into())),
            // A read-only transaction changed nothing: unknown outcomes are failures.
            (broken(),         Stage::Sent,         true,  Fail("broken: connection reset".into())),
            (Failure::Timeout, Stage::Committing,   true,  Fail("commit: timeout".into())),
        ];
        for (failure, stage, ro, want) in cases {
            assert_eq!(classify(&failure, stage, ro), want, "{failure:?} at {stage:?}, read-only {ro}");
        }
    }

    #[test]
    fn driver_errors_are_broken_connections_and_server_errors_keep_their_code() {
        let e = mysql_async::Error::Server(mysql_async::ServerError {
            code: 1213,
            message: "Deadlock found".into(),
            state: "40001".into(),
        });
        assert_eq!(
            Failure::from(e),
            Failure::Server {
                code: 1213,
                message: "Deadlock found".into()
            }
        );
        let e = mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed);
        assert!(matches!(Failure::from(e), Failure::Broken(_)));
    }

    #[test]
    fn lists_parse_from_comma_separated_text() {
        assert_eq!(parse_list(None), Ok(vec![]));
        assert_eq!(parse_list(Some("")), Ok(vec![]));
        assert_eq!(parse_list(Some("3")), Ok(vec![3]));
        assert_eq!(parse_list(Some("1,2,10")), Ok(vec![1, 2, 10]));
        assert!(parse_list(Some("1,x")).is_err());
    }

    #[test]
    fn micro_ops_must_fit_the_workload_kind() {
        let v = json!([["append", 1, 2], ["r", 1, null]]);
        assert_eq!(
            parse_txn(&v, TxnKind::ListAppend).unwrap(),
            vec![Micro::Append(1, 2), Micro::Read(1)]
        );
        assert!(parse_txn(&v, TxnKind::RwRegister).is_err());
        let w = json!([["w", 4, 9], ["r", 4, null]]);
        assert_eq!(
            parse_txn(&w, TxnKind::RwRegister).unwrap(),
            vec![Micro::Write(4, 9), Micro::Read(4)]
        );
        assert!(parse_txn(&json!({"x": 1}), TxnKind::ListAppend).is_err());
    }

    #[test]
    fn only_reads_are_read_only() {
        let op = |f, value| Op {
            f,
            key: String::new(),
            value,
        };
        assert!(op(F::Txn, json!([["r", 1, null], ["r", 2, null]])).read_only());
        assert!(!op(F::Txn, json!([["r", 1, null], ["append", 2, 1]])).read_only());
        assert!(op(F::BankRead, Value::Null).read_only());
        assert!(!op(F::Transfer, json!({"from": 0, "to": 1, "amount": 1})).read_only());
    }

    #[test]
    fn status_serves_only_when_synced_in_a_primary_component() {
        let rows = |state: &str, component: &str| {
            vec![
                ("wsrep_local_state_comment".to_string(), state.to_string()),
                ("wsrep_cluster_status".to_string(), component.to_string()),
                ("wsrep_cluster_size".to_string(), "3".to_string()),
                ("wsrep_cluster_conf_id".to_string(), "7".to_string()),
                ("wsrep_last_committed".to_string(), "42".to_string()),
                ("wsrep_ready".to_string(), "ON".to_string()),
            ]
        };
        let s = status_of(1, &rows("Synced", "Primary")).unwrap();
        assert_eq!(
            (s.role.as_str(), s.term, s.leader, s.commit),
            ("leader", 7, Some(1), 42)
        );
        let s = status_of(2, &rows("Synced", "Primary")).unwrap();
        assert_eq!((s.role.as_str(), s.leader), ("follower", None));
        assert!(status_of(2, &rows("Joiner", "Primary")).is_err());
        assert!(status_of(1, &rows("Synced", "non-Primary")).is_err());
    }

    #[test]
    fn accounts_hold_the_total_with_the_remainder_in_account_zero() {
        let sql = accounts_insert(&BankSpec {
            accounts: 3,
            total: 100,
            max_transfer: 5,
        });
        assert!(sql.ends_with("VALUES (0, 34), (1, 33), (2, 33)"), "{sql}");
    }
}

#[cfg(test)]
mod inline_tests {
    use super::*;

    #[test]
    fn text_statements_carry_their_integers_inline() {
        assert_eq!(
            inline(APPEND_TEXT_SQL, &[3, 7, 7]),
            "INSERT INTO txn_append (id, v) VALUES (3, '7') ON DUPLICATE KEY UPDATE v = CONCAT(v, ',', '7')"
        );
        assert_eq!(
            inline(READ_LIST_SQL, &[-4]),
            "SELECT v FROM txn_append WHERE id = -4"
        );
        assert_eq!(
            inline(READ_REGISTER_SQL, &[9]),
            "SELECT v FROM txn_register WHERE id = 9"
        );
        assert!(
            inline(WRITE_SQL, &[1, 2, 2]).contains("VALUES (1, 2)"),
            "{}",
            inline(WRITE_SQL, &[1, 2, 2])
        );
    }
}
