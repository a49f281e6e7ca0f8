//! The model's memory of what it read lately (see `crate::parsed_cache`).

use crate::parsed_cache::ParsedCache;
use crate::{MessageStructure, SearchFields};

/// Parsed metadata and header blocks of messages read lately; blobs never
/// change, so nothing here is ever stale.
#[derive(Default)]
pub struct ParsedCaches {
    /// Structures FETCH read lately.
    pub(crate) structures: ParsedCache<MessageStructure>,
    /// Header fields SEARCH read lately.
    pub(crate) header_fields: ParsedCache<SearchFields>,
    /// Header blocks FETCH read lately.
    pub(crate) headers: ParsedCache<[u8]>,
}
