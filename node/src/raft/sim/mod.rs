//! Seeded deterministic simulation (written below).
