//! Images built on this machine, because no registry can be reached: the base image from Debian's
//! packages (debootstrap, then `docker import`), and node images (base + a node binary) on top.
//!
//! Images are tagged by content (a hash of their recipe, or of the binary they carry), so a second
//! run finds and reuses them, and a changed binary gets a new image.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, ListImagesOptionsBuilder,
};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{ControlError, DockerContext, host_apt_source, is_not_found};

/// The Dockerfile lines that install the `.deb` files of the build context's `debs/` offline,
/// with no service started (`policy-rc.d`), up to the `RUN`'s next `&&` step: a string literal,
/// so each image can go on with its own clean-up (`concat!(install_debs!(), " && ...")`).
macro_rules! install_debs {
    () => {
        "COPY debs/ /tmp/debs/
RUN printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends /tmp/debs/*.deb \\
"
    };
}
use install_debs;

mod galera;
mod target;
pub use galera::{GALERA_ENTRYPOINT, GALERA_REPO, GaleraImage};
pub use target::TargetImage;

/// Repository name of the base image.
pub const BASE_REPO: &str = "faultline/base";
/// Debian packages in the base image, beyond debootstrap's minimal base. iptables for partitions
/// and packet loss, iproute2 for `tc`, libfaketime for clock faults, procps and iputils-ping for
/// looking around inside a node.
pub const BASE_PACKAGES: &[&str] = &[
    "iptables",
    "iproute2",
    "libfaketime",
    "ca-certificates",
    "procps",
    "iputils-ping",
];

/// What every node image adds for the storage-fault filesystem: the `faultfs` binary (a node
/// started under `faultfs run` has its data directory on it) and the control socket every
/// `faultfs ctl` finds without flags.
const FAULTFS_LINES: &str =
    "COPY faultfs /usr/local/bin/faultfs\nENV FAULTFS_CONTROL=/run/faultfs.sock\n";

/// Bump when the way the base image is made changes, so old images are not reused.
const BASE_RECIPE_VERSION: &str = "1";

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The content tag of the base image for a Debian suite: a hash of everything that decides what
/// goes into the image.
pub fn base_recipe_tag(suite: &str) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "v{BASE_RECIPE_VERSION}|{suite}|minbase|{}",
        BASE_PACKAGES.join(",")
    ));
    format!("{suite}-{}", &hex::encode(h.finalize())[..12])
}

/// A node binary to put into an image, and where it came from (for `run.json`).
#[derive(Debug, Clone)]
pub struct NodeBinary {
    /// Path of the executable on the host.
    pub path: PathBuf,
    /// Human-readable origin: "workspace", "--node-bin ...".
    pub origin: String,
}

impl NodeBinary {
    /// The workspace's `faultfs` (the storage-fault filesystem every node image carries), built
    /// in release mode with cargo (a no-op when it is fresh).
    ///
    /// # Errors
    /// When cargo is missing or the build fails.
    pub async fn workspace_faultfs(workspace: &Path) -> Result<Self, ControlError> {
        Self::workspace_binary(workspace, "faultfs").await
    }

    /// The binary `name` of the workspace package of that name, built in release mode.
    ///
    /// # Errors
    /// When cargo is missing or the build fails.
    pub async fn workspace_binary(workspace: &Path, name: &str) -> Result<Self, ControlError> {
        let status =
            tokio::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "--release", "--quiet", "-p", name, "--bin", name])
                .current_dir(workspace)
                .stdin(Stdio::null())
                .status()
                .await
                .map_err(|e| {
                    ControlError::NodeBinary(format!(
                        "cannot run cargo in {}: {e}",
                        workspace.display()
                    ))
                })?;
        if !status.success() {
            return Err(ControlError::NodeBinary(format!(
                "`cargo build --release -p {name}` failed in {} ({status})",
                workspace.display()
            )));
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        Self::from_path(&target.join("release").join(name), "workspace")
    }

    /// A binary given by path (`--node-bin`).
    ///
    /// # Errors
    /// When the file is missing, not executable, or not a dynamically linked ELF (libfaketime,
    /// which clock faults need, only reaches dynamically linked programs).
    pub fn from_path(path: &Path, origin: &str) -> Result<Self, ControlError> {
        let bytes = std::fs::read(path).map_err(|e| {
            ControlError::NodeBinary(format!("cannot read {}: {e}", path.display()))
        })?;
        if !bytes.starts_with(b"\x7fELF") {
            return Err(ControlError::NodeBinary(format!(
                "{} is not an ELF executable",
                path.display()
            )));
        }
        if !has_interpreter(&bytes) {
            tracing::warn!(
                "{} is statically linked: clock faults (libfaketime) will not reach it",
                path.display()
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            origin: origin.to_string(),
        })
    }

    /// A hash of the binary's bytes, the basis of the node image's tag.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn digest(&self) -> Result<String, ControlError> {
        let bytes = std::fs::read(&self.path).map_err(|e| {
            ControlError::NodeBinary(format!("cannot read {}: {e}", self.path.display()))
        })?;
        Ok(hex::encode(Sha256::digest(&bytes)))
    }
}

/// True when the ELF file has a program interpreter (PT_INTERP), i.e. is dynamically linked.
fn has_interpreter(elf: &[u8]) -> bool {
    // 64-bit little-endian ELF: e_phoff at 0x20 (u64), e_phentsize at 0x36, e_phnum at 0x38.
    if elf.len() < 0x40 || elf[4] != 2 || elf[5] != 1 {
        return false;
    }
    let rd16 = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (rd16(0x36), rd16(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        elf.get(o..o + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().unwrap()) == 3)
    })
}

/// One image Faultline made, for `faultline images`.
#[derive(Debug, Clone)]
pub struct ImageRow {
    /// `repo:tag`.
    pub name: String,
    /// Docker's image id.
    pub id: String,
    /// Size in bytes.
    pub size: i64,
    /// Creation time, seconds since the epoch.
    pub created: i64,
}

/// Finds or builds Faultline's images.
pub struct Images {
    docker: Docker,
    progress: bool,
}

impl Images {
    /// `progress`: draw a spinner with the build's latest output line on stderr.
    pub fn new(docker: Docker, progress: bool) -> Self {
        Self { docker, progress }
    }

    /// Every image in a `faultline/` repository.
    ///
    /// # Errors
    /// When Docker refuses the listing.
    pub async fn list(&self) -> Result<Vec<ImageRow>, ControlError> {
        let images = self
            .docker
            .list_images(Some(ListImagesOptionsBuilder::default().all(false).build()))
            .await
            .ctx(|| "listing images".into())?;
        let mut rows: Vec<ImageRow> = images
            .into_iter()
            .flat_map(|img| {
                img.repo_tags
                    .iter()
                    .filter(|t| t.starts_with("faultline/"))
                    .map(|t| ImageRow {
                        name: t.clone(),
                        id: img.id.clone(),
                        size: img.size,
                        created: img.created,
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rows)
    }

    async fn exists(&self, name: &str) -> Result<bool, ControlError> {
        match self.docker.inspect_image(name).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e).ctx(|| format!("inspecting image {name}")),
        }
    }

    /// The base image's name (`faultline/base:<suite>-<hash>`), building it when missing (or
    /// always, with `rebuild`).
    ///
    /// # Errors
    /// [`ControlError::CannotBuildBase`] when debootstrap or an apt source is missing; build errors
    /// with the tail of debootstrap's output.
    pub async fn ensure_base(&self, rebuild: bool) -> Result<String, ControlError> {
        let source = host_apt_source(Path::new("/"));
        let suite = source
            .as_ref()
            .map(|s| s.suite.clone())
            .unwrap_or_else(|_| "bookworm".into());
        let tag = base_recipe_tag(&suite);
        let name = format!("{BASE_REPO}:{tag}");
        if !rebuild && self.exists(&name).await? {
            return Ok(name);
        }
        let source = source.map_err(|reason| ControlError::CannotBuildBase {
            tag: name.clone(),
            reason,
        })?;
        if which("debootstrap").is_none() {
            return Err(ControlError::CannotBuildBase {
                tag: name,
                reason: "debootstrap is not installed and no registry is reachable".into(),
            });
        }
        let started = Instant::now();
        // Said on every terminal, progress bar or not: the first run on a machine waits here.
        eprintln!(
            "faultline: building the base image {name} from Debian {} with debootstrap (once per \
             machine, about a minute)",
            source.suite
        );
        let bar = self.spinner(format!(
            "building {name} from {} {}",
            source.uri, source.suite
        ));
        let scratch = tempfile::Builder::new()
            .prefix("faultline-rootfs-")
            .tempdir_in("/var/tmp")
            .map_err(|source| ControlError::Io {
                what: "creating a scratch folder in /var/tmp".into(),
                source,
            })?;
        let rootfs = scratch.path().join("rootfs");
        let include = format!("--include={}", BASE_PACKAGES.join(","));
        let args = ["--variant=minbase", include.as_str(), source.suite.as_str()];
        run_streaming(
            "debootstrap",
            args.iter()
                .map(|s| s.to_string())
                .chain([rootfs.display().to_string(), source.uri.clone()]),
            &bar,
        )
        .await
        .map_err(|reason| ControlError::Build {
            tag: name.clone(),
            reason,
        })?;
        // Leave out what a container never needs; it makes the import smaller and faster.
        for dir in [
            "var/cache/apt/archives",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
            "usr/share/locale",
        ] {
            let _ = std::fs::remove_dir_all(rootfs.join(dir));
        }
        bar.set_message(format!("importing {name} into Docker"));
        self.import_rootfs(&rootfs, &tag).await?;
        drop(scratch);
        bar.finish_and_clear();
        eprintln!("built {name} in {:.1} s", started.elapsed().as_secs_f64());
        Ok(name)
    }

    /// Streams `tar -C rootfs -c .` into Docker's image import.
    async fn import_rootfs(&self, rootfs: &Path, tag: &str) -> Result<(), ControlError> {
        let name = format!("{BASE_REPO}:{tag}");
        let mut child = tokio::process::Command::new("tar")
            .args(["--numeric-owner", "-C"])
            .arg(rootfs)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ControlError::Io {
                what: "starting tar".into(),
                source,
            })?;
        let stdout = child.stdout.take().expect("piped");
        let body =
            bollard::body_try_stream(tokio_util::io::ReaderStream::with_capacity(stdout, 1 << 20));
        let options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(BASE_REPO)
            .tag(tag)
            .changes(vec![
                format!("ENV {PATH_ENV}"),
                "LABEL faultline.image=base".into(),
            ])
            .build();
        let mut stream = self.docker.create_image(Some(options), Some(body), None);
        while let Some(item) = stream.next().await {
            item.ctx(|| format!("importing {name}"))?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|source| ControlError::Io {
                what: "waiting for tar".into(),
                source,
            })?;
        if !out.status.success() {
            return Err(ControlError::Build {
                tag: name,
                reason: format!("tar failed: {}", String::from_utf8_lossy(&out.stderr)),
            });
        }
        Ok(())
    }

    /// The first image tagged in `repo` that carries every `key=value` of `labels`: its tag and
    /// a reader of its labels (a missing one reads as empty).
    pub(super) async fn find_labelled(
        &self,
        repo: &str,
        labels: &[String],
    ) -> Result<Option<(String, impl Fn(&str) -> String + use<>)>, ControlError> {
        let filters = std::collections::HashMap::from([("label".to_string(), labels.to_vec())]);
        let images = self
            .docker
            .list_images(Some(
                ListImagesOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .ctx(|| format!("listing {repo} images"))?;
        Ok(images.into_iter().find_map(|img| {
            let name = img.repo_tags.iter().find(|t| t.starts_with(repo))?.clone();
            let labels = img.labels;
            Some((name, move |k: &str| {
                labels.get(k).cloned().unwrap_or_default()
            }))
        }))
    }

    /// Builds `name` from a Dockerfile and files from disk (the classic builder, no registry).
    async fn build(
        &self,
        name: &str,
        what: &str,
        dockerfile: &str,
        files: &[(&str, &Path)],
    ) -> Result<(), ControlError> {
        let context = build_context(&[("Dockerfile", dockerfile.as_bytes(), 0o644)], files)?;
        self.build_from_context(name, what, context).await
    }

    /// Builds `name` from a ready build context (a tar with a `Dockerfile`).
    async fn build_from_context(
        &self,
        name: &str,
        what: &str,
        context: Vec<u8>,
    ) -> Result<(), ControlError> {
        let bar = self.spinner(what.to_string());
        let options = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(name)
            .rm(true)
            .forcerm(true)
            .build();
        let mut stream =
            self.docker
                .build_image(options, None, Some(bollard::body_full(context.into())));
        while let Some(item) = stream.next().await {
            let info = item.ctx(|| format!("building {name}"))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(ControlError::Build {
                    tag: name.to_string(),
                    reason: err,
                });
            }
            if let Some(line) = info
                .stream
                .as_deref()
                .map(str::trim)
                .filter(|l| !l.is_empty())
            {
                bar.set_message(format!("{name}: {line}"));
            }
        }
        bar.finish_and_clear();
        if !self.exists(name).await? {
            return Err(ControlError::Build {
                tag: name.to_string(),
                reason: "the engine reported no error but made no image".into(),
            });
        }
        Ok(())
    }

    fn spinner(&self, msg: String) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed:>3}] {wide_msg}")
                .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar.set_message(msg);
        bar
    }
}

/// A tar archive (the Docker build context) of in-memory files and files from disk.
fn build_context(
    inline: &[(&str, &[u8], u32)],
    files: &[(&str, &Path)],
) -> Result<Vec<u8>, ControlError> {
    let io = |what: String| move |source| ControlError::Io { what, source };
    let mut tar = tar::Builder::new(Vec::new());
    // Docker's build-context reader rejects GNU sparse entries (header type S).
    tar.sparse(false);
    for (name, data, mode) in inline {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(*mode);
        header.set_cksum();
        tar.append_data(&mut header, name, *data)
            .map_err(io(format!("adding {name} to the build context")))?;
    }
    for (name, path) in files {
        if path.is_dir() {
            tar.append_dir_all(name, path).map_err(io(format!(
                "adding the folder {} to the build context",
                path.display()
            )))?;
            continue;
        }
        let mut f = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
        tar.append_file(name, &mut f).map_err(io(format!(
            "adding {} to the build context",
            path.display()
        )))?;
    }
    tar.into_inner()
        .map_err(io("finishing the build context".into()))
}

/// Runs a program, showing each output line on the spinner; on failure returns the last lines.
async fn run_streaming(
    program: &str,
    args: impl IntoIterator<Item = String>,
    bar: &ProgressBar,
) -> Result<(), String> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let mut out = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut err = BufReader::new(child.stderr.take().expect("piped")).lines();
    let mut tail = std::collections::VecDeque::new();
    let mut note = |line: String| {
        bar.set_message(format!("{program}: {line}"));
        if tail.len() == 20 {
            tail.pop_front();
        }
        tail.push_back(line);
    };
    let (mut out_done, mut err_done) = (false, false);
    loop {
        tokio::select! {
            l = out.next_line(), if !out_done => match l {
                Ok(Some(l)) => note(l),
                _ => out_done = true,
            },
            l = err.next_line(), if !err_done => match l {
                Ok(Some(l)) => note(l),
                _ => err_done = true,
            },
            else => break,
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("waiting for {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} exited with {status}; its last lines:\n  {}",
            Vec::from(tail).join("\n  ")
        ))
    }
}

/// Runs a program to its end; its standard output, or what went wrong.
async fn command_output(program: &str, args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `apt-get download PACKAGE` into `dir` (after `apt-get update` when the package lists do not
/// know it yet); the path of the `.deb`.
async fn apt_download(package: &str, dir: &Path) -> Result<PathBuf, String> {
    let download = || async {
        let out = tokio::process::Command::new("apt-get")
            .args(["download", "-q", package])
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| format!("cannot run apt-get (a Debian host is needed): {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    };
    if let Err(first) = download().await {
        tracing::info!("apt-get download {package} failed ({first}); running apt-get update");
        command_output("apt-get", &["update", "-qq"])
            .await
            .map_err(|e| {
                format!("`apt-get download {package}` failed ({first}) and so did {e}; run `scripts/setup` as a user who may run apt-get")
            })?;
        download()
            .await
            .map_err(|e| format!("`apt-get download {package}` failed: {e}"))?;
    }
    std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| {
            format!(
                "apt-get download {package} left no .deb in {}",
                dir.display()
            )
        })
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_tag_depends_on_suite_and_is_stable() {
        let a = base_recipe_tag("bookworm");
        assert_eq!(a, base_recipe_tag("bookworm"));
        assert_ne!(a, base_recipe_tag("trixie"));
        assert!(
            a.starts_with("bookworm-") && a.len() == "bookworm-".len() + 12,
            "{a}"
        );
    }

    #[test]
    fn interpreter_detection_tells_dynamic_from_static() {
        // The test binary itself is dynamically linked against glibc.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(has_interpreter(&me));
        assert!(!has_interpreter(b"\x7fELF not really"));
    }

    #[test]
    fn build_context_holds_the_named_files() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("raftkv");
        std::fs::write(&bin, b"binary").unwrap();
        let ctx =
            build_context(&[("Dockerfile", b"FROM x\n", 0o644)], &[("raftkv", &bin)]).unwrap();
        let mut ar = tar::Archive::new(&ctx[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, vec!["Dockerfile", "raftkv"]);
    }

    #[test]
    fn a_missing_node_binary_is_a_clear_error() {
        let err = NodeBinary::from_path(Path::new("/nonexistent/raftkv"), "test").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/raftkv"), "{err}");
    }
}
