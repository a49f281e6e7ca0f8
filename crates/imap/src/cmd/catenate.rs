//! CATENATE — RFC 4469: APPEND puts a message together from literal text and
//! (parts of) messages the account already has, named by IMAP URLs
//! (RFC 5092). Only this server's mailboxes of the logged-in account can be
//! named; a URL that names nothing (wrong UIDVALIDITY, no such message or
//! part) fails the whole APPEND with `NO [BADURL url]` (§5).

use casella_mime::BodyPart;
use casella_proto_imap::section::{self, partial};
use casella_proto_imap::{CatenatePart, ImapUrl, parse_imap_url};
use casella_store::{StoreError, Uid};

use crate::names::from_wire;
use crate::session::Session;

/// Why a CATENATE could not be put together: the tagged reply's text.
pub(crate) struct CatenateFailure(pub String);

impl From<StoreError> for CatenateFailure {
    fn from(e: StoreError) -> Self {
        CatenateFailure(crate::cmd::store_error(&e))
    }
}

impl Session {
    /// The message the parts make, at most `limit` bytes.
    pub(crate) async fn catenate(
        &mut self,
        parts: Vec<CatenatePart>,
        limit: usize,
    ) -> Result<Vec<u8>, CatenateFailure> {
        let mut message = Vec::new();
        for part in parts {
            match part {
                CatenatePart::Text { data, .. } => message.extend_from_slice(&data),
                CatenatePart::Url(url) => {
                    let bad = |why: &str| {
                        let shown: String = url.chars().filter(|c| *c != ']').collect();
                        CatenateFailure(format!("NO [BADURL {shown}] {why}"))
                    };
                    let parsed = parse_imap_url(&url).map_err(|e| bad(&e))?;
                    let data = self
                        .url_content(&parsed)
                        .await?
                        .ok_or_else(|| bad("The URL names no message or part of this account"))?;
                    message.extend_from_slice(&data);
                }
            }
            if message.len() > limit {
                return Err(CatenateFailure(format!(
                    "NO [TOOBIG] The message is larger than the limit of {limit} bytes"
                )));
            }
        }
        Ok(message)
    }

    /// What a URL names, or `None` when it names nothing of this account.
    async fn url_content(&self, url: &ImapUrl) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(auth) = self.auth.as_ref() else {
            return Ok(None);
        };
        if let Some(user) = &url.user {
            let address = &auth.account.address;
            let local = address.split('@').next().unwrap_or(address);
            if !user.eq_ignore_ascii_case(address) && !user.eq_ignore_ascii_case(local) {
                return Ok(None);
            }
        }
        // RFC 5092's `enc-mailbox` is UTF-8; older clients (RFC 2192) send
        // modified UTF-7, which an ASCII name may be.
        let name = match from_wire(&url.mailbox, !url.mailbox.is_ascii()) {
            Ok(n) => n,
            Err(_) => return Ok(None),
        };
        let store = self.store();
        let Some(mailbox) = store.mailbox_by_name(auth.account.id, &name).await? else {
            return Ok(None);
        };
        if url
            .uid_validity
            .is_some_and(|v| v != mailbox.uid_validity.0)
        {
            return Ok(None);
        }
        let uid = Uid(url.uid);
        let blob = match self.selected.as_ref().filter(|s| s.id() == mailbox.id) {
            Some(sel) => sel
                .seq_of(uid)
                .and_then(|seq| sel.by_seq(seq))
                .filter(|m| !m.expunged)
                .map(|m| m.blob.clone()),
            None => store
                .list_messages(mailbox.id)
                .await?
                .into_iter()
                .find(|m| m.uid == uid)
                .map(|m| m.blob),
        };
        let Some(blob) = blob else {
            return Ok(None);
        };
        let raw = store.read_blob(&blob).await?;
        let data = match &url.section {
            None => raw,
            Some(sec) if sec.part.is_empty() => {
                match section::body_section(&raw, &BodyPart::top_level(&raw), sec) {
                    Some(d) => d,
                    None => return Ok(None),
                }
            }
            Some(sec) => {
                let structure = store.structures(std::slice::from_ref(&blob)).await?;
                let Some(Some(structure)) = structure.into_iter().next() else {
                    return Ok(None);
                };
                match section::body_section(&raw, &structure.body, sec) {
                    Some(d) => d,
                    None => return Ok(None),
                }
            }
        };
        Ok(Some(match url.partial {
            // RFC 5092's `;PARTIAL=offset[.length]`: from the offset, so
            // many bytes (to the end without a length).
            Some((offset, length)) => partial(&data, offset, length.unwrap_or(u32::MAX)).to_vec(),
            None => data,
        }))
    }
}
