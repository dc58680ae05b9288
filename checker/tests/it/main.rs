//! Integration tests of faultline-checker, one module per area.

mod corpus;

use std::path::PathBuf;

/// The shared test data (`shared/testdata` beside the workspace).
pub fn testdata() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata"
    ))
}

mod budget;
mod counterexample;
mod elle_cli;
mod fails;
mod format;
mod models;
mod random;
mod txn;
