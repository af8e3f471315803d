//! Which file is which: a file is its device and inode, plus a hash of its first bytes, so an
//! inode reused by a new file after a deletion is not mistaken for the old one.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use super::checkpoint::{fnv1a, PREFIX_BYTES};

/// Hash of the file's first bytes (up to [`PREFIX_BYTES`]) and how many there were.
pub fn prefix_of(file: &mut File) -> (u64, u64) {
    let mut buf = vec![0u8; PREFIX_BYTES];
    let _ = file.seek(SeekFrom::Start(0));
    let n = read_full(file, &mut buf);
    (fnv1a(&buf[..n]), n as u64)
}

/// Hash of the file's first `len` bytes (fewer if it is shorter).
pub fn prefix_hash(file: &mut File, len: u64) -> u64 {
    let mut buf = vec![0u8; len as usize];
    let _ = file.seek(SeekFrom::Start(0));
    let n = read_full(file, &mut buf);
    fnv1a(&buf[..n])
}

fn read_full(file: &mut File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
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
        let mut f = File::open(&path).unwrap();
        let (hash, len) = prefix_of(&mut f);
        assert_eq!(len, 18);
        assert_eq!(prefix_hash(&mut f, len), hash);
        assert_ne!(prefix_hash(&mut f, 9), hash);
        // Appending does not change the hash of the first `len` bytes.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"three\n").unwrap();
        assert_eq!(prefix_hash(&mut File::open(&path).unwrap(), len), hash);
    }
}
