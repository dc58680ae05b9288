//! Integration tests of the harness. One binary, one module per area.
//!
//! The Docker tests need a running engine (CI has one). They build the images when missing
//! (debootstrap, about a minute the first time) and leave nothing behind, also when they fail.

mod bugs;
mod docker;
mod engines;
mod etcd;
mod galera;
mod member;
mod nats;
mod nemesis;
mod report;
mod run;
mod sign;
mod targets;
mod tls;
mod txn;
mod util;
