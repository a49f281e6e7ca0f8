//! FETCH and UID FETCH — RFC 9051 §6.4.5 (and the RFC822* items of RFC 3501
//! §6.4.5), BINARY (RFC 3516). Envelope and body structure come from what was
//! parsed at delivery; the bytes are read only for body sections.

use std::sync::Arc;

use casella_mime::BodyPart;
use casella_proto_imap::section::{self, BinaryError};
use casella_proto_imap::{
    FetchAttr, FetchItems, PartialRange, Section, SectionText, SequenceSet, encode,
};
use casella_store::{Flag, FlagOp, FlagSet, MessageStructure, Uid};

use crate::cmd::store_error;
use casella_net::{Connection, SessionStream};

use crate::session::Session;
use crate::view::flag_list;

/// The section spec as it is echoed in the response, e.g. `1.2.HEADER.FIELDS (FROM)`.
fn section_spec(s: &Section) -> String {
    let mut out: Vec<String> = s.part.iter().map(|p| p.to_string()).collect();
    match &s.text {
        None => {}
        Some(SectionText::Header) => out.push("HEADER".into()),
        Some(SectionText::Text) => out.push("TEXT".into()),
        Some(SectionText::Mime) => out.push("MIME".into()),
        Some(SectionText::HeaderFields { not, fields }) => {
            let name = if *not {
                "HEADER.FIELDS.NOT"
            } else {
                "HEADER.FIELDS"
            };
            out.push(format!("{name} ({})", fields.join(" ")));
        }
    }
    out.join(".")
}

fn part_spec(part: &[u32]) -> String {
    part.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// Whether fetching `attr` sets \Seen (RFC 9051 §6.4.5: non-PEEK body data).
fn sets_seen(attr: &FetchAttr) -> bool {
    matches!(
        attr,
        FetchAttr::Rfc822
            | FetchAttr::Rfc822Text
            | FetchAttr::BodySection { peek: false, .. }
            | FetchAttr::Binary { peek: false, .. }
    )
}

fn needs_parsed(attr: &FetchAttr) -> bool {
    match attr {
        FetchAttr::Envelope | FetchAttr::Body | FetchAttr::BodyStructure => true,
        // The whole message's header and text are found in the bytes alone.
        FetchAttr::BodySection { section, .. } => !section.part.is_empty(),
        FetchAttr::Binary { part, .. } | FetchAttr::BinarySize { part } => !part.is_empty(),
        _ => false,
    }
}

/// Messages read per store trip for FETCH of bytes, and the bytes after which
/// a trip stops taking more (headers are small: only the count bounds them).
const RAW_CHUNK: usize = 32;
const RAW_BUDGET: u64 = 1 << 20;

/// Whether `attr` needs only the message's header block.
fn is_header_only(attr: &FetchAttr) -> bool {
    match attr {
        FetchAttr::Rfc822Header => true,
        FetchAttr::BodySection { section, .. } => {
            section.part.is_empty()
                && matches!(
                    section.text,
                    Some(SectionText::Header) | Some(SectionText::HeaderFields { .. })
                )
        }
        _ => false,
    }
}

fn needs_raw(attr: &FetchAttr) -> bool {
    matches!(
        attr,
        FetchAttr::Rfc822
            | FetchAttr::Rfc822Header
            | FetchAttr::Rfc822Text
            | FetchAttr::BodySection { .. }
            | FetchAttr::Binary { .. }
            | FetchAttr::BinarySize { .. }
    )
}

/// Why FETCH responses stopped before the end.
pub(crate) enum FetchStop {
    /// The tagged reply to give (a store error, an unknown encoding).
    Reply(String),
    /// The connection failed.
    Broken,
}

/// FETCH's modifiers (RFC 4466 §2.4).
pub(crate) struct FetchModifiers {
    /// CHANGEDSINCE (RFC 7162 §3.1.4.1).
    pub changed_since: Option<u64>,
    /// VANISHED, with CHANGEDSINCE (RFC 7162 §3.2.6).
    pub vanished: bool,
    /// PARTIAL (RFC 9394 §3.3).
    pub partial: Option<PartialRange>,
}

impl Session {
    pub(crate) async fn cmd_fetch<S: SessionStream>(
        &mut self,
        tag: &str,
        uid: bool,
        set: SequenceSet,
        items: FetchItems,
        modifiers: FetchModifiers,
        io: &mut Connection<S>,
    ) {
        let FetchModifiers {
            changed_since,
            vanished,
            partial,
        } = modifiers;
        let verb = if uid { "UID FETCH" } else { "FETCH" };
        let mut targets = match self.resolve(&set, uid) {
            Ok(t) => t,
            Err(e) => {
                self.tagged(tag, &format!("BAD {e}"));
                return;
            }
        };
        let mut attrs = items.attrs;
        // UID FETCH always returns UID (RFC 9051 §6.4.9).
        if uid && !attrs.contains(&FetchAttr::Uid) {
            attrs.insert(0, FetchAttr::Uid);
        }
        // RFC 7162 §3.1.4: FETCH MODSEQ and CHANGEDSINCE enable CONDSTORE;
        // CHANGEDSINCE shows only messages changed after it, with MODSEQ.
        if changed_since.is_some() || attrs.contains(&FetchAttr::ModSeq) {
            self.enable_condstore();
        }
        if let Some(since) = changed_since {
            if !attrs.contains(&FetchAttr::ModSeq) {
                attrs.push(FetchAttr::ModSeq);
            }
            if let Some(sel) = self.selected.as_ref() {
                targets.retain(|(seq, _)| sel.by_seq(*seq).is_some_and(|m| m.modseq.0 > since));
            }
            if vanished && let Err(e) = self.report_vanished_earlier(&set, since).await {
                let reply = store_error(&e);
                self.tagged(tag, &reply);
                return;
            }
        }
        // RFC 9394 §3.3: of the messages the set and CHANGEDSINCE select,
        // only those at these positions (counted from the last when negative).
        if let Some(range) = partial {
            let keep = range.indices(targets.len());
            targets = targets[keep].to_vec();
        }
        match self.fetch_targets(&targets, attrs, io).await {
            Ok(missing) => {
                let status = if missing {
                    format!(
                        "OK [EXPUNGEISSUED] {verb} completed; some messages were expunged meanwhile"
                    )
                } else {
                    format!("OK {verb} completed")
                };
                self.finish(tag, &status, uid).await;
            }
            Err(FetchStop::Reply(reply)) => self.tagged(tag, &reply),
            Err(FetchStop::Broken) => {}
        }
    }

    /// The FETCH responses for `targets` (sequence number, UID) with `attrs`,
    /// queued and flushed as they grow; whether some were expunged meanwhile.
    /// Also what NOTIFY's MessageNew sends for new messages (RFC 5465 §5.1).
    pub(crate) async fn fetch_targets<S: SessionStream>(
        &mut self,
        targets: &[(u32, Uid)],
        attrs: Vec<FetchAttr>,
        io: &mut Connection<S>,
    ) -> Result<bool, FetchStop> {
        let condstore = self.condstore;
        // A retrieval format or stripped receipt request changes what is shown, so
        // such sessions read the bytes and structure of every message they show.
        let presentation = self
            .auth
            .as_ref()
            .map(|a| a.presentation)
            .unwrap_or_default();
        let converting = !presentation.is_identity()
            && attrs.iter().any(|a| {
                needs_raw(a)
                    || needs_parsed(a)
                    || (*a == FetchAttr::Rfc822Size && self.config.exact_rfc822_size)
            });
        let want_parsed = converting || attrs.iter().any(needs_parsed);
        let want_raw = converting || attrs.iter().any(needs_raw);
        let store = self.store();

        // Set \Seen first, in one store call, so the responses show it.
        let mut seen_now: Vec<Uid> = Vec::new();
        if attrs.iter().any(sets_seen)
            && let Some(sel) = self.selected.as_ref()
            && !sel.read_only
        {
            let unseen: Vec<Uid> = targets
                .iter()
                .filter_map(|(seq, u)| {
                    sel.by_seq(*seq)
                        .filter(|m| !m.expunged && !m.flags.contains(&Flag::Seen))
                        .map(|_| *u)
                })
                .collect();
            if !unseen.is_empty() {
                let seen: FlagSet = [Flag::Seen].into_iter().collect();
                match store
                    .store_flags(sel.id(), &unseen, FlagOp::Add, &seen)
                    .await
                {
                    Ok(updates) => {
                        if let Some(sel) = self.selected.as_mut() {
                            for u in updates {
                                if let Ok(i) = sel.messages.binary_search_by_key(&u.uid, |m| m.uid)
                                {
                                    sel.messages[i].flags = u.flags;
                                    sel.messages[i].modseq = u.modseq;
                                }
                                seen_now.push(u.uid);
                            }
                        }
                    }
                    Err(e) => {
                        return Err(FetchStop::Reply(store_error(&e)));
                    }
                }
            }
        }

        let utf8 = self.utf8();
        let rev1 = !self.rev2;
        let mut missing = false;
        // Parsed metadata is read in chunks, one store round trip each.
        const CHUNK: usize = 256;
        let mut parsed_chunk: Vec<Option<Arc<MessageStructure>>> = Vec::new();
        // Only header blocks are needed (HEADER, HEADER.FIELDS, RFC822.HEADER):
        // the store reads just those, and keeps recent ones in memory.
        let headers_only =
            want_raw && !converting && attrs.iter().filter(|a| needs_raw(a)).all(is_header_only);
        let mut raw_chunk: std::collections::VecDeque<Option<Arc<[u8]>>> = Default::default();
        for (index, (seq, u)) in targets.iter().copied().enumerate() {
            if want_parsed && index % CHUNK == 0 {
                let blobs: Vec<_> = targets[index..(index + CHUNK).min(targets.len())]
                    .iter()
                    .filter_map(|(s, _)| {
                        self.selected
                            .as_ref()
                            .and_then(|v| v.by_seq(*s))
                            .map(|m| m.blob.clone())
                    })
                    .collect();
                parsed_chunk = match store.structures(&blobs).await {
                    Ok(p) => p,
                    Err(e) => {
                        return Err(FetchStop::Reply(store_error(&e)));
                    }
                };
                parsed_chunk.reverse();
            }
            let Some(m) = self.selected.as_ref().and_then(|s| s.by_seq(seq)).cloned() else {
                continue;
            };
            let mut parsed: Option<Arc<MessageStructure>> = if want_parsed {
                match parsed_chunk.pop().flatten() {
                    Some(p) => Some(p),
                    None => {
                        missing = true;
                        continue;
                    }
                }
            } else {
                None
            };
            let mut raw: Option<Arc<[u8]>> = if want_raw {
                if raw_chunk.is_empty() {
                    // The bytes of this and the next messages in one store trip:
                    // a few at a time, so a FETCH of large messages holds little.
                    let mut blobs = Vec::new();
                    let mut bytes = 0u64;
                    for (s, _) in &targets[index..] {
                        let Some(v) = self.selected.as_ref().and_then(|v| v.by_seq(*s)) else {
                            continue;
                        };
                        if blobs.len() >= RAW_CHUNK
                            || (!headers_only && !blobs.is_empty() && bytes >= RAW_BUDGET)
                        {
                            break;
                        }
                        bytes += u64::from(v.size);
                        blobs.push(v.blob.clone());
                    }
                    let read = if headers_only {
                        store.read_headers(&blobs).await
                    } else {
                        store
                            .read_blobs(&blobs)
                            .await
                            .map(|all| all.into_iter().map(|r| r.map(Arc::<[u8]>::from)).collect())
                    };
                    raw_chunk = match read {
                        Ok(r) => r.into(),
                        Err(e) => {
                            return Err(FetchStop::Reply(store_error(&e)));
                        }
                    };
                }
                match raw_chunk.pop_front().flatten() {
                    Some(r) => Some(r),
                    None => {
                        missing = true;
                        continue;
                    }
                }
            } else {
                None
            };
            let mut size = m.size;
            if converting
                && let (Some(r), Some(p)) = (&raw, &parsed)
                && let Some(shown) = presentation.apply(r, &p.body)
            {
                if self.config.exact_rfc822_size {
                    size = shown.len().min(u32::MAX as usize) as u32;
                }
                parsed = Some(Arc::new(casella_mime::parse(&shown).split().0));
                raw = Some(Arc::from(shown));
            }
            let mut out = format!("* {seq} FETCH (").into_bytes();
            let mut first = true;
            let mut sep = |out: &mut Vec<u8>| {
                if !first {
                    out.push(b' ');
                }
                first = false;
            };
            let mut flags_sent = false;
            let mut modseq_sent = false;
            for attr in &attrs {
                sep(&mut out);
                match attr {
                    FetchAttr::Uid => out.extend_from_slice(format!("UID {}", u.0).as_bytes()),
                    FetchAttr::Flags => {
                        flags_sent = true;
                        out.extend_from_slice(
                            format!("FLAGS ({})", flag_list(&m.flags, rev1 && m.recent)).as_bytes(),
                        );
                    }
                    FetchAttr::InternalDate => {
                        out.extend_from_slice(b"INTERNALDATE ");
                        encode::date_time(&mut out, m.internal_date);
                    }
                    // RFC 8514 §4: NIL when the save date is not known.
                    FetchAttr::SaveDate => {
                        out.extend_from_slice(b"SAVEDATE ");
                        if m.save_date > 0 {
                            encode::date_time(&mut out, m.save_date);
                        } else {
                            out.extend_from_slice(b"NIL");
                        }
                    }
                    FetchAttr::Rfc822Size => {
                        out.extend_from_slice(format!("RFC822.SIZE {size}").as_bytes())
                    }
                    FetchAttr::ModSeq => {
                        modseq_sent = true;
                        out.extend_from_slice(format!("MODSEQ ({})", m.modseq.0).as_bytes())
                    }
                    FetchAttr::Envelope => {
                        out.extend_from_slice(b"ENVELOPE ");
                        if let Some(p) = &parsed {
                            encode::envelope(&mut out, &p.envelope, utf8);
                        }
                    }
                    FetchAttr::Body => {
                        out.extend_from_slice(b"BODY ");
                        if let Some(p) = &parsed {
                            encode::body_structure(&mut out, &p.body, false, utf8);
                        }
                    }
                    FetchAttr::BodyStructure => {
                        out.extend_from_slice(b"BODYSTRUCTURE ");
                        if let Some(p) = &parsed {
                            encode::body_structure(&mut out, &p.body, true, utf8);
                        }
                    }
                    FetchAttr::Rfc822 => {
                        out.extend_from_slice(b"RFC822 ");
                        encode::literal(&mut out, raw.as_deref().unwrap_or_default());
                    }
                    FetchAttr::Rfc822Header | FetchAttr::Rfc822Text => {
                        let (name, text) = if *attr == FetchAttr::Rfc822Header {
                            ("RFC822.HEADER ", SectionText::Header)
                        } else {
                            ("RFC822.TEXT ", SectionText::Text)
                        };
                        out.extend_from_slice(name.as_bytes());
                        let sec = Section {
                            part: vec![],
                            text: Some(text),
                        };
                        let data = raw
                            .as_deref()
                            .and_then(|r| section::body_section(r, &BodyPart::top_level(r), &sec));
                        encode::nstring(&mut out, data.as_deref());
                    }
                    FetchAttr::BodySection {
                        section: sec,
                        partial,
                        ..
                    } => {
                        let data = match (&raw, &parsed) {
                            (Some(r), Some(p)) => section::body_section(r, &p.body, sec),
                            (Some(r), None) if sec.part.is_empty() => {
                                section::body_section(r, &BodyPart::top_level(r), sec)
                            }
                            _ => None,
                        };
                        out.extend_from_slice(format!("BODY[{}]", section_spec(sec)).as_bytes());
                        match (data, partial) {
                            (Some(d), Some(p)) => {
                                out.extend_from_slice(format!("<{}> ", p.offset).as_bytes());
                                encode::nstring(
                                    &mut out,
                                    Some(section::partial(&d, p.offset, p.count)),
                                );
                            }
                            (Some(d), None) => {
                                out.push(b' ');
                                encode::nstring(&mut out, Some(&d));
                            }
                            // A part that does not exist reads as empty (as Dovecot answers).
                            (None, Some(p)) => {
                                out.extend_from_slice(format!("<{}> \"\"", p.offset).as_bytes())
                            }
                            (None, None) => out.extend_from_slice(b" \"\""),
                        }
                    }
                    FetchAttr::Binary { part, partial, .. } => {
                        let data = binary(&raw, &parsed, part);
                        let data = match data {
                            Ok(d) => d,
                            Err(BinaryError::UnknownCte) => {
                                return Err(FetchStop::Reply("NO [UNKNOWN-CTE] A part's Content-Transfer-Encoding is not known to the server".into()));
                            }
                            Err(BinaryError::NotFound) => Vec::new(),
                        };
                        out.extend_from_slice(format!("BINARY[{}]", part_spec(part)).as_bytes());
                        let slice = match partial {
                            Some(p) => {
                                out.extend_from_slice(format!("<{}>", p.offset).as_bytes());
                                section::partial(&data, p.offset, p.count)
                            }
                            None => &data[..],
                        };
                        out.push(b' ');
                        encode::binary_literal(&mut out, slice);
                    }
                    FetchAttr::BinarySize { part } => {
                        let size = match binary(&raw, &parsed, part) {
                            Ok(d) => d.len(),
                            Err(BinaryError::UnknownCte) => {
                                return Err(FetchStop::Reply("NO [UNKNOWN-CTE] A part's Content-Transfer-Encoding is not known to the server".into()));
                            }
                            Err(BinaryError::NotFound) => 0,
                        };
                        out.extend_from_slice(
                            format!("BINARY.SIZE[{}] {size}", part_spec(part)).as_bytes(),
                        );
                    }
                }
            }
            // RFC 9051 §6.4.5: when \Seen was set as a side effect, FLAGS is returned.
            if !flags_sent && seen_now.contains(&u) {
                sep(&mut out);
                out.extend_from_slice(
                    format!("FLAGS ({})", flag_list(&m.flags, rev1 && m.recent)).as_bytes(),
                );
                // RFC 7162 §3.1.4: a flag change reported with CONDSTORE on
                // carries its MODSEQ.
                if condstore && !modseq_sent {
                    sep(&mut out);
                    out.extend_from_slice(format!("MODSEQ ({})", m.modseq.0).as_bytes());
                }
            }
            out.push(b')');
            self.out.response(&out);
            if self.maybe_flush(io).await.is_err() {
                return Err(FetchStop::Broken);
            }
        }
        Ok(missing)
    }
}

fn binary(
    raw: &Option<Arc<[u8]>>,
    parsed: &Option<Arc<MessageStructure>>,
    part: &[u32],
) -> Result<Vec<u8>, BinaryError> {
    match (raw, parsed) {
        (Some(r), Some(p)) => section::binary_section(r, &p.body, part),
        (Some(r), None) if part.is_empty() => Ok(r.to_vec()),
        _ => Err(BinaryError::NotFound),
    }
}
