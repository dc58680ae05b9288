//! Throughput of small synced writes through faultfs versus directly on the backing directory.
//!
//! ```text
//! cargo run -p faultfs --release --example fsync_bench -- [OPS] [DIR]
//! ```
//!
//! Mounts faultfs in-process over `DIR/backing` (default: a temp dir) and runs, on each side,
//! alternating sides for five rounds and reporting the median (the machine is shared):
//! - `append+fdatasync`: 4 KiB appended then `fdatasync`, per op (a WAL);
//! - `overwrite+fdatasync`: 4 KiB at a random page of a 16 MiB file then `fdatasync` (bbolt);
//! - `append, no sync`: 4 KiB appended, no sync (the cache's own cost).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let ops: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let tmp;
    let dir: PathBuf = match args.next() {
        Some(d) => d.into(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let options = faultfs::Options {
        backing: dir.join("backing"),
        mount: dir.join("mnt"),
        control: dir.join("ctl.sock"),
        direct_io: std::env::var_os("FAULTFS_DIRECT_IO").is_some(),
        threads: std::env::var("FAULTFS_THREADS")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(4),
    };
    let mounted = faultfs::mount(&options)?;
    println!(
        "{ops} ops of 4 KiB each, backing {}",
        options.backing.display()
    );
    type Bench = fn(&Path, usize) -> std::io::Result<Duration>;
    let benches: [(&str, Bench); 3] = [
        ("append+fdatasync", append_sync),
        ("overwrite+fdatasync", overwrite_sync),
        ("append, no sync", append_nosync),
    ];
    for (name, bench) in benches {
        let (mut direct, mut through) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            direct.push(rate(ops, bench(&options.backing.join("direct"), ops)?));
            through.push(rate(ops, bench(&options.mount.join("through"), ops)?));
            std::fs::remove_file(options.backing.join("direct"))?;
            std::fs::remove_file(options.mount.join("through"))?;
        }
        let (direct, through) = (median(direct), median(through));
        println!(
            "{name:<22} direct {direct:>8.0} ops/s   faultfs {through:>8.0} ops/s   ({:>3.0}%)",
            100.0 * through / direct
        );
    }
    mounted.shutdown()?;
    Ok(())
}

fn rate(ops: usize, d: Duration) -> f64 {
    ops as f64 / d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

const BLOCK: [u8; 4096] = [0x5A; 4096];

fn append_sync(path: &Path, ops: usize) -> std::io::Result<Duration> {
    let f = File::create(path)?;
    let t0 = Instant::now();
    for i in 0..ops {
        f.write_all_at(&BLOCK, (i * 4096) as u64)?;
        f.sync_data()?;
    }
    Ok(t0.elapsed())
}

fn overwrite_sync(path: &Path, ops: usize) -> std::io::Result<Duration> {
    let f = File::create(path)?;
    f.set_len(16 << 20)?;
    f.sync_all()?;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let t0 = Instant::now();
    for _ in 0..ops {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        f.write_all_at(&BLOCK, (x % 4096) * 4096)?;
        f.sync_data()?;
    }
    Ok(t0.elapsed())
}

fn append_nosync(path: &Path, ops: usize) -> std::io::Result<Duration> {
    let f = File::create(path)?;
    let t0 = Instant::now();
    for i in 0..ops {
        f.write_all_at(&BLOCK, (i * 4096) as u64)?;
    }
    Ok(t0.elapsed())
}
