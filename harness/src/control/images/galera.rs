//! The MariaDB Galera Cluster image, `faultline/galera:<hash>`: the base image plus Debian's
//! `mariadb-server`, `galera-4`, `rsync` (the SST method) and `mariadb-client` (for looking
//! around inside a node), with everything they depend on that the base image lacks.
//!
//! `mariadbd` needs dozens of shared libraries, so unlike the one-binary packaged images this one
//! installs packages. The host's apt works out which (a simulated `apt-get install` against the
//! base image's own dpkg status, so alternatives and versions are apt's choices, not ours) and
//! downloads them (`apt-get download`); the build then installs those `.deb` files with
//! `apt-get install ./*.deb`, which orders pre-dependencies and runs no network. No registry, and
//! no mirror reached from inside a container.
//!
//! Two things are changed after installing, both checked in the build:
//! - `wsrep_sst_rsync` writes an rsyncd configuration without `uid`/`gid`; an rsync daemon
//!   started by root then drops to `nobody` and cannot write the joiner's datadir, which belongs
//!   to root (mariadbd runs as root here). The build adds `uid = root` and `gid = root`.
//! - `/var/lib/mysql` (the package's own initialized datadir) is removed: a node's datadir is
//!   `/data/db` on its volume, initialized by the entrypoint on first start.

use std::path::Path;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::{ControlError, DockerContext, Images, NodeBinary, build_context, command_output};

/// Repository name of Galera images.
pub const GALERA_REPO: &str = "faultline/galera";

/// What is asked of apt; the rest of the image's packages are their dependencies.
pub const GALERA_PACKAGES: &[&str] = &["mariadb-server", "galera-4", "rsync", "mariadb-client"];

/// Where the entrypoint is in the image.
pub const GALERA_ENTRYPOINT: &str = "/usr/local/bin/galera-node";

/// The settings every node shares (node-specific ones come as flags from `crate::galera`).
/// Read with `--defaults-file`, so Debian's `/etc/mysql` files (which bind 127.0.0.1) are not.
pub const GALERA_CNF: &str = "\
[mysqld]
user = root
datadir = /data/db
socket = /run/mysqld/mysqld.sock
bind-address = 0.0.0.0
port = 3306
skip-name-resolve
binlog_format = ROW
default_storage_engine = InnoDB
innodb_autoinc_lock_mode = 2
wsrep_on = ON
wsrep_provider = /usr/lib/galera/libgalera_smm.so
wsrep_sst_method = rsync

[client]
socket = /run/mysqld/mysqld.sock
";

/// The node's entrypoint: initializes an empty datadir (`mariadb-install-db`, then a user
/// `faultline@%` without password and the database `faultline`, with wsrep off), and starts
/// `mariadbd` with the container's command as extra flags. The node named by
/// `FAULTLINE_GALERA_BOOTSTRAP=1` forms the cluster (`--wsrep-new-cluster`) on its first start
/// only: the marker `/data/bootstrapped` (outside the datadir, which an rsync SST rewrites) makes
/// a restarted n1 join the others instead of forming a second cluster. A node restarted after a
/// crash first recovers its position from InnoDB (`--wsrep-recover`, as Debian's systemd unit
/// does through `galera_recovery`) and starts from it, so it can rejoin by IST.
pub const GALERA_NODE_SCRIPT: &str = r#"#!/bin/bash
# faultline: one Galera node. Datadir /data/db on the node's volume; mariadbd runs as root.
set -euo pipefail
cnf=/etc/mysql/faultline.cnf
data=/data/db
mkdir -p /run/mysqld
if [ ! -d "$data/mysql" ]; then
  mkdir -p "$data"
  if ! mariadb-install-db --defaults-file=$cnf --user=root --auth-root-authentication-method=normal \
      --skip-test-db --wsrep-on=OFF >/data/install.log 2>&1; then
    cat /data/install.log >&2
    exit 1
  fi
  mariadbd --defaults-file=$cnf --bootstrap --wsrep-on=OFF <<'SQL'
FLUSH PRIVILEGES;
CREATE USER IF NOT EXISTS 'faultline'@'%';
GRANT ALL PRIVILEGES ON *.* TO 'faultline'@'%';
CREATE DATABASE IF NOT EXISTS faultline;
SQL
fi
start=()
if [ -f "$data/grastate.dat" ] && grep -q '^seqno: *-1' "$data/grastate.dat"; then
  # After a crash grastate.dat holds no position: recover it from InnoDB, as Debian's systemd
  # unit does (galera_recovery), so that the node can rejoin by IST instead of a full SST.
  log=$(mktemp)
  if mariadbd --defaults-file=$cnf "$@" --wsrep-recover --disable-log-error 2>"$log"; then
    pos=$(grep -a 'WSREP: Recovered position:' "$log" | sed 's/.*Recovered position: *//' | tail -n 1)
    if [ -n "$pos" ]; then
      start=(--wsrep-start-position="$pos")
    fi
  fi
  echo "faultline: wsrep position recovery: ${pos:-none}" >&2
  rm -f "$log"
fi
new=()
if [ "${FAULTLINE_GALERA_BOOTSTRAP:-0}" = 1 ] && [ ! -e /data/bootstrapped ]; then
  touch /data/bootstrapped
  new=(--wsrep-new-cluster)
fi
exec mariadbd --defaults-file=$cnf "$@" "${start[@]}" "${new[@]}"
"#;

/// Bump when the way the image is made changes (the Dockerfile below).
const GALERA_RECIPE_VERSION: &str = "1";

/// The image's build steps after `FROM`; `{FAULTFS}` is replaced by the faultfs lines.
const GALERA_DOCKERFILE_BODY: &str = concat!(
    super::install_debs!(),
    r#" && rm -rf /tmp/debs /var/lib/mysql /var/cache/apt/archives/*.deb /usr/share/doc /usr/share/man \
 && sed -i 's/^use chroot = no$/use chroot = no\nuid = root\ngid = root/' /usr/bin/wsrep_sst_rsync \
 && grep -q '^uid = root$' /usr/bin/wsrep_sst_rsync \
 && test -x /usr/sbin/mariadbd && test -f /usr/lib/galera/libgalera_smm.so
COPY faultline.cnf /etc/mysql/faultline.cnf
COPY galera-node /usr/local/bin/galera-node
"#
);

/// A Galera image and what it carries (for `run.json`).
#[derive(Debug, Clone)]
pub struct GaleraImage {
    /// `faultline/galera:<hash>`.
    pub name: String,
    /// `mariadb-server`'s version, e.g. `1:10.11.19-0+deb12u1`.
    pub mariadb_version: String,
    /// `galera-4`'s version, e.g. `26.4.23-0+deb12u1`.
    pub galera_version: String,
    /// sha256 of `/usr/sbin/mariadbd`.
    pub sha256: String,
    /// Every package the image added, `name=version`, sorted.
    pub packages: Vec<String>,
}

impl GaleraImage {
    /// `mariadb-server 1:10.11.19-0+deb12u1, galera-4 26.4.23-0+deb12u1`.
    pub fn versions(&self) -> String {
        format!(
            "mariadb-server {}, galera-4 {}",
            self.mariadb_version, self.galera_version
        )
    }
}

/// A hash of everything in the recipe that is not a package: the Dockerfile, the configuration,
/// the entrypoint and the list of asked packages.
fn recipe_hash() -> String {
    let mut h = Sha256::new();
    for part in [
        GALERA_RECIPE_VERSION,
        GALERA_DOCKERFILE_BODY,
        GALERA_CNF,
        GALERA_NODE_SCRIPT,
        &GALERA_PACKAGES.join(","),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())[..16].to_string()
}

/// The packages a simulated `apt-get install` would install (`Inst` lines), as
/// `(name, version)` in apt's order.
pub fn parse_apt_simulation(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("Inst ")?;
            let (name, rest) = rest.split_once(' ')?;
            // `Inst perl-base [5.36.0-7+deb12u3] (5.36.0-7+deb12u4 Debian-Security:...)`: an
            // upgrade names the installed version in brackets first.
            let rest = match rest.strip_prefix('[') {
                Some(r) => r.split_once("] ")?.1,
                None => rest,
            };
            let version = rest.strip_prefix('(')?.split([' ', ')']).next()?;
            Some((name.to_string(), version.to_string()))
        })
        .collect()
}

impl Images {
    /// The Galera image (`faultline/galera:<hash of base, recipe, packages and faultfs>`),
    /// building it when missing (or always, with `rebuild`). An image built on the same base
    /// with the same recipe and faultfs is reused without asking apt anything.
    ///
    /// # Errors
    /// When apt cannot resolve or fetch the packages (with what apt said), or the build fails.
    pub async fn ensure_galera(
        &self,
        faultfs: &NodeBinary,
        rebuild: bool,
    ) -> Result<GaleraImage, ControlError> {
        let base = self.ensure_base(false).await?;
        let faultfs_sha = faultfs.digest()?;
        let recipe = recipe_hash();
        if !rebuild && let Some(found) = self.find_galera(&base, &faultfs_sha, &recipe).await? {
            return Ok(found);
        }
        let started = Instant::now();
        let fail = |reason: String| ControlError::Build {
            tag: format!("{GALERA_REPO}:*"),
            reason,
        };
        let scratch = tempfile::Builder::new()
            .prefix("faultline-galera-")
            .tempdir()
            .map_err(|source| ControlError::Io {
                what: "creating a scratch folder".into(),
                source,
            })?;
        let bar = self.spinner(format!("resolving {} with apt", GALERA_PACKAGES.join(" ")));
        let status = scratch.path().join("status");
        let status_text = self.base_dpkg_status(&base).await?;
        std::fs::write(&status, status_text).map_err(|source| ControlError::Io {
            what: format!("writing {}", status.display()),
            source,
        })?;
        let packages = resolve(&status, GALERA_PACKAGES).await.map_err(fail)?;
        bar.set_message(format!("downloading {} packages", packages.len()));
        let debs = scratch.path().join("debs");
        std::fs::create_dir_all(&debs).map_err(|source| ControlError::Io {
            what: format!("creating {}", debs.display()),
            source,
        })?;
        let wanted: Vec<String> = packages.iter().map(|(n, v)| format!("{n}={v}")).collect();
        let files = download(&wanted, &debs).await.map_err(fail)?;
        bar.finish_and_clear();
        let version_of = |name: &str| {
            packages
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| fail(format!("apt would not install {name}")))
        };
        let (mariadb_version, galera_version) =
            (version_of("mariadb-server")?, version_of("galera-4")?);
        let sha256 = mariadbd_sha256(&files, scratch.path())
            .await
            .map_err(fail)?;
        let mut sorted = wanted.clone();
        sorted.sort();
        let mut h = Sha256::new();
        h.update(base.as_bytes());
        h.update(recipe.as_bytes());
        h.update(sorted.join(",").as_bytes());
        h.update(faultfs_sha.as_bytes());
        let name = format!("{GALERA_REPO}:{}", &hex::encode(h.finalize())[..12]);
        let image = GaleraImage {
            name: name.clone(),
            mariadb_version,
            galera_version,
            sha256,
            packages: sorted,
        };
        let dockerfile = format!(
            "FROM {base}\n{GALERA_DOCKERFILE_BODY}{faultfs_lines}LABEL faultline.image=galera faultline.base=\"{base}\" faultline.faultfs={faultfs_sha} faultline.recipe={recipe} faultline.package.version=\"{mv}\" faultline.galera.version=\"{gv}\" faultline.package.sha256={sha} faultline.packages=\"{list}\"\nENTRYPOINT [\"{GALERA_ENTRYPOINT}\"]\n",
            faultfs_lines = super::FAULTFS_LINES,
            mv = image.mariadb_version,
            gv = image.galera_version,
            sha = image.sha256,
            list = image.packages.join(" "),
        );
        let names: Vec<String> = files
            .iter()
            .map(|f| {
                format!(
                    "debs/{}",
                    f.file_name().unwrap_or_default().to_string_lossy()
                )
            })
            .collect();
        let mut context_files: Vec<(&str, &Path)> = names
            .iter()
            .zip(&files)
            .map(|(n, f)| (n.as_str(), f.as_path()))
            .collect();
        context_files.push(("faultfs", &faultfs.path));
        let context = build_context(
            &[
                ("Dockerfile", dockerfile.as_bytes(), 0o644),
                ("faultline.cnf", GALERA_CNF.as_bytes(), 0o644),
                ("galera-node", GALERA_NODE_SCRIPT.as_bytes(), 0o755),
            ],
            &context_files,
        )?;
        self.build_from_context(
            &name,
            &format!("building {name} from {}", image.versions()),
            context,
        )
        .await?;
        eprintln!("built {name} in {:.1} s", started.elapsed().as_secs_f64());
        Ok(image)
    }

    /// A Galera image built on `base` with this faultfs and recipe, if there is one.
    async fn find_galera(
        &self,
        base: &str,
        faultfs_sha: &str,
        recipe: &str,
    ) -> Result<Option<GaleraImage>, ControlError> {
        let labels = [
            "faultline.image=galera".to_string(),
            format!("faultline.base={base}"),
            format!("faultline.faultfs={faultfs_sha}"),
            format!("faultline.recipe={recipe}"),
        ];
        let found = self.find_labelled(GALERA_REPO, &labels).await?;
        Ok(found.map(|(name, label)| GaleraImage {
            name,
            mariadb_version: label("faultline.package.version"),
            galera_version: label("faultline.galera.version"),
            sha256: label("faultline.package.sha256"),
            packages: label("faultline.packages")
                .split_whitespace()
                .map(String::from)
                .collect(),
        }))
    }

    /// `/var/lib/dpkg/status` of the base image, read from a container that is created, never
    /// started, and removed.
    pub(super) async fn base_dpkg_status(&self, base: &str) -> Result<String, ControlError> {
        use bollard::models::ContainerCreateBody;
        use bollard::query_parameters::{
            CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder,
            RemoveContainerOptionsBuilder,
        };
        use futures_util::StreamExt;
        let name = format!(
            "faultline-galera-status-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos()
        );
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                ContainerCreateBody {
                    image: Some(base.to_string()),
                    cmd: Some(vec!["true".into()]),
                    ..Default::default()
                },
            )
            .await
            .ctx(|| format!("creating a container of {base}"))?;
        let mut stream = self.docker.download_from_container(
            &created.id,
            Some(
                DownloadFromContainerOptionsBuilder::default()
                    .path("/var/lib/dpkg/status")
                    .build(),
            ),
        );
        let mut tar_bytes = Vec::new();
        let mut failed = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(b) => tar_bytes.extend_from_slice(&b),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        drop(stream);
        let _ = self
            .docker
            .remove_container(
                &created.id,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await;
        if let Some(e) = failed {
            return Err(e).ctx(|| format!("reading /var/lib/dpkg/status of {base}"));
        }
        let io = |source| ControlError::Io {
            what: format!("reading the dpkg status of {base}"),
            source,
        };
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        // The archive holds the one file asked for.
        let Some(entry) = archive.entries().map_err(io)?.next() else {
            return Err(ControlError::Build {
                tag: format!("{GALERA_REPO}:*"),
                reason: format!("{base} has no /var/lib/dpkg/status"),
            });
        };
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry.map_err(io)?, &mut text).map_err(io)?;
        Ok(text)
    }
}

/// What `apt-get install --no-install-recommends PACKAGES` would install on a system whose
/// dpkg status is `status` (after `apt-get update` when apt does not know the packages yet).
pub(super) async fn resolve(
    status: &Path,
    wanted: &[&str],
) -> Result<Vec<(String, String)>, String> {
    let status_opt = format!("Dir::State::status={}", status.display());
    let simulate = || async {
        let mut args = vec![
            "-s",
            "-q",
            "-o",
            status_opt.as_str(),
            "install",
            "--no-install-recommends",
        ];
        args.extend(wanted);
        command_output("apt-get", &args).await
    };
    let out = match simulate().await {
        Ok(out) => out,
        Err(first) => {
            tracing::info!("apt-get -s install failed ({first}); running apt-get update");
            command_output("apt-get", &["update", "-qq"])
                .await
                .map_err(|e| format!("{first}; and {e}"))?;
            simulate().await?
        }
    };
    let packages = parse_apt_simulation(&out);
    if packages.is_empty() {
        return Err(format!(
            "apt would install nothing for {} (its output: {})",
            wanted.join(" "),
            out.trim()
        ));
    }
    Ok(packages)
}

/// `apt-get download` of every `name=version` into `dir`; the `.deb` files.
pub(super) async fn download(
    wanted: &[String],
    dir: &Path,
) -> Result<Vec<std::path::PathBuf>, String> {
    let out = tokio::process::Command::new("apt-get")
        .args(["download", "-q"])
        .args(wanted)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run apt-get (a Debian host is needed): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`apt-get download` of {} packages failed: {}",
            wanted.len(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut debs: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.sort();
    if debs.len() != wanted.len() {
        return Err(format!(
            "apt-get download left {} .deb files for {} packages in {}",
            debs.len(),
            wanted.len(),
            dir.display()
        ));
    }
    Ok(debs)
}

/// sha256 of `usr/sbin/mariadbd` in the downloaded `mariadb-server-core` package.
async fn mariadbd_sha256(debs: &[std::path::PathBuf], scratch: &Path) -> Result<String, String> {
    let core = debs
        .iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("mariadb-server-core_"))
        })
        .ok_or("no mariadb-server-core package was downloaded")?;
    let root = scratch.join("core");
    command_output(
        "dpkg-deb",
        &[
            "-x",
            &core.display().to_string(),
            &root.display().to_string(),
        ],
    )
    .await?;
    let bytes = std::fs::read(root.join("usr/sbin/mariadbd"))
        .map_err(|e| format!("reading mariadbd from {}: {e}", core.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_simulation_lines_give_names_and_versions_upgrades_included() {
        let out = "\
NOTE: This is only a simulation!
Inst perl-base [5.36.0-7+deb12u3] (5.36.0-7+deb12u4 Debian-Security:12/oldstable-security [amd64])
Inst galera-4 (26.4.23-0+deb12u1 Debian:12.15/oldstable [amd64])
Conf galera-4 (26.4.23-0+deb12u1 Debian:12.15/oldstable [amd64])
Inst mariadb-server (1:10.11.19-0+deb12u1 Debian-Security:12/oldstable-security [amd64])
";
        assert_eq!(
            parse_apt_simulation(out),
            vec![
                ("perl-base".to_string(), "5.36.0-7+deb12u4".to_string()),
                ("galera-4".to_string(), "26.4.23-0+deb12u1".to_string()),
                (
                    "mariadb-server".to_string(),
                    "1:10.11.19-0+deb12u1".to_string()
                ),
            ]
        );
    }

    #[test]
    fn the_recipe_hash_covers_the_entrypoint_and_is_stable() {
        assert_eq!(recipe_hash(), recipe_hash());
        assert_eq!(recipe_hash().len(), 16);
        assert!(GALERA_NODE_SCRIPT.contains("--wsrep-new-cluster"));
        assert!(GALERA_DOCKERFILE_BODY.contains("uid = root"));
    }
}
