//! vastai fake server: see src/fakes/mod.rs (being written).
