//! The sans-IO Raft core. (Being written; see issue 3.)
