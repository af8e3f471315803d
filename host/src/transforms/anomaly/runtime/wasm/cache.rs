//! The compiled-module cache. Compiling the 15–20 MB module with Cranelift takes seconds to
//! tens of seconds, so the compiled code is cached in `data_dir/wasm-cache/`, keyed by the
//! module's sha256, the wasmtime version and the engine's compatibility hash (target and CPU features). A cache entry carries the
//! length and CRC-32 of its own bytes; a corrupt, truncated or stale entry is ignored and
//! rebuilt. Entries are mapped, not read, on start.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::OnceLock;

use wasmtime::{Engine, Module};

use super::{engine, WASMTIME_VERSION};

/// Modules compiled in this process, by sha256: transforms that use the same module (and a
/// config reload) share one compilation.
pub(super) fn compiled_modules() -> &'static std::sync::Mutex<std::collections::HashMap<String, Module>> {
    static MODULES: OnceLock<std::sync::Mutex<std::collections::HashMap<String, Module>>> = OnceLock::new();
    MODULES.get_or_init(Default::default)
}

fn cache_key(sha256: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine().precompile_compatibility_hash().hash(&mut h);
    format!("{sha256}-wasmtime{WASMTIME_VERSION}-{:016x}", h.finish())
}

/// What a cache entry's `.check` file records about its `.cwasm`: length and CRC-32. The check
/// guards against corrupt and truncated files (a crash mid-write, a bad disk), not against
/// someone who can write `data_dir`, who could replace the module's inputs anyway; CRC-32 reads
/// the 50–60 MB of compiled code about ten times faster than SHA-256, and start time counts.
fn cache_check(bytes: &[u8]) -> String {
    format!("crc32 {:08x} length {}", crc32fast::hash(bytes), bytes.len())
}

/// The cached compiled module, if there is one that is whole and fits this engine. The code is
/// mapped, not read: pages are brought in as they run.
pub(super) fn cached_module(engine: &Engine, sha256: &str, dir: &Path) -> Option<Module> {
    let key = cache_key(sha256);
    let code = dir.join(format!("{key}.cwasm"));
    let want = std::fs::read_to_string(dir.join(format!("{key}.check"))).ok()?;
    let file = std::fs::File::open(&code).ok()?;
    // SAFETY: entries are written to a temporary file and renamed into place, never modified
    // in place, so the mapping sees one complete file for as long as it lives.
    let whole = unsafe { memmap2::Mmap::map(&file) }.ok().is_some_and(|map| cache_check(&map) == want.trim());
    if !whole {
        tracing::warn!(cache = %code.display(), "the cached compiled module is corrupt; compiling again");
        return None;
    }
    // SAFETY: the file is what `Module::serialize` wrote for this engine configuration (the key
    // pins the module, the wasmtime version and the compatibility hash), checked against the
    // length and CRC-32 recorded beside it when it was written; and, as above, cache files are
    // replaced by rename, never changed in place, which `deserialize_file` needs for the life of
    // the module.
    match unsafe { Module::deserialize_file(engine, &code) } {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(cache = %code.display(), error = %e, "the cached compiled module does not load; compiling again");
            None
        }
    }
}

pub(super) fn store_module(module: &Module, sha256: &str, dir: &Path) -> Result<(), String> {
    let bytes = module.serialize().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let key = cache_key(sha256);
    let write = |name: String, data: &[u8]| -> std::io::Result<()> {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, data)?;
        std::fs::rename(&tmp, dir.join(name))
    };
    // The check goes last: an entry without one is never used.
    write(format!("{key}.cwasm"), &bytes).map_err(|e| e.to_string())?;
    write(format!("{key}.check"), cache_check(&bytes).as_bytes()).map_err(|e| e.to_string())
}
