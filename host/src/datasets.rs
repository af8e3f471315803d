//! Where the real datasets are, for tests: `FLOWTAG_DATASETS`, else `../shared/datasets` next
//! to the repository.

use std::path::PathBuf;

pub fn root() -> PathBuf {
    std::env::var_os("FLOWTAG_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets"))
}
