//! Signed results: a run folder's `run.json`, `history.jsonl` and `results.json` listed with their
//! sha256 in `manifest.json`, signed with ECDSA P-256 (SHA-256, ASN.1 DER signatures; ring) by a
//! key kept outside `results/`.
//!
//! The key is made on first use at `$FAULTLINE_SIGNING_KEY`, or else
//! `$XDG_CONFIG_HOME/faultline/signing-key.p8` (`~/.config/faultline/...`), PKCS#8, mode 0600;
//! its public key is printed then and written into every manifest. `faultline verify RUN_DIR`
//! checks the hashes (naming the file that changed) and the signature, and says whether the key
//! is this machine's. `faultline report` and `faultline check` sign again after they rewrite
//! `results.json`, but only a run that still verifies: a changed run stays unverifiable.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's file name in a run folder.
pub const MANIFEST: &str = "manifest.json";

/// The files a manifest covers, in this order.
pub const SIGNED_FILES: [&str; 3] = ["run.json", "history.jsonl", "results.json"];

/// The algorithm, as the manifest names it.
const ALGORITHM: &str = "ECDSA-P256-SHA256";

/// One file and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHash {
    /// The file's name in the run folder.
    pub name: String,
    /// Its sha256, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// What is signed: the serde_json encoding of this struct (field order fixed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    /// Manifest format version.
    pub version: u32,
    /// `ECDSA-P256-SHA256`.
    pub algorithm: String,
    /// The signer's public key: the uncompressed SEC1 point, hex.
    pub public_key: String,
    /// The files, in [`SIGNED_FILES`] order.
    pub files: Vec<FileHash>,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// What is signed.
    pub signed: Signed,
    /// The ASN.1 DER signature over `signed`'s JSON, hex.
    pub signature: String,
}

/// A signing key.
pub struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// Where it is kept.
    pub path: PathBuf,
}

/// Why a run does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No manifest.
    #[error("{0}: not signed (no manifest.json)")]
    Unsigned(PathBuf),
    /// The manifest does not parse or uses an unknown algorithm.
    #[error("{path}: {why}")]
    BadManifest { path: PathBuf, why: String },
    /// A listed file is missing or differs from its hash.
    #[error("{file} changed since it was signed: {why}")]
    Changed { file: PathBuf, why: String },
    /// The signature does not match the manifest.
    #[error(
        "{0}: the signature does not match the manifest (the manifest was edited or signed by another key)"
    )]
    BadSignature(PathBuf),
    /// Signed, but not by the key the caller expects.
    #[error("{path}: signed by the key {found}, not by {expected}")]
    OtherKey {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

/// A run that verifies: who signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signer's public key, hex.
    pub public_key: String,
    /// The files covered.
    pub files: Vec<FileHash>,
}

/// Where the signing key is kept: `$FAULTLINE_SIGNING_KEY`, else under the user's config folder.
///
/// # Errors
/// When neither `$XDG_CONFIG_HOME` nor `$HOME` is set.
pub fn default_key_path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("FAULTLINE_SIGNING_KEY") {
        return Ok(PathBuf::from(p));
    }
    let config = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").context(
            "no HOME, XDG_CONFIG_HOME or FAULTLINE_SIGNING_KEY: nowhere to keep the signing key",
        )?)
        .join(".config"),
    };
    Ok(config.join("faultline").join("signing-key.p8"))
}

fn hash_file(path: &Path) -> std::io::Result<FileHash> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileHash {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        sha256: hex::encode(h.finalize()),
        bytes,
    })
}

impl Signer {
    /// The key at `path`, made (and its public key printed on stderr) if there is none.
    ///
    /// # Errors
    /// An unreadable or malformed key file, or one that cannot be written.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Signer> {
        match std::fs::read(path) {
            Ok(pkcs8) => return Signer::from_pkcs8(&pkcs8, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("generating a P-256 key failed"))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // Written whole under another name, then linked into place: two runs that start at once
        // never see half a key, and the second keeps the first's.
        let tmp = dir.join(format!(
            ".signing-key.{}.{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        crate::pki::write_private(&tmp, doc.as_ref())?;
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                let signer = Signer::from_pkcs8(doc.as_ref(), path)?;
                eprintln!(
                    "faultline: made a signing key for results at {} (keep it out of results/); its public key: {}",
                    path.display(),
                    signer.public_key()
                );
                Ok(signer)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let pkcs8 =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                Signer::from_pkcs8(&pkcs8, path)
            }
            Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }

    fn from_pkcs8(pkcs8: &[u8], path: &Path) -> anyhow::Result<Signer> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8, &rng).map_err(
            |e| anyhow::anyhow!("{}: not a PKCS#8 ECDSA P-256 key ({e})", path.display()),
        )?;
        Ok(Signer {
            key,
            rng,
            path: path.to_path_buf(),
        })
    }

    /// The public key, hex (uncompressed SEC1 point).
    pub fn public_key(&self) -> String {
        hex::encode(self.key.public_key().as_ref())
    }

    /// Writes `dir/manifest.json` over the files of [`SIGNED_FILES`] that exist (`run.json` and
    /// `history.jsonl` must).
    ///
    /// # Errors
    /// A missing required file, or one that cannot be read; the manifest not writable.
    pub fn sign_run(&self, dir: &Path) -> anyhow::Result<Manifest> {
        let mut files = Vec::new();
        for name in SIGNED_FILES {
            let p = dir.join(name);
            if name == "results.json" && !p.exists() {
                continue;
            }
            files.push(hash_file(&p).with_context(|| format!("hashing {}", p.display()))?);
        }
        let signed = Signed {
            version: 1,
            algorithm: ALGORITHM.into(),
            public_key: self.public_key(),
            files,
        };
        let bytes = serde_json::to_vec(&signed).expect("the manifest serializes");
        let sig = self
            .key
            .sign(&self.rng, &bytes)
            .map_err(|_| anyhow::anyhow!("signing failed"))?;
        let manifest = Manifest {
            signed,
            signature: hex::encode(sig.as_ref()),
        };
        let path = dir.join(MANIFEST);
        let tmp = dir.join(format!(".{MANIFEST}.tmp"));
        std::fs::write(
            &tmp,
            serde_json::to_string_pretty(&manifest).expect("serializes") + "\n",
        )
        .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(manifest)
    }
}

/// Checks `dir`'s manifest: every listed file's hash, then the signature; with `expected`, that
/// the signer is that public key (hex).
///
/// # Errors
/// [`VerifyError`], naming the file that changed.
pub fn verify_run(dir: &Path, expected: Option<&str>) -> Result<Verified, VerifyError> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(VerifyError::Unsigned(dir.to_path_buf()));
        }
        Err(e) => {
            return Err(VerifyError::BadManifest {
                path,
                why: e.to_string(),
            });
        }
    };
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| VerifyError::BadManifest {
        path: path.clone(),
        why: format!("line {}, column {}: {e}", e.line(), e.column()),
    })?;
    let s = &manifest.signed;
    if s.algorithm != ALGORITHM || s.version != 1 {
        return Err(VerifyError::BadManifest {
            path,
            why: format!(
                "version {} with algorithm {:?}; this Faultline knows version 1 with {ALGORITHM}",
                s.version, s.algorithm
            ),
        });
    }
    let required = ["run.json", "history.jsonl"];
    for name in required {
        if !s.files.iter().any(|f| f.name == name) {
            return Err(VerifyError::BadManifest {
                path: path.clone(),
                why: format!("{name} is not listed"),
            });
        }
    }
    for f in &s.files {
        if f.name.contains('/') || f.name.starts_with('.') {
            return Err(VerifyError::BadManifest {
                path: path.clone(),
                why: format!("lists {:?}, which is not a file of the run folder", f.name),
            });
        }
        let file = dir.join(&f.name);
        let now = hash_file(&file).map_err(|e| VerifyError::Changed {
            file: file.clone(),
            why: e.to_string(),
        })?;
        if now.sha256 != f.sha256 || now.bytes != f.bytes {
            return Err(VerifyError::Changed {
                file,
                why: format!(
                    "sha256 {} ({} bytes) now, {} ({} bytes) signed",
                    now.sha256, now.bytes, f.sha256, f.bytes
                ),
            });
        }
    }
    let bytes = serde_json::to_vec(s).expect("the manifest serializes");
    let public = hex::decode(&s.public_key).map_err(|e| VerifyError::BadManifest {
        path: path.clone(),
        why: format!("public_key: {e}"),
    })?;
    let sig = hex::decode(&manifest.signature).map_err(|e| VerifyError::BadManifest {
        path: path.clone(),
        why: format!("signature: {e}"),
    })?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &public)
        .verify(&bytes, &sig)
        .map_err(|_| VerifyError::BadSignature(path.clone()))?;
    if let Some(want) = expected
        && !want.eq_ignore_ascii_case(&s.public_key)
    {
        return Err(VerifyError::OtherKey {
            path,
            found: s.public_key.clone(),
            expected: want.to_string(),
        });
    }
    Ok(Verified {
        public_key: s.public_key.clone(),
        files: s.files.clone(),
    })
}

/// Signs a run folder with the user's key, saying on stderr why not if it cannot.
pub fn sign_after_run(dir: &Path) {
    let signed = default_key_path()
        .and_then(|p| Signer::load_or_create(&p))
        .and_then(|s| s.sign_run(dir));
    if let Err(e) = signed {
        eprintln!("faultline: warning: {} is not signed: {e:#}", dir.display());
    }
}

/// Signs `dir` again after a command rewrote `results.json`, if it verified before (`before`);
/// a run that did not verify stays as it was, and the warning says so.
pub fn resign_if_verified(dir: &Path, before: &Result<Verified, VerifyError>) {
    match before {
        Ok(_) => sign_after_run(dir),
        Err(VerifyError::Unsigned(_)) => {}
        Err(e) => eprintln!(
            "faultline: warning: {e}; the run is not signed again, so it keeps failing `faultline verify`"
        ),
    }
}

/// Arguments of `faultline verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// Run folders to verify.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Require this signer (public key, hex, as `faultline verify` and the first signing print
    /// it) [default: any key, and say whether it is this machine's].
    #[arg(long, value_name = "HEX")]
    pub public_key: Option<String>,
}

/// `faultline verify`: 0 when every folder verifies, 1 otherwise.
///
/// # Errors
/// None of its own: every failure is reported per folder.
pub fn run(args: &VerifyArgs) -> anyhow::Result<u8> {
    let mine = default_key_path()
        .ok()
        .filter(|p| p.exists())
        .and_then(|p| Signer::load_or_create(&p).ok())
        .map(|s| s.public_key());
    let mut code = 0;
    for dir in &args.dirs {
        match verify_run(dir, args.public_key.as_deref()) {
            Ok(v) => {
                let whose = if mine.as_deref() == Some(v.public_key.as_str()) {
                    "this machine's key".to_string()
                } else {
                    "another key".to_string()
                };
                let files: Vec<&str> = v.files.iter().map(|f| f.name.as_str()).collect();
                println!(
                    "{}: verified ({}), signed by {whose} {}",
                    dir.display(),
                    files.join(", "),
                    v.public_key
                );
            }
            Err(e) => {
                println!("{}: DOES NOT VERIFY: {e}", dir.display());
                code = 1;
            }
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("run.json"), "{\"seed\": 1}\n").unwrap();
        std::fs::write(
            d.path().join("history.jsonl"),
            "{\"type\":\"invoke\",\"process\":0}\n{\"type\":\"ok\",\"process\":0}\n",
        )
        .unwrap();
        std::fs::write(d.path().join("results.json"), "{\"valid\": true}\n").unwrap();
        d
    }

    fn signer() -> (tempfile::TempDir, Signer) {
        let home = tempfile::tempdir().unwrap();
        let s = Signer::load_or_create(&home.path().join("cfg/signing-key.p8")).unwrap();
        (home, s)
    }

    #[test]
    fn a_signed_run_verifies_with_its_key_and_the_key_persists() {
        let (home, s) = signer();
        let d = run_dir();
        s.sign_run(d.path()).unwrap();
        let v = verify_run(d.path(), Some(&s.public_key())).unwrap();
        assert_eq!(
            v.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            SIGNED_FILES
        );
        // The same key next time, kept private.
        let again = Signer::load_or_create(&s.path).unwrap();
        assert_eq!(again.public_key(), s.public_key());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&s.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        drop(home);
    }

    #[test]
    fn runs_that_make_the_key_at_once_share_one() {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join("k.p8");
        let keys: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| Signer::load_or_create(&path).unwrap().public_key()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| k == &keys[0]), "{keys:?}");
        // Nothing but the key is left beside it.
        assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_changed_byte_names_the_file() {
        let (_home, s) = signer();
        let d = run_dir();
        s.sign_run(d.path()).unwrap();
        let h = d.path().join("history.jsonl");
        let mut bytes = std::fs::read(&h).unwrap();
        let i = bytes.iter().position(|&b| b == b'0').unwrap();
        bytes[i] = b'1';
        std::fs::write(&h, bytes).unwrap();
        let e = verify_run(d.path(), None).unwrap_err();
        assert!(
            matches!(&e, VerifyError::Changed { file, .. } if file == &h),
            "{e}"
        );
        assert!(e.to_string().contains("history.jsonl"), "{e}");
    }

    #[test]
    fn an_edited_manifest_or_another_key_does_not_verify() {
        let (_home, s) = signer();
        let d = run_dir();
        s.sign_run(d.path()).unwrap();
        // Edit results.json and the manifest's hash to match: the signature catches it.
        std::fs::write(d.path().join("results.json"), "{\"valid\": false}\n").unwrap();
        let mpath = d.path().join(MANIFEST);
        let mut m: Manifest =
            serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
        let now = hash_file(&d.path().join("results.json")).unwrap();
        *m.signed
            .files
            .iter_mut()
            .find(|f| f.name == "results.json")
            .unwrap() = now;
        std::fs::write(&mpath, serde_json::to_string(&m).unwrap()).unwrap();
        assert!(matches!(
            verify_run(d.path(), None),
            Err(VerifyError::BadSignature(_))
        ));
        // Signed again by another key: verifies, but not as the first key.
        let (_h2, other) = signer();
        other.sign_run(d.path()).unwrap();
        assert!(verify_run(d.path(), None).is_ok());
        assert!(matches!(
            verify_run(d.path(), Some(&s.public_key())),
            Err(VerifyError::OtherKey { .. })
        ));
    }

    #[test]
    fn an_unsigned_run_says_so() {
        let d = run_dir();
        assert!(matches!(
            verify_run(d.path(), None),
            Err(VerifyError::Unsigned(_))
        ));
    }
}
