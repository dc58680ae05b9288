//! Faultline, the harness. (Being written.)
