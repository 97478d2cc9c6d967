//! Snapshot files: versioned, checksummed, written atomically.
//!
//! Layout: `RXSNAP\r\n` magic, kind (u8 length + UTF-8), format version (u32 LE), payload length
//! (u64 LE), payload, then the XXH3-64 of everything before it (u64 LE). A file is written to a
//! temporary sibling, fsynced, renamed over the target and the directory fsynced, so a crash leaves
//! either the old snapshot or the new one, never a mix. Reading checks magic, kind, version, length
//! and checksum before the payload is decoded: a truncated or corrupt file is an error naming the
//! file, never a partial load.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64;

use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"RXSNAP\r\n";

fn err(path: &Path, message: impl Into<String>) -> Error {
    Error::Snapshot { file: path.display().to_string(), message: message.into() }
}

/// Serialises `value` and writes it to `path` atomically (write, fsync, rename, fsync dir).
pub fn write<T: Serialize>(path: &Path, kind: &str, version: u32, value: &T) -> Result<u64> {
    let payload = postcard::to_stdvec(value).map_err(|e| err(path, format!("cannot encode: {e}")))?;
    let mut buf = Vec::with_capacity(payload.len() + 64);
    buf.extend_from_slice(MAGIC);
    buf.push(kind.len() as u8);
    buf.extend_from_slice(kind.as_bytes());
    buf.extend_from_slice(&version.to_le_bytes());
    buf.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    buf.extend_from_slice(&payload);
    let sum = xxh3_64(&buf);
    buf.extend_from_slice(&sum.to_le_bytes());

    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| err(dir, format!("cannot create directory: {e}")))?;
    let name = path.file_name().ok_or_else(|| err(path, "not a file path"))?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // The rename itself is durable only once the directory entry is.
        File::open(dir)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(err(path, format!("cannot write: {e}")));
    }
    Ok(buf.len() as u64)
}

/// Reads and verifies a snapshot written by [`write`] with the same `kind` and `version`.
pub fn read<T: DeserializeOwned>(path: &Path, kind: &str, version: u32) -> Result<T> {
    let buf = fs::read(path).map_err(|e| err(path, format!("cannot read: {e}")))?;
    let payload = verify(path, &buf, kind, version)?;
    postcard::from_bytes(payload).map_err(|e| err(path, format!("corrupt payload: {e}")))
}

fn verify<'a>(path: &Path, buf: &'a [u8], kind: &str, version: u32) -> Result<&'a [u8]> {
    if buf.len() < MAGIC.len() + 1 || &buf[..MAGIC.len()] != MAGIC {
        return Err(err(path, "not a routerx snapshot (bad magic)"));
    }
    let k_len = buf[MAGIC.len()] as usize;
    let head = MAGIC.len() + 1 + k_len + 4 + 8;
    if buf.len() < head + 8 {
        return Err(err(path, "truncated (header incomplete)"));
    }
    let k = &buf[MAGIC.len() + 1..MAGIC.len() + 1 + k_len];
    if k != kind.as_bytes() {
        return Err(err(path, format!("holds {:?}, not {kind:?}", String::from_utf8_lossy(k))));
    }
    let at = MAGIC.len() + 1 + k_len;
    let v = u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
    if v != version {
        return Err(err(path, format!("format version {v}, this build reads version {version}")));
    }
    let len = u64::from_le_bytes(buf[at + 4..at + 12].try_into().expect("8 bytes"));
    if buf.len() as u64 != head as u64 + len + 8 {
        return Err(err(path, format!("truncated or padded: {} bytes, header says {}", buf.len(), head as u64 + len + 8)));
    }
    let body_end = buf.len() - 8;
    let sum = u64::from_le_bytes(buf[body_end..].try_into().expect("8 bytes"));
    if xxh3_64(&buf[..body_end]) != sum {
        return Err(err(path, "checksum mismatch (corrupt)"));
    }
    Ok(&buf[head..body_end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("routerx-snap-{}-{name}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        d.join("s.bin")
    }

    #[test]
    fn round_trip_and_every_corruption_is_named() {
        let p = tmp("rt");
        let value: Vec<(u64, String)> = (0..1000).map(|i| (i, format!("answer {i}"))).collect();
        write(&p, "test", 3, &value).unwrap();
        assert_eq!(read::<Vec<(u64, String)>>(&p, "test", 3).unwrap(), value);
        let good = fs::read(&p).unwrap();

        let expect_err = |bytes: &[u8], kind: &str, version: u32, needle: &str| {
            fs::write(&p, bytes).unwrap();
            let e = read::<Vec<(u64, String)>>(&p, kind, version).unwrap_err();
            let s = e.to_string();
            assert!(s.contains("s.bin") && s.contains(needle), "{s}");
            assert!(matches!(e, Error::Snapshot { .. }));
        };
        expect_err(&good[..good.len() / 2], "test", 3, "truncated");
        expect_err(&good[..5], "test", 3, "bad magic");
        expect_err(b"", "test", 3, "bad magic");
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 0x40;
        expect_err(&flipped, "test", 3, "checksum");
        expect_err(&good, "other", 3, "not \"other\"");
        expect_err(&good, "test", 4, "version 3");
        let mut padded = good.clone();
        padded.push(0);
        expect_err(&padded, "test", 3, "truncated or padded");
        let missing = p.with_file_name("absent.bin");
        assert!(read::<u8>(&missing, "test", 3).unwrap_err().to_string().contains("absent.bin"));
        fs::remove_dir_all(p.parent().unwrap()).ok();
    }

    #[test]
    fn overwrite_is_atomic_and_leaves_no_temp_files() {
        let p = tmp("atomic");
        write(&p, "test", 1, &vec![1u8; 10]).unwrap();
        write(&p, "test", 1, &vec![2u8; 20]).unwrap();
        assert_eq!(read::<Vec<u8>>(&p, "test", 1).unwrap(), vec![2u8; 20]);
        let names: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        fs::remove_dir_all(p.parent().unwrap()).ok();
    }
}
