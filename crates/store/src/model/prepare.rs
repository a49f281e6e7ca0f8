//! Readying a message for the store outside any transaction (the slow part):
//! line ends, the size limit, parsing once, hashing, and writing the bytes.

use crate::blob::{BlobDir, BlobStore};
use crate::error::{StoreError, StoreResult};
use crate::types::*;
use crate::{normalize_line_ends, now_unix};

/// A message ready to append: normalised, parsed and hashed.
#[derive(Debug)]
pub struct PreparedMessage {
    pub raw: Vec<u8>,
    pub size: u32,
    pub blob: BlobId,
    pub structure_json: String,
    pub search_json: String,
    pub search_text_json: String,
    pub internal_date: i64,
    pub flags: FlagSet,
}

/// Normalises line ends (the stored bytes are what POP3 and IMAP send) unless
/// the message is binary, refuses what is larger than `max_size` (`TooBig`),
/// parses and hashes.
pub fn prepare(message: NewMessage, max_size: usize) -> StoreResult<PreparedMessage> {
    let raw = if message.binary {
        message.raw
    } else {
        normalize_line_ends(message.raw)
    };
    let max_size = max_size.min(u32::MAX as usize);
    if raw.len() > max_size {
        return Err(StoreError::TooBig(format!(
            "messages are limited to {} MiB",
            max_size >> 20
        )));
    }
    let (structure, search) = casella_mime::parse(&raw).split();
    let (search_json, search_text_json) = crate::search_columns::to_columns(search)?;
    Ok(PreparedMessage {
        blob: BlobDir::id_of(&raw),
        structure_json: serde_json::to_string(&structure).map_err(StoreError::internal)?,
        search_json,
        search_text_json,
        size: raw.len() as u32,
        raw,
        internal_date: message.internal_date.unwrap_or_else(now_unix),
        flags: message.flags,
    })
}

/// Prepares messages on the blocking pool and writes the bytes that do not
/// travel with the metadata to the blob store, durably, before any
/// transaction names them.
pub async fn prepare_all(
    blobs: &dyn BlobStore,
    messages: Vec<NewMessage>,
) -> StoreResult<Vec<PreparedMessage>> {
    let max = blobs.max_size();
    let prepared = tokio::task::spawn_blocking(move || {
        messages
            .into_iter()
            .map(|m| prepare(m, max))
            .collect::<StoreResult<Vec<PreparedMessage>>>()
    })
    .await
    .map_err(StoreError::internal)??;
    for p in &prepared {
        if !blobs.inline(p.raw.len()) {
            blobs.put(&p.blob, &p.raw).await?;
        }
    }
    Ok(prepared)
}
