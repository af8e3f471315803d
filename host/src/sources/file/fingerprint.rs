//! Which file is which: a file is its device and inode, plus a hash of its first bytes, so an
//! inode reused by a new file after a deletion is not mistaken for the old one, and a file
//! truncated and written again (copytruncate) is noticed even when it has grown past where it
//! was read to. The hashes read with `pread`, so a reader's position does not move.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::checkpoint::{fnv1a, PREFIX_BYTES};

/// Hash of the file's first bytes (up to [`PREFIX_BYTES`]) and how many there were.
pub fn prefix_of(file: &File) -> (u64, u64) {
    let mut buf = vec![0u8; PREFIX_BYTES];
    let n = read_full(file, &mut buf);
    (fnv1a(&buf[..n]), n as u64)
}

/// Hash of the file's first `len` bytes (fewer if it is shorter).
pub fn prefix_hash(file: &File, len: u64) -> u64 {
    let mut buf = vec![0u8; len as usize];
    let n = read_full(file, &mut buf);
    fnv1a(&buf[..n])
}

/// Whether the file still starts with the bytes `prefix` (hash, length) was taken from.
pub fn same_start(file: &File, prefix: (u64, u64)) -> bool {
    prefix.1 == 0 || prefix_hash(file, prefix.1) == prefix.0
}

/// Read from the start of the file into `buf`, as far as the file goes.
fn read_full(file: &File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_same_first_bytes_give_the_same_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"line one\nline two\n").unwrap();
        let f = File::open(&path).unwrap();
        let (hash, len) = prefix_of(&f);
        assert_eq!(len, 18);
        assert_eq!(prefix_hash(&f, len), hash);
        assert_ne!(prefix_hash(&f, 9), hash);
        // Appending does not change the start; rewriting it does, even to a longer file.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"three\n").unwrap();
        assert!(same_start(&f, (hash, len)));
        std::fs::write(&path, b"another line\nand a longer file than before\n").unwrap();
        assert!(!same_start(&f, (hash, len)));
    }
}
