//! The bundles a transform keeps in `data_dir/transforms/<id>/models/`: `current.tar` (what
//! serves), `previous.tar` (what served before; the rollback target) and `rolled_back` (the
//! identities of bundles rolled back from, which updates do not take again).

use std::io::Write;
use std::path::{Path, PathBuf};

use flowtag_plugin::bundle::sha256_hex;
use flowtag_plugin::Bundle;

pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("data_dir: cannot create {}: {e}", dir.display()))?;
        Ok(Store { dir: dir.to_path_buf() })
    }

    fn read(&self, name: &str) -> Result<Option<Bundle>, String> {
        let p = self.dir.join(name);
        match std::fs::read(&p) {
            Ok(bytes) => Bundle::from_tar(&bytes).map(Some).map_err(|e| format!("{}: {e}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", p.display())),
        }
    }

    pub fn current(&self) -> Result<Option<Bundle>, String> {
        self.read("current.tar")
    }

    pub fn previous(&self) -> Result<Option<Bundle>, String> {
        self.read("previous.tar")
    }

    pub fn current_identity(&self) -> Option<String> {
        self.current().ok().flatten().map(|b| sha256_hex(&b.manifest_bytes))
    }

    /// `bundle` becomes current; the current one becomes previous. Each file is written whole
    /// under a temporary name and renamed, so a crash leaves either the old or the new state.
    pub fn promote(&self, bundle: &Bundle) -> Result<(), String> {
        let tmp = self.write_tmp(&bundle.to_tar())?;
        let (cur, prev) = (self.dir.join("current.tar"), self.dir.join("previous.tar"));
        if cur.exists() {
            std::fs::rename(&cur, &prev).map_err(|e| format!("{}: {e}", prev.display()))?;
        }
        std::fs::rename(&tmp, &cur).map_err(|e| format!("{}: {e}", cur.display()))
    }

    /// Previous and current change places; `from` (the identity of the current bundle) is
    /// remembered as rolled back from.
    pub fn swap(&self, from: &str) -> Result<(), String> {
        let (cur, prev, tmp) = (self.dir.join("current.tar"), self.dir.join("previous.tar"), self.dir.join("swap.tmp"));
        let io = |e: std::io::Error| format!("{}: {e}", self.dir.display());
        std::fs::rename(&cur, &tmp).map_err(io)?;
        std::fs::rename(&prev, &cur).map_err(io)?;
        std::fs::rename(&tmp, &prev).map_err(io)?;
        let mut list = self.rolled_back();
        if !list.iter().any(|x| x == from) {
            list.push(from.to_string());
        }
        let path = self.dir.join("rolled_back");
        std::fs::write(&path, list.join("\n") + "\n").map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn rolled_back(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("rolled_back"))
            .map(|s| s.lines().filter(|l| !l.is_empty()).map(str::to_string).collect())
            .unwrap_or_default()
    }

    fn write_tmp(&self, data: &[u8]) -> Result<PathBuf, String> {
        let tmp = self.dir.join("incoming.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        f.write_all(data).and_then(|_| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
        Ok(tmp)
    }
}
