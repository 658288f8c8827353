//! paperspace: see src/providers/mod.rs (being written).
