//! The mount's lifetime: check the prerequisites, mount, serve the control socket, and on the
//! way out unmount and write through what is still cached.
//!
//! An orderly end (SIGTERM, the `run` child exiting) writes every file's un-fsynced data through,
//! as the kernel would write back its page cache: a process exiting never loses data, only a
//! `drop` (or faultfs dying, e.g. SIGKILL) does. A SIGKILLed faultfs inside a container leaves
//! nothing behind: the mount lives in the container's mount namespace, which dies with it.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};

use crate::control::ControlServer;
use crate::error::Error;
use crate::fs::{Dirty, FaultFs, Shared};
use crate::sys;

/// Where and how to mount.
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory whose files hold what was fsynced.
    pub backing: PathBuf,
    /// Where the filesystem is mounted (may be the backing directory itself).
    pub mount: PathBuf,
    /// The control socket's path.
    pub control: PathBuf,
    /// Open files with `FOPEN_DIRECT_IO` (see the crate docs for what this does to mmap).
    pub direct_io: bool,
    /// FUSE request threads.
    pub threads: usize,
}

/// A mounted faultfs. Call [`Mounted::shutdown`] to end it.
pub struct Mounted {
    shared: Arc<Shared>,
    unmounter: SessionUnmounter,
    session: JoinHandle<io::Result<()>>,
    mountpoint: PathBuf,
    control: ControlServer,
}

/// Mounts faultfs as `options` say and starts its control socket.
///
/// # Errors
/// [`Error::Backing`], [`Error::Mount`] (with a hint naming the usual fix), [`Error::Control`].
pub fn mount(options: &Options) -> Result<Mounted, Error> {
    let backing_error = |source| Error::Backing {
        path: options.backing.clone(),
        source,
    };
    std::fs::create_dir_all(&options.backing).map_err(backing_error)?;
    let mount_error = |cause: io::Error, hint: &str| Error::Mount {
        mount: options.mount.clone(),
        cause,
        hint: hint.to_string(),
    };
    std::fs::create_dir_all(&options.mount).map_err(|e| mount_error(e, ""))?;
    preflight().map_err(|(cause, hint)| mount_error(cause, hint))?;

    let backing = options.backing.canonicalize().map_err(backing_error)?;
    let shared = Arc::new(Shared::new(&backing, options.direct_io).map_err(backing_error)?);
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!("faultfs:{}", backing.display())),
        MountOption::Subtype("faultfs".into()),
        MountOption::DefaultPermissions,
    ];
    // Root may let every user in (the node may run as another user); others need
    // user_allow_other in /etc/fuse.conf for that, so they serve only themselves.
    config.acl = if sys::geteuid() == 0 {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(options.threads.max(1));
    config.clone_fd = options.threads > 1;
    let mut session =
        Session::new(FaultFs(shared.clone()), &options.mount, &config).map_err(|e| {
            let hint = if !has_cap_sys_admin() {
                " (no CAP_SYS_ADMIN, so mounting fell back to fusermount3: run the container \
                 with --cap-add SYS_ADMIN)"
            } else {
                match e.raw_os_error() {
                    Some(libc::EPERM | libc::EACCES) => {
                        " (mounting needs CAP_SYS_ADMIN: run the container with --cap-add SYS_ADMIN)"
                    }
                    Some(libc::ENODEV) => " (this kernel has no FUSE filesystem)",
                    _ => "",
                }
            };
            // fusermount3's own message ends with a newline.
            let e = match e.raw_os_error() {
                Some(_) => e,
                None => io::Error::new(e.kind(), e.to_string().trim_end().to_string()),
            };
            mount_error(e, hint)
        })?;
    shared.set_notifier(session.notifier());
    let mut unmounter = session.unmount_callable();

    let setup = |what| move |source| Error::Setup { what, source };
    let worker = shared.clone();
    thread::Builder::new()
        .name("faultfs-stall".into())
        .spawn(move || worker.faults.release_parked_forever())
        .map_err(setup("starting the stall worker"))?;
    let control = match ControlServer::start(&options.control, shared.clone()) {
        Ok(c) => c,
        Err(source) => {
            let _ = unmounter.unmount();
            return Err(Error::Control {
                path: options.control.clone(),
                source,
            });
        }
    };
    let session = thread::Builder::new()
        .name("faultfs-session".into())
        .spawn(move || session.run())
        .map_err(setup("starting the FUSE session"))?;
    Ok(Mounted {
        shared,
        unmounter,
        session,
        mountpoint: options.mount.clone(),
        control,
    })
}

/// Checks what mounting needs, so that a container missing `--device /dev/fuse` or
/// `--cap-add SYS_ADMIN` gets an error saying so rather than fuser's fallback's error.
fn preflight() -> Result<(), (io::Error, &'static str)> {
    if let Err(e) = OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        let hint = match e.kind() {
            io::ErrorKind::NotFound => " (no /dev/fuse: run the container with --device /dev/fuse)",
            _ => " (cannot open /dev/fuse: run the container with --device /dev/fuse)",
        };
        return Err((io::Error::new(e.kind(), format!("/dev/fuse: {e}")), hint));
    }
    if !has_cap_sys_admin() && !fusermount_available() {
        return Err((
            io::Error::from_raw_os_error(libc::EPERM),
            " (no CAP_SYS_ADMIN to mount directly and no fusermount3 to mount for us: \
             run the container with --cap-add SYS_ADMIN)",
        ));
    }
    Ok(())
}

fn has_cap_sys_admin() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return true;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_none_or(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

fn fusermount_available() -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .any(|dir| dir.join("fusermount3").exists() || dir.join("fusermount").exists())
}

impl Mounted {
    /// Whether the FUSE session has ended (someone unmounted it from outside).
    pub fn session_ended(&self) -> bool {
        self.session.is_finished()
    }

    /// Unmounts (lazily, if something still has files open), waits briefly for the request
    /// threads, writes through and syncs everything still cached, and removes the control socket.
    /// Returns what was written through.
    ///
    /// # Errors
    /// An I/O error writing a file through; the unmount has happened regardless.
    pub fn shutdown(mut self) -> io::Result<Dirty> {
        if let Err(e) = self.unmounter.unmount() {
            if e.raw_os_error() == Some(libc::EBUSY) {
                let _ = sys::detach(&self.mountpoint);
            } else {
                eprintln!("faultfs: unmounting {}: {e}", self.mountpoint.display());
            }
        }
        wait_finished(&self.session, Duration::from_secs(5));
        let synced = self.shared.sync_all();
        self.control.remove();
        synced
    }

    /// The mount point.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }
}

fn wait_finished<T>(handle: &JoinHandle<T>, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !handle.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
}
