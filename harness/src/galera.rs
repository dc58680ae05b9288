//! MariaDB Galera Cluster as a system under test (`target = "galera"`): Debian bookworm's
//! `mariadb-server` 10.11 with `galera-4` 26.4, from `faultline/galera:*` (see
//! `control::images`), three (or more) nodes that replicate every transaction synchronously
//! (certification-based, multi-primary).
//!
//! Each node runs `mariadbd` as root through the image's entrypoint, datadir `/data/db` on its
//! volume (initialized on first start), settings shared by every node in the image's
//! `faultline.cnf` (`wsrep_on`, the provider, `wsrep_sst_method=rsync`, `binlog_format=ROW`,
//! `innodb_autoinc_lock_mode=2`, `bind-address=0.0.0.0`), node-specific ones as flags here:
//! the cluster address (every peer), the node's own address and name, and the `[galera]`
//! table's isolation settings. n1 forms the cluster (`--wsrep-new-cluster`) on its first start
//! only; restarted after a kill it joins the others, by IST when their gcache still holds what
//! it missed, else by SST (rsync).
//!
//! Galera has no leader. The status calls n1 the leader while it serves, so that leader-aimed
//! faults have a target: `isolate-leader` cuts n1 off, `kill leader` kills n1. A node's status is
//! an error while it does not serve (wsrep state other than `Synced`, or a non-`Primary`
//! component), so readiness ("every node answers and a leader exists") means every node is
//! `Synced` in one primary component, i.e. the cluster has all its nodes.
//!
//! Clock faults reach `mariadbd`: it is a dynamically linked C++ program, and libfaketime
//! preloaded into the entrypoint (a bash script that `exec`s it) moves the wall clock SQL sees
//! (`NOW()`, `SYSDATE()`: checked by hand, +1 h). Galera's own timers use the monotonic clock,
//! which the harness leaves real.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::client::{GALERA_PORT, GaleraClient, GaleraSession, HttpClient, NodeClient};
use crate::control::{Cluster, GALERA_ENTRYPOINT, NodeSpec};
use crate::db::{Db, faultfs_entrypoint, node_name};
use crate::nemesis::{clock_bind, clock_env};
use crate::txn::TxnKind;
use crate::workload::{Target, Workload};

/// InnoDB isolation levels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// `READ COMMITTED`.
    ReadCommitted,
    /// `REPEATABLE READ`, InnoDB's default (not snapshot isolation unless
    /// `snapshot-isolation = true`: a lost update at this level is documented behaviour).
    #[default]
    RepeatableRead,
    /// `SERIALIZABLE`.
    Serializable,
}

impl Isolation {
    /// The SQL spelling, `REPEATABLE READ`.
    pub fn sql(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "READ COMMITTED",
            Isolation::RepeatableRead => "REPEATABLE READ",
            Isolation::Serializable => "SERIALIZABLE",
        }
    }

    /// The server option's spelling, `REPEATABLE-READ`.
    pub fn option(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "READ-COMMITTED",
            Isolation::RepeatableRead => "REPEATABLE-READ",
            Isolation::Serializable => "SERIALIZABLE",
        }
    }
}

/// The `[galera]` table: the isolation settings of every node and session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct GaleraSpec {
    /// `read-committed`, `repeatable-read` (default, InnoDB's) or `serializable`.
    pub isolation: Isolation,
    /// `innodb_snapshot_isolation`: a repeatable-read transaction that writes a row changed
    /// since its snapshot fails with error 1020 instead of overwriting it. Default false, as
    /// MariaDB 10.11 ships.
    pub snapshot_isolation: bool,
    /// `wsrep_sync_wait`, 0 to 15 (a bit mask: 1 makes reads wait until the node applied
    /// everything committed before them). Default 0, as shipped.
    pub sync_wait: u8,
    /// Send the transactions' statements as prepared statements (the binary protocol:
    /// `COM_STMT_PREPARE`/`EXECUTE`, `mysql_async`'s `exec`) instead of text with the integers
    /// inline (default). Measured here: with prepared statements a brute-force-aborted
    /// transaction can end without its 1213 reaching the client (see the README).
    pub prepared: bool,
}

/// Checks a workload's `[galera]` table: only with `target = "galera"`, values in range.
///
/// # Errors
/// The field and what is wrong.
pub fn validate(w: &Workload) -> Result<(), (&'static str, String)> {
    let Some(g) = &w.galera else {
        return Ok(());
    };
    if w.target != Target::Galera {
        return Err((
            "galera",
            format!(
                "the `[galera]` table configures the galera target, not {}",
                w.target.as_str()
            ),
        ));
    }
    if g.sync_wait > 15 {
        return Err((
            "galera.sync-wait",
            format!(
                "{} is not allowed: wsrep_sync_wait is a bit mask from 0 to 15",
                g.sync_wait
            ),
        ));
    }
    Ok(())
}

/// Galera nodes from a `faultline/galera:*` image.
#[derive(Debug, Clone)]
pub struct Galera {
    /// The image.
    pub image: String,
    /// Isolation settings.
    pub spec: GaleraSpec,
    /// Which table transactions use.
    pub kind: TxnKind,
    /// Extra `mariadbd` flags for every node (`node.args`).
    pub args: Vec<String>,
    /// The data directory is on faultfs (untested with InnoDB).
    pub faultfs: bool,
}

/// Galera's group communication port.
pub const GCOMM_PORT: u16 = 4567;

/// The InnoDB and Galera files under a node's data directory (`/data`), for `corrupt`.
pub const GALERA_DATA_FILES: [&str; 4] = [
    "db/ibdata1",
    "db/ib_logfile*",
    "db/galera.cache",
    "db/grastate.dat",
];

impl Galera {
    /// The Galera target of a workload.
    pub fn for_workload(w: &Workload, image: &str) -> Self {
        Self {
            image: image.to_string(),
            spec: w.galera.clone().unwrap_or_default(),
            kind: w.txn.as_ref().map(|t| t.kind).unwrap_or_default(),
            args: w.node.args.clone(),
            faultfs: w.uses_faultfs(),
        }
    }

    /// The session settings of every client.
    pub fn session(&self) -> GaleraSession {
        GaleraSession {
            isolation: self.spec.isolation.sql(),
            snapshot_isolation: self.spec.snapshot_isolation,
            sync_wait: self.spec.sync_wait,
            kind: self.kind,
            prepared: self.spec.prepared,
        }
    }
}

impl Db for Galera {
    fn name(&self) -> &str {
        "galera"
    }

    fn node_spec(
        &self,
        cluster: &Cluster,
        i: usize,
        n: usize,
        clock_dir: &Path,
    ) -> Result<NodeSpec, String> {
        let peers: Vec<String> = (0..n).map(|j| cluster.address_of(j).to_string()).collect();
        let name = node_name(i);
        let mut cmd = vec![
            format!("--wsrep-cluster-address=gcomm://{}", peers.join(",")),
            format!("--wsrep-node-address={}", cluster.address_of(i)),
            format!("--wsrep-node-name={name}"),
            "--wsrep-cluster-name=faultline".into(),
            format!("--transaction-isolation={}", self.spec.isolation.option()),
            format!(
                "--innodb-snapshot-isolation={}",
                if self.spec.snapshot_isolation {
                    "ON"
                } else {
                    "OFF"
                }
            ),
            format!("--wsrep-sync-wait={}", self.spec.sync_wait),
        ];
        cmd.extend(self.args.iter().cloned());
        let mut env = clock_env();
        if i == 0 {
            env.push("FAULTLINE_GALERA_BOOTSTRAP=1".into());
        }
        Ok(NodeSpec {
            binds: vec![clock_bind(clock_dir, &name)],
            env,
            name,
            image: self.image.clone(),
            entrypoint: self
                .faultfs
                .then(|| faultfs_entrypoint("/data", GALERA_ENTRYPOINT)),
            cmd,
            data_dir: "/data".into(),
            restart_on_failure: false,
            fuse: self.faultfs,
            ports: vec![GALERA_PORT],
        })
    }

    fn client(&self, http: &HttpClient, cluster: &Cluster, i: usize) -> NodeClient {
        let node = &cluster.nodes()[i];
        NodeClient::Galera(GaleraClient::new(
            &node.name,
            node.endpoint(GALERA_PORT),
            http.timeout(),
            self.session(),
        ))
    }

    fn clock_supported(&self) -> Result<(), String> {
        Ok(())
    }

    fn data_files(&self) -> Vec<String> {
        GALERA_DATA_FILES.map(String::from).to_vec()
    }
}

/// Before any client: the tables (and a bank's accounts), created through n1.
///
/// # Errors
/// When the clients are not Galera clients, or the tables cannot be created.
pub async fn prepare(w: &Workload, clients: &[(String, NodeClient)]) -> anyhow::Result<()> {
    let all = NodeClient::all_as(
        clients,
        NodeClient::galera,
        "the galera target needs Galera clients",
    )?;
    let (_, first) = all
        .first()
        .ok_or_else(|| anyhow::anyhow!("a Galera cluster without nodes"))?;
    first
        .setup(w.bank.as_ref())
        .await
        .map_err(|e| anyhow::anyhow!(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(extra: &str) -> Result<Workload, crate::workload::WorkloadError> {
        crate::workload::parse(
            &format!(
                "description = \"d\"\ntarget = \"galera\"\ntime-limit = 1\nrate = 1\nconcurrency = 1\n[txn]\n{extra}"
            ),
            "t.toml",
        )
    }

    #[test]
    fn the_galera_table_has_defaults_as_shipped_and_refuses_bad_values() {
        let w = workload("").unwrap();
        assert_eq!(Galera::for_workload(&w, "i").spec, GaleraSpec::default());
        assert_eq!(GaleraSpec::default().isolation, Isolation::RepeatableRead);
        let w = workload(
            "[galera]\nisolation = \"serializable\"\nsnapshot-isolation = true\nsync-wait = 1\n",
        )
        .unwrap();
        let g = w.galera.clone().unwrap();
        assert_eq!(
            (g.isolation, g.snapshot_isolation, g.sync_wait),
            (Isolation::Serializable, true, 1)
        );
        let e = workload("[galera]\nsync-wait = 16\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("galera.sync-wait") && e.contains("t.toml"),
            "{e}"
        );
        let e = workload("[galera]\nisolation = \"snapshot\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.toml: line 8") && e.contains("repeatable-read"),
            "{e}"
        );
        let e = workload("[galera]\nsnapshot = true\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("snapshot"), "{e}");
    }

    #[test]
    fn the_galera_table_belongs_to_the_galera_target() {
        let e = crate::workload::parse(
            "description = \"d\"\ntarget = \"raftkv\"\ntime-limit = 1\nrate = 1\nconcurrency = 1\n[galera]\n",
            "r.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("galera"), "{e}");
    }

    #[test]
    fn isolation_spellings() {
        assert_eq!(Isolation::ReadCommitted.sql(), "READ COMMITTED");
        assert_eq!(Isolation::RepeatableRead.option(), "REPEATABLE-READ");
    }
}
