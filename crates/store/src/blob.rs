//! Message bytes: the [`BlobStore`] trait every backend provides, and
//! [`BlobDir`], content-addressed files in the data directory
//! (`blobs/ab/cd/<sha256>`), the default home of large messages.
//!
//! For files:
//! A blob is written once (temp file, fsync, rename, fsync of the directory) before
//! the metadata that refers to it is committed, so a committed message always has
//! its bytes. Blobs are immutable; identical messages share one file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use async_trait::async_trait;

use crate::error::{StoreError, StoreResult};
use crate::types::BlobId;

/// Where message bytes live, content-addressed by SHA-256 ([`BlobDir::id_of`]).
///
/// Invariants: `put` returns only when the bytes are durable, and the model
/// calls it before the transaction that names the blob commits; bytes are
/// immutable; bytes no message refers to are removed by the backend's
/// garbage collection (which decides, under its own lock, that nothing names
/// them), never by a reader. An S3-compatible store fits behind this trait.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// The largest message kept (larger ones are refused as `TooBig`).
    fn max_size(&self) -> usize;
    /// Whether the bytes of a message of `size` octets travel inside the
    /// metadata transaction (`MailTx::add_blobs`) rather than through `put`.
    fn inline(&self, size: usize) -> bool;
    /// Stores `raw` durably under `id` (nothing to do when it is there).
    async fn put(&self, id: &BlobId, raw: &[u8]) -> StoreResult<()>;
    /// Several blobs' bytes — with `header_only`, their header blocks (see
    /// `casella_mime::header_len`) — in order; `None` for one that is gone.
    async fn get(&self, ids: Vec<BlobId>, header_only: bool) -> StoreResult<Vec<Option<Vec<u8>>>>;
    /// Part of a blob: `len` octets from `offset` (fewer at its end).
    async fn get_range(&self, id: &BlobId, offset: u64, len: u64) -> StoreResult<Option<Vec<u8>>> {
        let whole = self.get(vec![id.clone()], false).await?.pop().flatten();
        Ok(whole.map(|raw| {
            let start = (offset.min(raw.len() as u64)) as usize;
            let end = (offset.saturating_add(len).min(raw.len() as u64)) as usize;
            raw[start..end].to_vec()
        }))
    }
}

#[derive(Debug, Clone)]
pub struct BlobDir {
    root: PathBuf,
}

impl BlobDir {
    pub fn open(root: impl Into<PathBuf>) -> StoreResult<BlobDir> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(BlobDir { root })
    }

    pub fn id_of(bytes: &[u8]) -> BlobId {
        BlobId(hex::encode(Sha256::digest(bytes)))
    }

    fn path_of(&self, id: &BlobId) -> StoreResult<PathBuf> {
        let h = &id.0;
        if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::Invalid(format!("bad blob id {h}")));
        }
        Ok(self.root.join(&h[0..2]).join(&h[2..4]).join(h))
    }

    pub fn exists(&self, id: &BlobId) -> StoreResult<bool> {
        Ok(self.path_of(id)?.exists())
    }

    /// Writes `bytes` durably unless a blob with the same content exists.
    pub fn put(&self, bytes: &[u8]) -> StoreResult<BlobId> {
        let id = Self::id_of(bytes);
        self.put_as(&id, bytes)?;
        Ok(id)
    }

    /// Writes `bytes` durably as `id`, which the caller computed with
    /// [`BlobDir::id_of`] (not hashed again), unless it is there.
    pub fn put_as(&self, id: &BlobId, bytes: &[u8]) -> StoreResult<()> {
        let path = self.path_of(id)?;
        if path.exists() {
            return Ok(());
        }
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| StoreError::from(e.error))?;
        sync_dir(&dir)
    }

    pub fn get(&self, id: &BlobId) -> StoreResult<Vec<u8>> {
        let path = self.path_of(id)?;
        fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::Internal(format!("blob {id} is missing"))
            } else {
                e.into()
            }
        })
    }

    /// The blob's header block (see `casella_mime::header_len`), reading only
    /// the start of the file when the header ends there.
    pub fn get_header(&self, id: &BlobId) -> StoreResult<Vec<u8>> {
        use std::io::Read;
        const FIRST_READ: u64 = 8192;
        let path = self.path_of(id)?;
        let mut file = fs::File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::Internal(format!("blob {id} is missing"))
            } else {
                e.into()
            }
        })?;
        let mut buf = Vec::with_capacity(FIRST_READ as usize);
        (&mut file).take(FIRST_READ).read_to_end(&mut buf)?;
        let len = casella_mime::header_len(&buf);
        if len < buf.len() {
            buf.truncate(len);
            return Ok(buf);
        }
        // The header goes on (or ends exactly here): read the rest.
        file.read_to_end(&mut buf)?;
        buf.truncate(casella_mime::header_len(&buf));
        Ok(buf)
    }

    /// `len` octets from `offset` (fewer at the end); `None` when missing.
    pub fn get_range(&self, id: &BlobId, offset: u64, len: u64) -> StoreResult<Option<Vec<u8>>> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.path_of(id)?;
        let mut file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        file.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::new();
        file.take(len).read_to_end(&mut buf)?;
        Ok(Some(buf))
    }

    pub fn remove(&self, id: &BlobId) -> StoreResult<()> {
        let path = self.path_of(id)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Files only: the building block of the embedded store's blob store, and a
/// store of its own for a backend that keeps no bytes in its database.
#[async_trait]
impl BlobStore for BlobDir {
    fn max_size(&self) -> usize {
        u32::MAX as usize
    }

    fn inline(&self, _size: usize) -> bool {
        false
    }

    async fn put(&self, id: &BlobId, raw: &[u8]) -> StoreResult<()> {
        let files = self.clone();
        let raw = raw.to_vec();
        let id = id.clone();
        let stored = tokio::task::spawn_blocking(move || files.put(&raw))
            .await
            .map_err(StoreError::internal)??;
        if stored != id {
            return Err(StoreError::Invalid(format!(
                "blob {id} does not match its bytes"
            )));
        }
        Ok(())
    }

    async fn get(&self, ids: Vec<BlobId>, header_only: bool) -> StoreResult<Vec<Option<Vec<u8>>>> {
        let files = self.clone();
        tokio::task::spawn_blocking(move || {
            ids.iter()
                .map(|id| {
                    if header_only {
                        files.get_header(id).ok()
                    } else {
                        files.get(id).ok()
                    }
                })
                .collect()
        })
        .await
        .map_err(StoreError::internal)
    }

    async fn get_range(&self, id: &BlobId, offset: u64, len: u64) -> StoreResult<Option<Vec<u8>>> {
        let files = self.clone();
        let id = id.clone();
        tokio::task::spawn_blocking(move || files.get_range(&id, offset, len))
            .await
            .map_err(StoreError::internal)?
    }
}

/// Makes a rename or create in `dir` durable.
pub fn sync_dir(dir: &Path) -> StoreResult<()> {
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_read_whatever_its_length() {
        let tmp = tempfile::tempdir().unwrap();
        let blobs = BlobDir::open(tmp.path()).unwrap();
        // Short, longer than the first read, ending right at its end, no body.
        let long = format!("X-Long: {}\r\n", "a".repeat(20_000));
        let edge = format!("X-Edge: {}\r\n\r\n", "b".repeat(8192 - 12));
        assert_eq!(edge.len(), 8192);
        for (header, body) in [
            ("Subject: hi\r\n\r\n".to_string(), "body\r\n"),
            (format!("{long}\r\n"), "body\r\n"),
            (edge, "after the edge\r\n"),
            ("Subject: only a header\r\n".to_string(), ""),
        ] {
            let id = blobs.put(format!("{header}{body}").as_bytes()).unwrap();
            assert_eq!(blobs.get_header(&id).unwrap(), header.as_bytes());
        }
    }

    #[test]
    fn put_is_idempotent_and_content_addressed() {
        let tmp = tempfile::tempdir().unwrap();
        let blobs = BlobDir::open(tmp.path()).unwrap();
        let a = blobs.put(b"hello").unwrap();
        let b = blobs.put(b"hello").unwrap();
        assert_eq!(a, b);
        assert_eq!(blobs.get(&a).unwrap(), b"hello");
        assert_ne!(blobs.put(b"other").unwrap(), a);
        blobs.remove(&a).unwrap();
        assert!(!blobs.exists(&a).unwrap());
    }

    #[tokio::test]
    async fn ranges_and_the_trait_read_what_was_put() {
        let tmp = tempfile::tempdir().unwrap();
        let files = BlobDir::open(tmp.path()).unwrap();
        let store: &dyn BlobStore = &files;
        let raw = b"Subject: r\r\n\r\n0123456789".to_vec();
        let id = BlobDir::id_of(&raw);
        store.put(&id, &raw).await.unwrap();
        assert_eq!(store.get_range(&id, 14, 4).await.unwrap().unwrap(), b"0123");
        assert_eq!(store.get_range(&id, 22, 100).await.unwrap().unwrap(), b"89");
        let got = store
            .get(vec![id.clone(), BlobDir::id_of(b"none")], true)
            .await
            .unwrap();
        assert_eq!(got[0].as_deref(), Some(&b"Subject: r\r\n\r\n"[..]));
        assert!(got[1].is_none());
    }

    #[test]
    fn rejects_ids_that_would_escape_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let blobs = BlobDir::open(tmp.path()).unwrap();
        assert!(blobs.get(&BlobId("../../etc/passwd".into())).is_err());
    }
}
