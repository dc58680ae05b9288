//! Integration tests: a real faultfs mounted in a temp dir (skipped, with the reason printed, where
//! /dev/fuse cannot be opened or mounting is refused). One test binary, one module per area.

mod cli;
mod durability;
mod stall;
mod support;
mod throughput;
