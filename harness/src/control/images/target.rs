//! The image of a target file (`faultline/<target>:<hash>`): the base image plus what the file's
//! `[image]` table names, and faultfs.
//!
//! - `unpack`: each Debian package fetched with `apt-get download` and unpacked with `dpkg-deb -x`
//!   into `/`, without its dependencies (static Go binaries: etcd, nats-server).
//! - `install`: the packages and every dependency the base image lacks, as the host's apt works
//!   them out against the base image's own dpkg status; downloaded on the host and installed
//!   offline in the build (no registry, no mirror reached from a container).
//! - `files`: local files or folders, relative to the target file.
//! - `cargo`: a package of this workspace built in release mode, copied to `binary`.
//! - `--build PATH`: the user's build, copied to `binary` over whatever else put one there.
//!
//! Images are found again by a recipe hash over the base, the `[image]` table, the bytes of
//! every local input and faultfs, so a second run asks apt nothing; a changed file or build gets
//! a new image.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::galera::{download, resolve};
use super::{ControlError, FAULTFS_LINES, Images, NodeBinary, apt_download, command_output};
use crate::target::TargetFile;

/// Bump when the way target images are made changes.
const RECIPE_VERSION: &str = "2";

/// A target's image and what it carries (for `run.json`).
#[derive(Debug, Clone)]
pub struct TargetImage {
    /// `faultline/<target>:<hash>`.
    pub name: String,
    /// sha256 of the node's program (`[image] binary`).
    pub sha256: String,
    /// Where the program came from: `Debian etcd-server 3.4.23-4+b4`, `workspace`, `--build ...`.
    pub origin: String,
}

/// A local input of the image: its name in the build context, the host path, where it goes.
struct Input {
    context: String,
    path: PathBuf,
    to: String,
    mode: Option<u32>,
}

/// sha256 over a file's bytes, or over a folder's relative paths and file bytes, in order.
fn digest_path(path: &Path) -> Result<String, ControlError> {
    let io = |source| ControlError::Io {
        what: format!("reading {}", path.display()),
        source,
    };
    let mut h = Sha256::new();
    if path.is_dir() {
        let mut stack = vec![path.to_path_buf()];
        let mut files = Vec::new();
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).map_err(io)? {
                let p = e.map_err(io)?.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    files.push(p);
                }
            }
        }
        files.sort();
        for f in files {
            h.update(
                f.strip_prefix(path)
                    .unwrap_or(&f)
                    .to_string_lossy()
                    .as_bytes(),
            );
            h.update(std::fs::read(&f).map_err(io)?);
        }
    } else {
        h.update(std::fs::read(path).map_err(io)?);
    }
    Ok(hex::encode(h.finalize()))
}

/// `path` inside `root`, following symbolic links as the image would (absolute links from
/// `root`), at most 16 of them.
fn resolve_in(root: &Path, path: &str) -> PathBuf {
    let mut p = root.join(path.trim_start_matches('/'));
    for _ in 0..16 {
        match std::fs::read_link(&p) {
            Ok(link) if link.is_absolute() => {
                p = root.join(link.strip_prefix("/").unwrap_or(&link));
            }
            Ok(link) => p = p.parent().unwrap_or(root).join(link),
            Err(_) => break,
        }
    }
    p
}

/// Where the program came from: the build's origin (`workspace`, `--build PATH`), the Debian
/// packages named in `[image]` with their versions, or the target's own files.
fn origin_of(build: Option<&str>, versions: &[String], target: &str) -> String {
    match build {
        Some(o) if versions.is_empty() => o.to_string(),
        Some(o) => format!("{o} on Debian {}", versions.join(", ")),
        None if versions.is_empty() => format!("targets/{target}.toml files"),
        None => format!("Debian {}", versions.join(", ")),
    }
}

/// Moves what packages put in `/bin`, `/sbin` and `/lib*` under `root` into `root/usr/...`: the
/// base image has merged /usr (those are symbolic links into /usr), and a `COPY` of a real `lib/`
/// folder would replace the link and take the dynamic loader away with it.
fn merge_usr(root: &Path) -> std::io::Result<()> {
    fn merge(from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            let (src, dst) = (e.path(), to.join(e.file_name()));
            if e.file_type()?.is_dir() && dst.is_dir() {
                merge(&src, &dst)?;
            } else {
                std::fs::rename(&src, &dst)?;
            }
        }
        std::fs::remove_dir_all(from)
    }
    for top in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        let dir = root.join(top);
        let is_real_dir = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir());
        if is_real_dir {
            merge(&dir, &root.join("usr").join(top))?;
        }
    }
    Ok(())
}

impl Images {
    /// The image of `target`, with `build` (the user's build, `--build PATH`) as its binary when
    /// given, building it when missing.
    ///
    /// # Errors
    /// When a local file is missing, apt cannot resolve or fetch a package (with what apt said),
    /// the binary is not in the image, or the build fails.
    pub async fn ensure_target(
        &self,
        target: &TargetFile,
        build: Option<&NodeBinary>,
        faultfs: &NodeBinary,
        rebuild: bool,
    ) -> Result<TargetImage, ControlError> {
        let spec = &target.image;
        let repo = format!("faultline/{}", target.name);
        let fail = |reason: String| ControlError::Build {
            tag: format!("{repo}:*"),
            reason,
        };
        let base = self.ensure_base(false).await?;
        let faultfs_sha = faultfs.digest()?;
        // Local inputs, in the order they are copied (the binary last, over anything else).
        let mut inputs = Vec::new();
        for (i, f) in spec.files.iter().enumerate() {
            let path = target.dir.join(&f.from);
            if !path.exists() {
                return Err(fail(format!(
                    "targets/{}.toml: `[image] files`: {} does not exist",
                    target.name,
                    path.display()
                )));
            }
            inputs.push(Input {
                context: format!("files/{i}"),
                path,
                to: f.to.clone(),
                mode: f.mode,
            });
        }
        let mut origin = None;
        let program = match (build, &spec.cargo) {
            (Some(b), _) => {
                origin = Some(b.origin.clone());
                Some(b.clone())
            }
            (None, Some(package)) => {
                origin = Some("workspace".to_string());
                Some(NodeBinary::workspace_binary(&crate::workspace::root(), package).await?)
            }
            (None, None) => None,
        };
        if let Some(p) = &program {
            inputs.push(Input {
                context: "binary".into(),
                path: p.path.clone(),
                to: spec.binary.clone(),
                mode: Some(0o755),
            });
        }
        let mut h = Sha256::new();
        h.update(RECIPE_VERSION.as_bytes());
        h.update(base.as_bytes());
        h.update(serde_json::to_string(spec).unwrap_or_default().as_bytes());
        for input in &inputs {
            h.update(input.to.as_bytes());
            h.update(digest_path(&input.path)?.as_bytes());
        }
        h.update(faultfs_sha.as_bytes());
        let recipe = hex::encode(h.finalize())[..16].to_string();
        let labels = [
            format!("faultline.image={}", target.name),
            format!("faultline.recipe={recipe}"),
        ];
        if !rebuild && let Some((name, label)) = self.find_labelled(&repo, &labels).await? {
            let versions: Vec<String> = label("faultline.versions")
                .split(", ")
                .filter(|v| !v.is_empty())
                .map(String::from)
                .collect();
            return Ok(TargetImage {
                name,
                sha256: label("faultline.binary.sha256"),
                origin: origin_of(origin.as_deref(), &versions, &target.name),
            });
        }
        let started = Instant::now();
        let scratch = tempfile::Builder::new()
            .prefix("faultline-target-")
            .tempdir()
            .map_err(|source| ControlError::Io {
                what: "creating a scratch folder".into(),
                source,
            })?;
        let root = scratch.path().join("root");
        std::fs::create_dir_all(&root).map_err(|source| ControlError::Io {
            what: format!("creating {}", root.display()),
            source,
        })?;
        let bar = self.spinner(format!("fetching the packages of {repo}"));
        // unpack: each package's files into root/.
        let mut versions = Vec::new();
        for package in &spec.unpack {
            let dir = scratch.path().join("unpack").join(package);
            std::fs::create_dir_all(&dir).map_err(|source| ControlError::Io {
                what: format!("creating {}", dir.display()),
                source,
            })?;
            let deb = apt_download(package, &dir).await.map_err(fail)?;
            let deb = deb.display().to_string();
            let version = command_output("dpkg-deb", &["-f", &deb, "Version"])
                .await
                .map_err(fail)?;
            versions.push(format!("{package} {}", version.trim()));
            command_output("dpkg-deb", &["-x", &deb, &root.display().to_string()])
                .await
                .map_err(fail)?;
        }
        merge_usr(&root).map_err(|source| ControlError::Io {
            what: format!(
                "moving /lib, /bin and /sbin of {} under /usr",
                spec.unpack.join(" ")
            ),
            source,
        })?;
        // install: the packages and their dependencies, as .deb files for the build.
        let debs_dir = scratch.path().join("debs");
        let mut debs = Vec::new();
        if !spec.install.is_empty() {
            let status = scratch.path().join("status");
            let text = self.base_dpkg_status(&base).await?;
            std::fs::write(&status, text).map_err(|source| ControlError::Io {
                what: format!("writing {}", status.display()),
                source,
            })?;
            let wanted: Vec<&str> = spec.install.iter().map(String::as_str).collect();
            let packages = resolve(&status, &wanted).await.map_err(fail)?;
            for name in &spec.install {
                if let Some((_, v)) = packages.iter().find(|(n, _)| n == name) {
                    versions.push(format!("{name} {v}"));
                }
            }
            std::fs::create_dir_all(&debs_dir).map_err(|source| ControlError::Io {
                what: format!("creating {}", debs_dir.display()),
                source,
            })?;
            let pinned: Vec<String> = packages.iter().map(|(n, v)| format!("{n}={v}")).collect();
            bar.set_message(format!("downloading {} packages for {repo}", pinned.len()));
            debs = download(&pinned, &debs_dir).await.map_err(fail)?;
            // The installed files, only to find the binary and hash it.
            if program.is_none() {
                for deb in &debs {
                    command_output(
                        "dpkg-deb",
                        &[
                            "-x",
                            &deb.display().to_string(),
                            &scratch.path().join("installed").display().to_string(),
                        ],
                    )
                    .await
                    .map_err(fail)?;
                }
            }
        }
        bar.finish_and_clear();
        // The program's bytes: the build's, else where the packages or files put it.
        let sha256 = match &program {
            Some(p) => p.digest()?,
            None => {
                let mut candidates = vec![
                    resolve_in(&root, &spec.binary),
                    resolve_in(&scratch.path().join("installed"), &spec.binary),
                ];
                for input in &inputs {
                    if let Ok(rest) = Path::new(&spec.binary).strip_prefix(&input.to) {
                        candidates.push(input.path.join(rest));
                    } else if input.to == spec.binary {
                        candidates.push(input.path.clone());
                    }
                }
                let found = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
                    fail(format!(
                        "targets/{}.toml: `[image] binary = \"{}\"`: nothing named in `[image]` puts a file there",
                        target.name, spec.binary
                    ))
                })?;
                digest_path(found)?
            }
        };
        let origin = origin_of(origin.as_deref(), &versions, &target.name);
        let name = format!("{repo}:{}", &recipe[..12]);
        let mut dockerfile = format!("FROM {base}\n");
        let mut context_files: Vec<(String, PathBuf)> = Vec::new();
        if !debs.is_empty() {
            dockerfile += concat!(
                super::install_debs!(),
                " && rm -rf /tmp/debs /var/cache/apt/archives/*.deb /usr/share/doc /usr/share/man\n"
            );
            for d in &debs {
                let file = d.file_name().unwrap_or_default().to_string_lossy();
                context_files.push((format!("debs/{file}"), d.clone()));
            }
        }
        if !spec.unpack.is_empty() {
            dockerfile += "COPY root/ /\n";
            context_files.push(("root".into(), root.clone()));
        }
        for input in &inputs {
            dockerfile += &format!("COPY {} {}\n", input.context, input.to);
            if let Some(mode) = input.mode {
                dockerfile += &format!("RUN chmod {mode:o} {}\n", input.to);
            }
            context_files.push((input.context.clone(), input.path.clone()));
        }
        dockerfile += &format!("RUN test -e {}\n", spec.binary);
        dockerfile += FAULTFS_LINES;
        dockerfile += &format!(
            "LABEL {} {} faultline.base=\"{base}\" faultline.faultfs={faultfs_sha} faultline.binary.sha256={sha256} faultline.versions=\"{}\"\n",
            labels[0],
            labels[1],
            versions.join(", ").replace('"', "'")
        );
        context_files.push(("faultfs".into(), faultfs.path.clone()));
        let files: Vec<(&str, &Path)> = context_files
            .iter()
            .map(|(n, p)| (n.as_str(), p.as_path()))
            .collect();
        self.build(
            &name,
            &format!("building {name} ({origin})"),
            &dockerfile,
            &files,
        )
        .await?;
        eprintln!("built {name} in {:.1} s", started.elapsed().as_secs_f64());
        Ok(TargetImage {
            name,
            sha256,
            origin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbolic_links_resolve_inside_the_image_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join("usr/bin/redis-check-rdb"), b"elf").unwrap();
        std::os::unix::fs::symlink("redis-check-rdb", root.join("usr/bin/redis-server")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/redis-server", root.join("usr/bin/abs")).unwrap();
        assert_eq!(
            resolve_in(root, "/usr/bin/redis-server"),
            root.join("usr/bin/redis-check-rdb")
        );
        assert_eq!(
            resolve_in(root, "/usr/bin/abs"),
            root.join("usr/bin/redis-check-rdb")
        );
    }

    #[test]
    fn unpacked_lib_bin_and_sbin_move_under_usr_as_the_base_image_has_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["lib/systemd/system", "usr/lib/x", "sbin", "usr/bin"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("lib/systemd/system/etcd.service"), b"unit").unwrap();
        std::fs::write(root.join("usr/lib/x/y"), b"y").unwrap();
        std::fs::write(root.join("sbin/tool"), b"tool").unwrap();
        std::fs::write(root.join("usr/bin/etcd"), b"etcd").unwrap();
        merge_usr(root).unwrap();
        assert!(!root.join("lib").exists() && !root.join("sbin").exists());
        assert!(root.join("usr/lib/systemd/system/etcd.service").is_file());
        assert!(root.join("usr/lib/x/y").is_file());
        assert!(root.join("usr/sbin/tool").is_file());
        assert!(root.join("usr/bin/etcd").is_file());
    }

    #[test]
    fn a_folder_digest_changes_with_a_file_and_with_a_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/x"), b"1").unwrap();
        let first = digest_path(dir.path()).unwrap();
        assert_eq!(first, digest_path(dir.path()).unwrap());
        std::fs::write(dir.path().join("a/b/x"), b"2").unwrap();
        let second = digest_path(dir.path()).unwrap();
        assert_ne!(first, second);
        std::fs::rename(dir.path().join("a/b/x"), dir.path().join("a/b/y")).unwrap();
        assert_ne!(second, digest_path(dir.path()).unwrap());
    }
}
