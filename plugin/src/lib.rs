//! flowtag's tag filter.
pub mod forest;
