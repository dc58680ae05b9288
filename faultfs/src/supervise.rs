//! The two foreground modes: `mount` (serve until SIGTERM/SIGINT) and `run` (serve while a child
//! command runs, forwarding signals to it and exiting with its status).
//!
//! Signals are blocked in every thread and taken synchronously with `sigtimedwait`, so there are
//! no handlers and no async-signal-safety concerns; blocked signals also reach faultfs when it is
//! a container's PID 1, where default-disposition signals would otherwise be ignored. As PID 1 it
//! also reaps orphaned zombies.

use std::ffi::OsString;
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use crate::error::Error;
use crate::mount::{Options, mount};

/// Signals forwarded to the `run` child; TERM, INT, HUP and QUIT also end `mount` mode.
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];
const POLL: Duration = Duration::from_millis(200);

/// The blocked signal set, taken with [`Signals::wait`].
struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    /// Blocks the signals faultfs handles. Must run before any thread starts, so that every
    /// thread inherits the mask (the `run` child gets a clean mask in `pre_exec`).
    fn block() -> io::Result<Self> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set; the other calls take valid pointers.
        let set = unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            let mut set = set.assume_init();
            for sig in FORWARDED.iter().chain(&[libc::SIGCHLD]) {
                libc::sigaddset(&mut set, *sig);
            }
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            set
        };
        Ok(Signals { set })
    }

    /// Waits up to `timeout` for one of the blocked signals.
    fn wait(&self, timeout: Duration) -> Option<libc::c_int> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: valid set and timeout; no siginfo wanted.
        let sig = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        (sig > 0).then_some(sig)
    }
}

/// `faultfs mount`: serves until SIGTERM, SIGINT, SIGHUP or SIGQUIT (or an outside unmount),
/// then unmounts and writes through what is cached. Returns the exit code.
///
/// # Errors
/// Setting up signals, or mounting.
pub fn serve(options: &Options) -> Result<i32, Error> {
    let signals = Signals::block().map_err(|source| Error::Setup {
        what: "blocking signals",
        source,
    })?;
    let mounted = mount(options)?;
    announce(options);
    let code = loop {
        match signals.wait(POLL) {
            Some(libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT) => break 0,
            Some(libc::SIGCHLD) => {
                reap(None);
            }
            _ => {}
        }
        if mounted.session_ended() {
            eprintln!(
                "faultfs: {} was unmounted from outside",
                options.mount.display()
            );
            break 1;
        }
    };
    finish(mounted);
    Ok(code)
}

/// `faultfs run`: mounts, runs `command` as a child, forwards signals to it, and when it exits
/// unmounts and returns its exit code (128 + signal if a signal killed it).
///
/// # Errors
/// Setting up signals, mounting, or starting the command (after unmounting again).
pub fn run(options: &Options, command: &[OsString]) -> Result<i32, Error> {
    let signals = Signals::block().map_err(|source| Error::Setup {
        what: "blocking signals",
        source,
    })?;
    let (program, args) = command.split_first().ok_or_else(|| Error::Spawn {
        program: String::new(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "no command given"),
    })?;
    let mounted = mount(options)?;
    announce(options);
    let mut command = Command::new(program);
    command.args(args);
    // SAFETY: only sigprocmask, which is async-signal-safe, runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            // The child must not inherit faultfs's blocked signals (std does not reset the mask).
            let mut empty = MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(empty.as_mut_ptr());
            if libc::sigprocmask(libc::SIG_SETMASK, empty.as_ptr(), std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(source) => {
            finish(mounted);
            return Err(Error::Spawn {
                program: program.to_string_lossy().into_owned(),
                source,
            });
        }
    };
    // Reaped below with waitpid, which also reaps orphans when faultfs is PID 1; the `Child`
    // handle is never waited on.
    let pid = child.id() as libc::pid_t;
    let code = loop {
        if let Some(sig) = signals.wait(POLL)
            && FORWARDED.contains(&sig)
        {
            // SAFETY: plain kill(2) of our own child, which has not been reaped yet.
            unsafe { libc::kill(pid, sig) };
        }
        if let Some(status) = reap(Some(pid)) {
            break exit_code(status);
        }
    };
    finish(mounted);
    Ok(code)
}

fn announce(options: &Options) {
    eprintln!(
        "faultfs: mounted {} over {} (control socket {})",
        options.mount.display(),
        options.backing.display(),
        options.control.display()
    );
}

fn finish(mounted: crate::mount::Mounted) {
    let mountpoint = mounted.mountpoint().to_path_buf();
    match mounted.shutdown() {
        Ok(synced) if synced.files > 0 => eprintln!(
            "faultfs: unmounted {}; wrote through {} un-fsynced bytes in {} files",
            mountpoint.display(),
            synced.bytes,
            synced.files
        ),
        Ok(_) => eprintln!("faultfs: unmounted {}", mountpoint.display()),
        Err(e) => eprintln!(
            "faultfs: unmounted {}, but writing cached data through failed: {e}",
            mountpoint.display()
        ),
    }
}

/// Reaps every exited child; returns the wait status of `pid` if it was among them.
fn reap(pid: Option<libc::pid_t>) -> Option<libc::c_int> {
    let mut found = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let got = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if got <= 0 {
            return found;
        }
        if Some(got) == pid {
            found = Some(status);
        }
    }
}

fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}
