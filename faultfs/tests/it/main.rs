//! Integration tests: a real faultfs mounted in a temp dir (skipped, with the reason printed, where
//! /dev/fuse cannot be opened or mounting is refused), and `faultfs corrupt` on plain files. One
//! test binary, one module per area.

mod cli;
mod corrupt;
mod durability;
mod stall;
mod support;
mod throughput;
