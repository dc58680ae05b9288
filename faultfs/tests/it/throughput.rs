//! One measurement, printed: 4 KiB write + fdatasync per op, through faultfs and directly on the
//! backing directory. Run `cargo test -p faultfs --release --test it throughput -- --nocapture`
//! to see the numbers (the example `fsync_bench` runs longer).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use crate::support::Fs;

fn ops_per_sec(path: &Path, ops: usize) -> f64 {
    let f = File::create(path).unwrap();
    let block = [0x5Au8; 4096];
    let t0 = Instant::now();
    for i in 0..ops {
        f.write_all_at(&block, (i * 4096) as u64).unwrap();
        f.sync_data().unwrap();
    }
    ops as f64 / t0.elapsed().as_secs_f64()
}

#[test]
fn throughput_of_small_write_and_fdatasync() {
    let Some(fs) = Fs::start("throughput_of_small_write_and_fdatasync") else {
        return;
    };
    let ops = 300;
    let direct = ops_per_sec(&fs.b("direct"), ops);
    let through = ops_per_sec(&fs.m("through"), ops);
    println!(
        "4 KiB pwrite + fdatasync, {ops} ops: direct {direct:.0} ops/s, through faultfs {through:.0} ops/s ({:.0}%)",
        100.0 * through / direct
    );
    assert_eq!(
        std::fs::metadata(fs.b("through")).unwrap().len(),
        (ops * 4096) as u64
    );
}
