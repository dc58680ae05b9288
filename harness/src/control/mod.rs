//! Control: everything Faultline does to Docker. Images built locally without a registry, one
//! network and N containers per run, and the clean-up of anything a run left behind.
//!
//! Every object Faultline creates carries the label [`RUN_LABEL`]`=<run id>`, so teardown and
//! `faultline clean` remove exactly what Faultline made, and nothing else.
//!
//! This module must never touch a container, network, volume or image without Faultline's label
//! (images: without a `faultline/` repository name).

mod apt;
mod clean;
mod cluster;
mod engines;
mod images;
mod net;
pub mod swarm;

pub use apt::{
    AptSource, host_apt_source, parse_os_codename, parse_sources_deb822, parse_sources_list,
};
pub use clean::{Leftovers, RunGuard, clean, clean_engines};
pub(crate) use cluster::exec_in;
pub use cluster::{Cluster, ENGINE_LABEL, ExecOutput, FAILPOINT_EXIT, NodeHandle, NodeSpec};
pub use engines::{
    Engine, EngineSpec, Engines, EnginesFile, NetworkKind, copy_image, host_ports, load_image,
    save_image, slots,
};
pub use images::{
    BASE_PACKAGES, BASE_REPO, GALERA_ENTRYPOINT, GALERA_REPO, GaleraImage, ImageRow, Images,
    NodeBinary, TargetImage, base_recipe_tag,
};

use bollard::Docker;

/// The label every Docker object of a run carries; its value is the run id.
pub const RUN_LABEL: &str = "faultline.run";

/// Errors from talking to Docker or preparing images. Each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No Docker engine answered at the address bollard uses.
    #[error(
        "no Docker engine at {addr}: {reason}\n  start one (e.g. `systemctl start docker`) or point DOCKER_HOST at it"
    )]
    NoEngine {
        /// Where we looked (DOCKER_HOST or the default socket).
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The base image is missing and cannot be built here.
    #[error(
        "the base image {tag} is missing and cannot be built: {reason}\n  run `scripts/setup` (it installs debootstrap from Debian's packages), then retry"
    )]
    CannotBuildBase {
        /// The image tag that was wanted.
        tag: String,
        /// Why it cannot be built.
        reason: String,
    },
    /// A step of an image build failed.
    #[error("building image {tag} failed: {reason}")]
    Build {
        /// The image tag being built.
        tag: String,
        /// What failed, with the tail of the tool's output.
        reason: String,
    },
    /// The node binary could not be found or built.
    #[error("node binary: {0}")]
    NodeBinary(String),
    /// A cluster operation failed.
    #[error("{what}: {source}")]
    Docker {
        /// What Faultline was doing.
        what: String,
        /// The engine's answer.
        #[source]
        source: bollard::errors::Error,
    },
    /// Local I/O (temporary folders, the build context).
    #[error("{what}: {source}")]
    Io {
        /// What Faultline was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Attaches a description of what was being done to a bollard error.
pub(crate) trait DockerContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, ControlError>;
}

impl<T> DockerContext<T> for Result<T, bollard::errors::Error> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, ControlError> {
        self.map_err(|source| ControlError::Docker {
            what: what(),
            source,
        })
    }
}

/// Connects to the local Docker engine (`DOCKER_HOST` when set, else the default socket) and
/// agrees on an API version with it (Debian's engine speaks an older API than bollard's default,
/// so negotiation is required): [`Engine::connect`] of [`EngineSpec::local`].
///
/// # Errors
/// [`ControlError::NoEngine`] when nothing answers, with the address that was tried.
pub async fn connect() -> Result<Docker, ControlError> {
    Ok(Engine::connect(&EngineSpec::local()).await?.docker)
}

/// True when the error is Docker's "no such object" (404).
pub(crate) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
