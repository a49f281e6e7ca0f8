//! What was parsed at delivery for the messages asked for lately, kept in
//! memory: the structures FETCH reads and the header fields SEARCH reads.
//!
//! What was parsed from a blob (ENVELOPE, BODYSTRUCTURE, part offsets, decoded
//! headers) never changes — blobs are content-addressed — so a cached copy is
//! never stale, and clients ask for the same messages again and again (every
//! resync of a folder view, every search of it). A hit costs a hash lookup
//! instead of a trip to the blocking pool, a database read and a JSON parse.
//!
//! Bounded by count with two generations: lookups hit the current one or move
//! an entry up from the previous one; when the current one is full it becomes
//! the previous one, and what was only in the old previous one is dropped. So
//! at most twice `GENERATION` entries are held, and what was used since the
//! last turn survives it (close to least-recently-used, in O(1)).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::types::BlobId;

/// Entries per generation. A structure is typically 1–3 KB in memory, header
/// fields less, so a cache stays within tens of MiB.
const GENERATION: usize = 10_000;

struct Generations<T: ?Sized> {
    current: HashMap<BlobId, Arc<T>>,
    previous: HashMap<BlobId, Arc<T>>,
}

pub(crate) struct ParsedCache<T: ?Sized> {
    inner: Mutex<Generations<T>>,
}

impl<T: ?Sized> Default for ParsedCache<T> {
    fn default() -> Self {
        ParsedCache {
            inner: Mutex::new(Generations {
                current: HashMap::new(),
                previous: HashMap::new(),
            }),
        }
    }
}

impl<T: ?Sized> ParsedCache<T> {
    /// The cached values of `blobs` (same order), `None` where not cached.
    pub(crate) fn get_many(&self, blobs: &[BlobId]) -> Vec<Option<Arc<T>>> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        blobs
            .iter()
            .map(|b| {
                if let Some(s) = g.current.get(b) {
                    return Some(s.clone());
                }
                let s = g.previous.remove(b)?;
                g.insert(b.clone(), s.clone());
                Some(s)
            })
            .collect()
    }

    pub(crate) fn put(&self, blob: BlobId, value: Arc<T>) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(blob, value);
    }
}

impl<T: ?Sized> Generations<T> {
    fn insert(&mut self, blob: BlobId, value: Arc<T>) {
        if self.current.len() >= GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(blob, value);
    }
}

/// The values of `blobs` (same order): what the cache has, and the rest from
/// `load`, which is given the missing blobs and answers in their order (and is
/// cached). Nothing is loaded when everything was cached.
pub(crate) async fn with_cache<T, U, F, Fut>(
    cache: &ParsedCache<T>,
    blobs: &[BlobId],
    load: F,
) -> crate::StoreResult<Vec<Option<Arc<T>>>>
where
    T: ?Sized,
    U: Into<Arc<T>>,
    F: FnOnce(Vec<BlobId>) -> Fut,
    Fut: std::future::Future<Output = crate::StoreResult<Vec<Option<U>>>>,
{
    let mut out = cache.get_many(blobs);
    let missing: Vec<BlobId> = blobs
        .iter()
        .zip(&out)
        .filter(|(_, s)| s.is_none())
        .map(|(b, _)| b.clone())
        .collect();
    if missing.is_empty() {
        return Ok(out);
    }
    let mut loaded = load(missing.clone()).await?.into_iter();
    for (slot, blob) in out.iter_mut().filter(|s| s.is_none()).zip(missing) {
        if let Some(Some(s)) = loaded.next() {
            let s: Arc<T> = s.into();
            cache.put(blob, s.clone());
            *slot = Some(s);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use casella_mime::MessageStructure;

    type StructureCache = ParsedCache<MessageStructure>;

    fn structure(subject: &str) -> MessageStructure {
        let raw = format!("Subject: {subject}\r\n\r\nbody\r\n");
        casella_mime::parse(raw.as_bytes()).split().0
    }

    #[test]
    fn keeps_recent_entries_and_stays_bounded() {
        let cache = StructureCache::default();
        let s = Arc::new(structure("x"));
        let first = BlobId("first".into());
        cache.put(first.clone(), s.clone());
        for i in 0..(GENERATION * 3) {
            // Used again now and then: survives every turn.
            if i % (GENERATION / 2) == 0 {
                assert!(cache.get_many(std::slice::from_ref(&first))[0].is_some());
            }
            cache.put(BlobId(format!("b{i}")), s.clone());
        }
        let g = cache.inner.lock().unwrap();
        assert!(g.current.len() + g.previous.len() <= 2 * GENERATION);
        drop(g);
        assert!(cache.get_many(&[BlobId("b0".into())])[0].is_none());
        assert!(cache.get_many(std::slice::from_ref(&first))[0].is_some());
    }

    #[tokio::test]
    async fn loads_only_what_is_missing_in_order() {
        let cache = StructureCache::default();
        let a = BlobId("a".into());
        let b = BlobId("b".into());
        let c = BlobId("c".into());
        cache.put(b.clone(), Arc::new(structure("B")));
        let got = with_cache(
            &cache,
            &[a.clone(), b.clone(), c.clone()],
            |missing| async move {
                assert_eq!(missing, vec![BlobId("a".into()), BlobId("c".into())]);
                Ok(vec![Some(structure("A")), None])
            },
        )
        .await
        .unwrap();
        let subjects: Vec<_> = got
            .iter()
            .map(|s| s.as_ref().and_then(|s| s.envelope.subject.clone()))
            .collect();
        assert_eq!(
            subjects,
            vec![Some("A".to_string()), Some("B".to_string()), None]
        );
        // Now all cached but the gone one; nothing loaded for cached blobs.
        let never = |_| async { panic!("loaded again") };
        let got = with_cache::<_, MessageStructure, _, _>(&cache, &[a, b], never)
            .await
            .unwrap();
        assert!(got.iter().all(|s| s.is_some()));
    }
}
