//! Where Faultline's project folder is: the workspace with `workloads/` and `results/`.

use std::path::{Path, PathBuf};

/// The project folder: `$FAULTLINE_HOME`, else the nearest ancestor of the current directory that
/// holds both `Cargo.toml` and `workloads/`, else the folder this binary was built from.
pub fn root() -> PathBuf {
    if let Some(home) = std::env::var_os("FAULTLINE_HOME") {
        return PathBuf::from(home);
    }
    if let Ok(cwd) = std::env::current_dir()
        && let Some(found) = find_root(&cwd)
    {
        return found;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness/ has a parent")
        .to_path_buf()
}

/// The nearest ancestor of `start` (itself included) that looks like the Faultline workspace.
pub fn find_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|d| d.join("Cargo.toml").is_file() && d.join("workloads").is_dir())
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_from_a_subfolder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), "").unwrap();
        std::fs::create_dir_all(dir.path().join("workloads")).unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        assert_eq!(
            find_root(&dir.path().join("a/b")).as_deref(),
            Some(dir.path())
        );
        let elsewhere = tempfile::tempdir().unwrap();
        assert_eq!(find_root(elsewhere.path()), None);
    }
}
