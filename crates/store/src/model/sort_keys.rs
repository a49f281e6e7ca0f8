//! The keys SORT and THREAD compare (RFC 5256, RFC 5957), read from what was
//! parsed at delivery ([`SearchFields::sort`]).
//!
//! Rows stored before casella kept these keys lack them. They are filled in
//! on first use: the message's header block (not its body) is parsed once,
//! the keys are written back to the row, and every later SORT or THREAD reads
//! them like any other. No migration walks the whole store at upgrade, and no
//! read path parses a message twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::SearchFields;
use crate::error::StoreResult;
use crate::model::backend::{MailBackend, job};
use crate::parsed_cache::with_cache;
use crate::types::BlobId;

/// Rows stored before the keys existed, parsed and written back per round.
const BACKFILL_BATCH: usize = 256;

/// See [`crate::MailStore::sort_fields`].
pub(crate) async fn sort_fields<B: MailBackend>(
    backend: &B,
    blobs: &[BlobId],
) -> StoreResult<Vec<Option<Arc<SearchFields>>>> {
    let mut fields = with_cache(&backend.caches().header_fields, blobs, |missing| {
        MailBackend::search_fields(backend, missing, false)
    })
    .await?;
    let stale: Vec<usize> = (0..fields.len())
        .filter(|&i| fields[i].as_ref().is_some_and(|f| f.sort.is_none()))
        .collect();
    let mut filled = 0;
    for chunk in stale.chunks(BACKFILL_BATCH) {
        let wanted: Vec<BlobId> = chunk.iter().map(|&i| blobs[i].clone()).collect();
        let headers = backend.blobs().get(wanted, true).await?;
        let mut rows: BTreeMap<BlobId, String> = BTreeMap::new();
        for (&i, header) in chunk.iter().zip(headers) {
            let Some(old) = fields[i].as_ref() else {
                continue;
            };
            let mut upgraded = SearchFields::clone(old);
            let readable = header.is_some();
            upgraded.sort = Some(
                header
                    .and_then(|h| casella_mime::parse(&h).search.sort)
                    .unwrap_or_default(),
            );
            let upgraded = Arc::new(upgraded);
            if readable {
                let (json, _) = crate::search_columns::to_columns(SearchFields::clone(&upgraded))?;
                rows.insert(blobs[i].clone(), json);
                backend
                    .caches()
                    .header_fields
                    .put(blobs[i].clone(), upgraded.clone());
            }
            fields[i] = Some(upgraded);
        }
        if rows.is_empty() {
            continue;
        }
        let rows: Vec<(BlobId, String)> = rows.into_iter().collect();
        let count = rows.len();
        let written = backend
            .transact(job(move |tx| {
                Box::pin(async move { tx.set_search_fields(&rows).await })
            }))
            .await;
        match written {
            Ok(()) => filled += count,
            // The answer is right either way; the next use tries again.
            Err(e) => tracing::warn!(error = %e, "sort keys could not be written back"),
        }
    }
    if filled > 0 {
        tracing::info!(
            count = filled,
            "sort keys filled in for messages stored before casella kept them"
        );
    }
    Ok(fields)
}
