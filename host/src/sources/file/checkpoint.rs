//! Where each file was read up to, per sink, kept in `data_dir/<source>/checkpoints.json`.
//!
//! A file is known by its device and inode, and by a hash of its first bytes, so a new file that
//! reuses a deleted file's inode is not mistaken for it. For each file the checkpoint holds the
//! offset every sink has confirmed (reading resumes there) and each sink's own offset (a sink
//! skips, after a restart, what it had confirmed before). The document is rewritten whenever an
//! offset moves (a temporary file renamed over the old one, so a crash leaves the old or the
//! new document, never half of one) and flushed to disk at most once a second.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Identity of a file across renames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FileKey {
    pub dev: u64,
    pub inode: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    pub path: PathBuf,
    /// FNV-1a hash of the first [`PREFIX_BYTES`] bytes (or fewer, with `prefix_len`).
    pub prefix: u64,
    pub prefix_len: u64,
    /// Every sink has confirmed everything before this offset.
    pub offset: u64,
    /// Per sink id: that sink has confirmed everything before its offset.
    #[serde(default)]
    pub sinks: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Document {
    version: u32,
    files: Vec<(FileKey, FileCheckpoint)>,
}

/// How many leading bytes identify a file's content.
pub const PREFIX_BYTES: usize = 256;

pub fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

pub struct Checkpoints {
    path: PathBuf,
    files: BTreeMap<FileKey, FileCheckpoint>,
    dirty_since_sync: bool,
    last_sync: Instant,
}

impl Checkpoints {
    /// Load `dir/checkpoints.json` (a missing file is an empty set; a corrupt one is reported and
    /// set aside as `checkpoints.json.corrupt`, and reading starts over per `read_from`).
    pub fn load(dir: &Path) -> std::io::Result<Checkpoints> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("checkpoints.json");
        let files = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Document>(&bytes) {
                Ok(doc) => doc.files.into_iter().collect(),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "checkpoints are corrupt; set aside, starting over");
                    std::fs::rename(&path, path.with_extension("json.corrupt"))?;
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(Checkpoints { path, files, dirty_since_sync: false, last_sync: Instant::now() })
    }

    pub fn get(&self, key: &FileKey) -> Option<&FileCheckpoint> {
        self.files.get(key)
    }

    pub fn set(&mut self, key: FileKey, cp: FileCheckpoint) {
        self.files.insert(key, cp);
    }

    pub fn remove(&mut self, key: &FileKey) {
        self.files.remove(key);
    }

    /// Forget the checkpoints of files that are not `open` and no longer at their recorded
    /// path (deleted, or rotated away, perhaps while flowtag was down): over months of rotations
    /// they would pile up. How many were forgotten.
    pub fn prune(&mut self, open: impl Fn(&FileKey) -> bool) -> usize {
        let before = self.files.len();
        self.files.retain(|key, cp| open(key) || at_its_path(key, cp));
        before - self.files.len()
    }

    /// Write the document (atomically); flush it to disk if a second has passed since the last
    /// flush or `sync` is set.
    pub fn save(&mut self, sync: bool) -> std::io::Result<()> {
        let doc = Document { version: 1, files: self.files.iter().map(|(k, v)| (*k, v.clone())).collect() };
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(&doc).expect("checkpoints serialize"))?;
        self.dirty_since_sync = true;
        if sync || self.last_sync.elapsed() >= Duration::from_secs(1) {
            f.sync_data()?;
            self.dirty_since_sync = false;
            self.last_sync = Instant::now();
        }
        drop(f);
        std::fs::rename(&tmp, &self.path)
    }
}

/// Whether the file a checkpoint names is still the one at its recorded path.
fn at_its_path(key: &FileKey, cp: &FileCheckpoint) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(&cp.path).is_ok_and(|m| FileKey { dev: m.dev(), inode: m.ino() } == *key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_of_files_gone_from_their_path_are_pruned_unless_open() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let key_of = |p: &Path| {
            let m = std::fs::metadata(p).unwrap();
            FileKey { dev: m.dev(), inode: m.ino() }
        };
        let (live, rotated) = (dir.path().join("live.log"), dir.path().join("old.log"));
        std::fs::write(&live, "a\n").unwrap();
        std::fs::write(&rotated, "b\n").unwrap();
        let mut cps = Checkpoints::load(&dir.path().join("cp")).unwrap();
        let cp = |path: &Path| FileCheckpoint { path: path.to_path_buf(), ..FileCheckpoint::default() };
        let (k_live, k_rot) = (key_of(&live), key_of(&rotated));
        cps.set(k_live, cp(&live));
        // Rotated away: another name now, its recorded path gone.
        std::fs::rename(&rotated, dir.path().join("old.log.1")).unwrap();
        cps.set(k_rot, cp(&rotated));
        // Deleted while flowtag was down, but still open here: kept.
        let gone = FileKey { dev: k_live.dev, inode: u64::MAX };
        cps.set(gone, cp(&dir.path().join("deleted.log")));
        assert_eq!(cps.prune(|k| *k == gone), 1);
        assert!(cps.get(&k_live).is_some() && cps.get(&gone).is_some() && cps.get(&k_rot).is_none());
        assert_eq!(cps.prune(|_| false), 1, "no longer open, and not at its path");
        assert!(cps.get(&k_live).is_some());
    }

    #[test]
    fn round_trips_and_survives_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let mut cps = Checkpoints::load(dir.path()).unwrap();
        let key = FileKey { dev: 1, inode: 2 };
        let cp = FileCheckpoint {
            path: "/x".into(),
            prefix: 9,
            prefix_len: 3,
            offset: 42,
            sinks: [("a".to_string(), 50)].into(),
        };
        cps.set(key, cp.clone());
        cps.save(true).unwrap();
        assert_eq!(Checkpoints::load(dir.path()).unwrap().get(&key), Some(&cp));
        std::fs::write(dir.path().join("checkpoints.json"), b"{not json").unwrap();
        let cps = Checkpoints::load(dir.path()).unwrap();
        assert!(cps.get(&key).is_none());
        assert!(dir.path().join("checkpoints.json.corrupt").exists());
    }
}
