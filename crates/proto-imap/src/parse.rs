//! The IMAP command parser: one complete command (see [`crate::frame`]) to a
//! [`Command`], following the formal syntax of RFC 9051 §9, with the rev1-only
//! commands of RFC 3501 and the extensions named in [`crate::types`].
//!
//! Input: the command's lines joined with CRLF, each literal's bytes inline after
//! its `{n}` CRLF announcement, without the final CRLF.
//!
//! Invariants: never panics, whatever the input; keywords are case-insensitive;
//! a mailbox named `INBOX` in any case becomes `"INBOX"`, other mailbox names,
//! LIST references and patterns are returned as sent (modified UTF-7 decoding is the
//! session's job); system flags and special-use attributes are returned in their
//! canonical case, keywords as sent.

mod cursor;
mod datetime;
mod fetch;
mod notify;
mod search;
mod sort;
mod url;

#[cfg(test)]
mod tests;

pub use url::parse_imap_url;

use cursor::{Cursor, PResult, fail, is_list_char, is_tag_char, show, utf8};

use crate::types::{
    AppendMessage, CatenatePart, Command, CommandBody, ListCommand, ListReturn, ListSelect,
    QresyncParams, SelectParams, SequenceSet, StatusItem, StoreAction,
};

/// Why a command could not be parsed: the session answers `tag BAD message`, or
/// `* BAD message` when no tag could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// The command's tag, when a valid one was read.
    pub tag: Option<String>,
    /// A short reason, printable ASCII, safe to send.
    pub message: String,
}

/// Parses one complete command (lines joined by CRLF, literals inline, no final
/// CRLF).
pub fn parse_command(input: &[u8]) -> Result<Command, ParseError> {
    let mut c = Cursor::new(input);
    let tag = tag(&mut c).map_err(|message| ParseError { tag: None, message })?;
    match command_body(&mut c) {
        Ok(body) => Ok(Command { tag, body }),
        Err(message) => Err(ParseError {
            tag: Some(tag),
            message,
        }),
    }
}

/// `tag = 1*<any ASTRING-CHAR except "+">`, the whole first word.
fn tag(c: &mut Cursor<'_>) -> PResult<String> {
    if c.at_end() {
        return fail("Empty command");
    }
    let word = c.take_while(|b| b != b' ');
    if word.is_empty() || !word.iter().all(|&b| is_tag_char(b)) {
        return fail("Invalid tag");
    }
    Ok(String::from_utf8_lossy(word).into_owned())
}

fn command_body(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sep("command")?;
    let missing = c.at_end();
    let name = c.word();
    let body = match name.as_str() {
        // Any state — RFC 9051 §6.1.
        "CAPABILITY" => bare(c, CommandBody::Capability)?,
        "NOOP" => bare(c, CommandBody::Noop)?,
        "LOGOUT" => bare(c, CommandBody::Logout)?,
        "ID" => id(c)?,
        // Not authenticated — §6.2.
        "STARTTLS" => bare(c, CommandBody::StartTls)?,
        "AUTHENTICATE" => authenticate(c)?,
        "LOGIN" => {
            c.sep("user name")?;
            let username = c.astring_text("user name")?;
            c.sep("password")?;
            let password = c.astring_text("password")?;
            c.end()?;
            CommandBody::Login { username, password }
        }
        // Authenticated — §6.3.
        "ENABLE" => {
            let mut caps = Vec::new();
            loop {
                c.sep("capability")?;
                caps.push(c.required_atom("capability")?);
                if c.at_end() {
                    break;
                }
            }
            CommandBody::Enable(caps)
        }
        "SELECT" => {
            let (mailbox, params) = select(c)?;
            CommandBody::Select { mailbox, params }
        }
        "EXAMINE" => {
            let (mailbox, params) = select(c)?;
            CommandBody::Examine { mailbox, params }
        }
        "CREATE" => create(c)?,
        "DELETE" => CommandBody::Delete(only_mailbox(c)?),
        "RENAME" => {
            c.sep("mailbox name")?;
            let from = mailbox(c, "mailbox name")?;
            c.sep("new mailbox name")?;
            let to = mailbox(c, "new mailbox name")?;
            c.end()?;
            CommandBody::Rename { from, to }
        }
        "SUBSCRIBE" => CommandBody::Subscribe(only_mailbox(c)?),
        "UNSUBSCRIBE" => CommandBody::Unsubscribe(only_mailbox(c)?),
        "LIST" => list(c)?,
        "LSUB" => {
            c.sep("mailbox reference")?;
            let reference = c.astring_text("mailbox reference")?;
            c.sep("mailbox pattern")?;
            let pattern = list_mailbox(c)?;
            c.end()?;
            CommandBody::Lsub { reference, pattern }
        }
        "NAMESPACE" => bare(c, CommandBody::Namespace)?,
        // RFC 9208 §4.
        "GETQUOTA" => {
            c.sep("quota root")?;
            let root = c.astring_text("quota root")?;
            c.end()?;
            CommandBody::GetQuota(root)
        }
        "GETQUOTAROOT" => CommandBody::GetQuotaRoot(only_mailbox(c)?),
        "SETQUOTA" => set_quota(c)?,
        "STATUS" => {
            c.sep("mailbox name")?;
            let mailbox = mailbox(c, "mailbox name")?;
            c.sep("status items")?;
            let items = status_items(c)?;
            c.end()?;
            CommandBody::Status { mailbox, items }
        }
        "APPEND" => append(c)?,
        "IDLE" => bare(c, CommandBody::Idle)?,
        "NOTIFY" => notify::notify(c)?,
        // Selected — §6.4.
        "CHECK" => bare(c, CommandBody::Check)?,
        "CLOSE" => bare(c, CommandBody::Close)?,
        "UNSELECT" => bare(c, CommandBody::Unselect)?,
        "CANCELUPDATE" => cancel_update(c)?,
        "EXPUNGE" => bare(c, CommandBody::Expunge)?,
        "SEARCH" => search::search(c, false)?,
        "SORT" => sort::sort(c, false)?,
        "THREAD" => sort::thread(c, false)?,
        "FETCH" => fetch::fetch(c, false)?,
        "STORE" => store(c, false)?,
        "COPY" => copy_or_move(c, false, false)?,
        "MOVE" => copy_or_move(c, false, true)?,
        "UID" => uid(c)?,
        "" if missing => return fail("Missing command"),
        "" => return fail("Invalid command"),
        _ => return fail(format!("Unknown command {}", show(name.as_bytes()))),
    };
    Ok(body)
}

/// `"CANCELUPDATE" 1*(SP quoted)` — RFC 5267 §4.3.5 (the tags of the
/// searches whose updates end).
fn cancel_update(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    let mut tags = Vec::new();
    while c.eat(b' ') {
        if c.peek() != Some(b'"') {
            return fail("CANCELUPDATE takes quoted tags");
        }
        let tag = c.quoted("tag")?;
        tags.push(String::from_utf8_lossy(&tag).into_owned());
    }
    if tags.is_empty() {
        return fail("CANCELUPDATE needs at least one tag");
    }
    c.end()?;
    Ok(CommandBody::CancelUpdate(tags))
}

/// `setquota = "SETQUOTA" SP quota-root-name SP setquota-list`, the list
/// `"(" [setquota-resource *(SP setquota-resource)] ")"` of
/// `resource-name SP resource-limit` (RFC 9208 §9).
fn set_quota(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sep("quota root")?;
    let root = c.astring_text("quota root")?;
    c.sep("resource list")?;
    c.expect(b'(', "Expected ( before the resource list")?;
    let mut limits = Vec::new();
    while !c.eat(b')') {
        if !limits.is_empty() {
            c.sep("resource")?;
        }
        let name = c.word();
        if name.is_empty() {
            return fail("Expected a resource name");
        }
        c.sep("resource limit")?;
        let limit = c.number64("resource limit")?;
        limits.push((name, limit));
    }
    c.end()?;
    Ok(CommandBody::SetQuota { root, limits })
}

/// A command without arguments.
fn bare(c: &mut Cursor<'_>, body: CommandBody) -> PResult<CommandBody> {
    c.end()?;
    Ok(body)
}

/// `uid = "UID" SP (copy / move / fetch / search / store / uid-expunge)`, and
/// SORT and THREAD (RFC 5256 §3).
fn uid(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sep("UID command")?;
    let missing = c.at_end();
    let name = c.word();
    match name.as_str() {
        "FETCH" => fetch::fetch(c, true),
        "SEARCH" => search::search(c, true),
        "SORT" => sort::sort(c, true),
        "THREAD" => sort::thread(c, true),
        "STORE" => store(c, true),
        "COPY" => copy_or_move(c, true, false),
        "MOVE" => copy_or_move(c, true, true),
        "EXPUNGE" => {
            c.sep("sequence set")?;
            let set = c.sequence_set()?;
            c.end()?;
            Ok(CommandBody::UidExpunge(set))
        }
        "" if missing => fail("Missing UID command"),
        "" => fail("Invalid UID command"),
        _ => fail(format!("Unknown UID command {}", show(name.as_bytes()))),
    }
}

/// `mailbox = "INBOX" / astring`; INBOX in any case is INBOX (RFC 9051 §5.1).
fn mailbox(c: &mut Cursor<'_>, what: &str) -> PResult<String> {
    let name = c.astring_text(what)?;
    if name.eq_ignore_ascii_case("INBOX") {
        Ok("INBOX".to_owned())
    } else {
        Ok(name)
    }
}

/// `SP mailbox` and the end of the command.
fn only_mailbox(c: &mut Cursor<'_>) -> PResult<String> {
    c.sep("mailbox name")?;
    let name = mailbox(c, "mailbox name")?;
    c.end()?;
    Ok(name)
}

/// `list-mailbox = 1*list-char / string`.
fn list_mailbox(c: &mut Cursor<'_>) -> PResult<String> {
    const WHAT: &str = "mailbox pattern";
    if c.at_string() {
        let bytes = c.string(WHAT)?;
        return utf8(bytes, WHAT);
    }
    let missing = c.at_end();
    let pattern = c.take_while(is_list_char);
    if pattern.is_empty() {
        return fail(if missing {
            "Missing mailbox pattern"
        } else {
            "Invalid mailbox pattern"
        });
    }
    Ok(String::from_utf8_lossy(pattern).into_owned())
}

/// ID — RFC 2971 §3.3: `"ID" SP id-params-list`,
/// `id-params-list = "(" #(string SP nstring) ")" / nil`. Keys and values are
/// accepted as astrings, leniently.
fn id(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sep("ID parameters")?;
    if c.eat_keyword("NIL") {
        c.end()?;
        return Ok(CommandBody::Id(None));
    }
    c.expect(b'(', "Invalid ID parameters")?;
    let mut pairs = Vec::new();
    if !c.eat(b')') {
        loop {
            let key = c.astring_text("ID field name")?;
            c.sep("ID field value")?;
            let value = if c.eat_keyword("NIL") {
                None
            } else {
                Some(c.astring_text("ID field value")?)
            };
            pairs.push((key, value));
            if c.eat(b')') {
                break;
            }
            c.expect(b' ', "Expected ')' after ID parameters")?;
        }
    }
    c.end()?;
    Ok(CommandBody::Id(Some(pairs)))
}

/// AUTHENTICATE — RFC 9051 §6.2.2, SASL-IR (RFC 4959 §3):
/// `"AUTHENTICATE" SP auth-type [SP (base64 / "=")]`. The mechanism is returned
/// upper-cased; the initial response as sent.
fn authenticate(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sep("authentication mechanism")?;
    let mechanism = c.required_atom("authentication mechanism")?;
    let mut initial = None;
    if c.eat(b' ') {
        let missing = c.at_end();
        let response =
            c.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        // base64, padding only at the end; or "=" alone for an empty response.
        let well_formed = !response.is_empty()
            && response
                .iter()
                .skip_while(|&&b| b != b'=')
                .all(|&b| b == b'=');
        if missing {
            return fail("Missing initial response");
        }
        if !well_formed || !c.at_end() {
            return fail("Invalid initial response");
        }
        initial = Some(String::from_utf8_lossy(response).into_owned());
    }
    c.end()?;
    Ok(CommandBody::Authenticate {
        mechanism: mechanism.to_ascii_uppercase(),
        initial,
    })
}

/// SELECT/EXAMINE: `mailbox [select-params]` (RFC 4466 §2.1) with CONDSTORE
/// (RFC 7162 §3.1.8) and QRESYNC (RFC 7162 §3.2.5).
fn select(c: &mut Cursor<'_>) -> PResult<(String, SelectParams)> {
    c.sep("mailbox name")?;
    let mailbox = mailbox(c, "mailbox name")?;
    let mut params = SelectParams::default();
    if c.eat(b' ') {
        c.expect(b'(', "Invalid SELECT parameters")?;
        loop {
            let name = c.word();
            match name.as_str() {
                "CONDSTORE" => params.condstore = true,
                "QRESYNC" => {
                    c.sep("QRESYNC parameters")?;
                    params.qresync = Some(qresync(c)?);
                }
                "" => return fail("Invalid SELECT parameter"),
                _ => {
                    return fail(format!(
                        "Unknown SELECT parameter {}",
                        show(name.as_bytes())
                    ));
                }
            }
            if c.eat(b')') {
                break;
            }
            c.expect(b' ', "Expected ')' after SELECT parameters")?;
        }
    }
    c.end()?;
    Ok((mailbox, params))
}

/// `"(" uidvalidity SP mod-sequence-value [SP known-uids] [SP seq-match-data] ")"`
/// (RFC 7162 §3.2.5; the session checks the values).
fn qresync(c: &mut Cursor<'_>) -> PResult<QresyncParams> {
    const BAD: &str = "Invalid QRESYNC parameters";
    c.expect(b'(', BAD)?;
    let uid_validity = c.nz_number("UIDVALIDITY")?;
    c.sep("mod-sequence")?;
    let modseq = c.modseq()?;
    let mut known_uids = None;
    let mut seq_match = None;
    if c.eat(b' ') {
        if c.peek() == Some(b'(') {
            seq_match = Some(seq_match_data(c)?);
        } else {
            known_uids = Some(c.sequence_set()?);
            if c.eat(b' ') {
                seq_match = Some(seq_match_data(c)?);
            }
        }
    }
    c.expect(b')', BAD)?;
    Ok(QresyncParams {
        uid_validity,
        modseq,
        known_uids,
        seq_match,
    })
}

/// `seq-match-data = "(" known-sequence-set SP known-uid-set ")"`.
fn seq_match_data(c: &mut Cursor<'_>) -> PResult<(SequenceSet, SequenceSet)> {
    c.expect(b'(', "Invalid QRESYNC sequence match data")?;
    let seqs = c.sequence_set()?;
    c.sep("known UIDs")?;
    let uids = c.sequence_set()?;
    c.expect(b')', "Invalid QRESYNC sequence match data")?;
    Ok((seqs, uids))
}

/// CREATE — RFC 9051 §6.3.4 with `(USE (\Attr ...))` (RFC 6154 §3).
fn create(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sep("mailbox name")?;
    let mailbox = mailbox(c, "mailbox name")?;
    let mut special_use = Vec::new();
    if c.eat(b' ') {
        c.expect(b'(', "Invalid CREATE parameters")?;
        loop {
            let name = c.word();
            match name.as_str() {
                "USE" => {
                    c.sep("special-use attributes")?;
                    c.expect(b'(', "Invalid special-use attributes")?;
                    if !c.eat(b')') {
                        loop {
                            special_use.push(special_use_attr(c)?);
                            if c.eat(b')') {
                                break;
                            }
                            c.expect(b' ', "Expected ')' after special-use attributes")?;
                        }
                    }
                }
                "" => return fail("Invalid CREATE parameter"),
                _ => {
                    return fail(format!(
                        "Unknown CREATE parameter {}",
                        show(name.as_bytes())
                    ));
                }
            }
            if c.eat(b')') {
                break;
            }
            c.expect(b' ', "Expected ')' after CREATE parameters")?;
        }
    }
    c.end()?;
    Ok(CommandBody::Create {
        mailbox,
        special_use,
    })
}

/// `use-attr = "\All" / "\Archive" / ... / use-attr-ext`; known ones in their
/// canonical case.
fn special_use_attr(c: &mut Cursor<'_>) -> PResult<String> {
    const KNOWN: [&str; 7] = [
        "All", "Archive", "Drafts", "Flagged", "Junk", "Sent", "Trash",
    ];
    if !c.eat(b'\\') {
        return fail("Invalid special-use attribute");
    }
    let name = c.required_atom("special-use attribute")?;
    let name = KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(&name))
        .map_or(name.as_str(), |k| k);
    Ok(format!("\\{name}"))
}

/// LIST — RFC 9051 §6.3.9 with LIST-EXTENDED (RFC 5258 §6), LIST-STATUS
/// (RFC 5819 §3) and SPECIAL-USE (RFC 6154 §6):
/// `"LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]`.
fn list(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    let mut cmd = ListCommand::default();
    c.sep("mailbox reference")?;
    if c.peek() == Some(b'(') {
        cmd.extended = true;
        cmd.select = list_select_options(c)?;
        c.sep("mailbox reference")?;
    }
    cmd.reference = c.astring_text("mailbox reference")?;
    c.sep("mailbox pattern")?;
    if c.eat(b'(') {
        cmd.extended = true;
        cmd.patterns.push(list_mailbox(c)?);
        while !c.eat(b')') {
            c.expect(b' ', "Expected ')' after mailbox patterns")?;
            cmd.patterns.push(list_mailbox(c)?);
        }
    } else {
        cmd.patterns.push(list_mailbox(c)?);
    }
    if c.eat(b' ') {
        if !c.eat_keyword("RETURN") {
            return fail("Expected RETURN options");
        }
        cmd.extended = true;
        c.sep("return options")?;
        cmd.returns = list_return_options(c)?;
    }
    c.end()?;
    Ok(CommandBody::List(cmd))
}

/// `list-select-opts = "(" [list-select-opt *(SP list-select-opt)] ")"`.
fn list_select_options(c: &mut Cursor<'_>) -> PResult<Vec<ListSelect>> {
    c.expect(b'(', "Invalid LIST selection options")?;
    let mut options = Vec::new();
    if !c.eat(b')') {
        loop {
            let name = c.word();
            options.push(match name.as_str() {
                "SUBSCRIBED" => ListSelect::Subscribed,
                "REMOTE" => ListSelect::Remote,
                "RECURSIVEMATCH" => ListSelect::RecursiveMatch,
                "SPECIAL-USE" => ListSelect::SpecialUse,
                "" => return fail("Invalid LIST selection option"),
                _ => {
                    return fail(format!(
                        "Unknown LIST selection option {}",
                        show(name.as_bytes())
                    ));
                }
            });
            if c.eat(b')') {
                break;
            }
            c.expect(b' ', "Expected ')' after LIST selection options")?;
        }
    }
    // RFC 5258 §3.1: RECURSIVEMATCH needs a base option (SUBSCRIBED, SPECIAL-USE).
    if options.contains(&ListSelect::RecursiveMatch)
        && !options
            .iter()
            .any(|o| matches!(o, ListSelect::Subscribed | ListSelect::SpecialUse))
    {
        return fail("RECURSIVEMATCH requires another selection option");
    }
    Ok(options)
}

/// `list-return-opts = "RETURN" SP "(" [return-option *(SP return-option)] ")"`,
/// after RETURN SP.
fn list_return_options(c: &mut Cursor<'_>) -> PResult<Vec<ListReturn>> {
    c.expect(b'(', "Invalid LIST return options")?;
    let mut options = Vec::new();
    if c.eat(b')') {
        return Ok(options);
    }
    loop {
        let name = c.word();
        options.push(match name.as_str() {
            "SUBSCRIBED" => ListReturn::Subscribed,
            "CHILDREN" => ListReturn::Children,
            "SPECIAL-USE" => ListReturn::SpecialUse,
            "STATUS" => {
                c.sep("status items")?;
                ListReturn::Status(status_items(c)?)
            }
            "" => return fail("Invalid LIST return option"),
            _ => {
                return fail(format!(
                    "Unknown LIST return option {}",
                    show(name.as_bytes())
                ));
            }
        });
        if c.eat(b')') {
            return Ok(options);
        }
        c.expect(b' ', "Expected ')' after LIST return options")?;
    }
}

/// `"(" status-att *(SP status-att) ")"`.
fn status_items(c: &mut Cursor<'_>) -> PResult<Vec<StatusItem>> {
    c.expect(b'(', "Invalid status items")?;
    let mut items = Vec::new();
    loop {
        let name = c.word();
        items.push(match name.as_str() {
            "MESSAGES" => StatusItem::Messages,
            "RECENT" => StatusItem::Recent,
            "UIDNEXT" => StatusItem::UidNext,
            "UIDVALIDITY" => StatusItem::UidValidity,
            "UNSEEN" => StatusItem::Unseen,
            "DELETED" => StatusItem::Deleted,
            "DELETED-STORAGE" => StatusItem::DeletedStorage,
            "SIZE" => StatusItem::Size,
            "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
            "" => return fail("Invalid status item"),
            _ => return fail(format!("Unknown status item {}", show(name.as_bytes()))),
        });
        if c.eat(b')') {
            return Ok(items);
        }
        c.expect(b' ', "Expected ')' after status items")?;
    }
}

/// APPEND — RFC 9051 §6.3.12, MULTIAPPEND (RFC 3502 §6), literal8 (RFC 3516 §4.4),
/// UTF8 data (RFC 6855 §4):
/// `"APPEND" SP mailbox 1*(SP [flag-list SP] [date-time SP] append-data)`.
fn append(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sep("mailbox name")?;
    let mailbox = mailbox(c, "mailbox name")?;
    let mut messages = Vec::new();
    loop {
        c.sep("message literal")?;
        let mut flags = Vec::new();
        if c.peek() == Some(b'(') {
            flags = flag_list(c)?;
            c.sep("message literal")?;
        }
        let mut internal_date = None;
        if c.peek() == Some(b'"') {
            internal_date = Some(datetime::date_time(c)?);
            c.sep("message literal")?;
        }
        // RFC 4469 §5: `"CATENATE" SP "(" cat-part *(SP cat-part) ")"`.
        if c.eat_keyword("CATENATE") {
            c.sep("CATENATE parts")?;
            messages.push(AppendMessage {
                flags,
                internal_date,
                data: Vec::new(),
                binary: false,
                catenate: Some(catenate_parts(c)?),
            });
            if c.at_end() {
                break;
            }
            continue;
        }
        let (data, binary) = if c.eat_keyword("UTF8") {
            c.sep("message literal")?;
            c.expect(b'(', "Invalid UTF8 message data")?;
            if c.peek() != Some(b'~') {
                return fail("UTF8 message data must be a literal8");
            }
            let data = c.literal()?;
            c.expect(b')', "Invalid UTF8 message data")?;
            data
        } else if matches!(c.peek(), Some(b'{' | b'~')) {
            c.literal()?
        } else if c.at_end() {
            return fail("Missing message literal");
        } else {
            return fail("Message must be sent as a literal");
        };
        messages.push(AppendMessage {
            flags,
            internal_date,
            data: data.to_vec(),
            binary,
            catenate: None,
        });
        if c.at_end() {
            break;
        }
    }
    Ok(CommandBody::Append { mailbox, messages })
}

/// `"(" cat-part *(SP cat-part) ")"`, `cat-part = text-literal / url`
/// (RFC 4469 §5).
fn catenate_parts(c: &mut Cursor<'_>) -> PResult<Vec<CatenatePart>> {
    const BAD: &str = "Invalid CATENATE part";
    c.expect(b'(', BAD)?;
    let mut parts = Vec::new();
    loop {
        if c.eat_keyword("TEXT") {
            c.sep("CATENATE text literal")?;
            if !matches!(c.peek(), Some(b'{' | b'~')) {
                return fail("CATENATE text must be a literal");
            }
            let (data, binary) = c.literal()?;
            parts.push(CatenatePart::Text {
                data: data.to_vec(),
                binary,
            });
        } else if c.eat_keyword("URL") {
            c.sep("CATENATE URL")?;
            parts.push(CatenatePart::Url(c.astring_text("CATENATE URL")?));
        } else {
            return fail(BAD);
        }
        if c.eat(b')') {
            return Ok(parts);
        }
        c.expect(b' ', BAD)?;
    }
}

/// `flag-list = "(" [flag *(SP flag)] ")"`, with extra spaces inside the
/// parentheses taken as Dovecot takes them: its own `doveadm sync` sends
/// `( Custom-Kw)`.
fn flag_list(c: &mut Cursor<'_>) -> PResult<Vec<String>> {
    c.expect(b'(', "Invalid flag list")?;
    let mut flags = Vec::new();
    loop {
        let spaced = c.eat(b' ');
        while c.eat(b' ') {}
        if c.eat(b')') {
            return Ok(flags);
        }
        if !flags.is_empty() && !spaced {
            return fail("Expected ')' after flags");
        }
        flags.push(flag(c)?);
    }
}

/// `flag = "\Answered" / "\Flagged" / "\Deleted" / "\Seen" / "\Draft" /
/// flag-keyword / flag-extension`; system flags in canonical case. `\*` is only
/// for PERMANENTFLAGS and refused.
fn flag(c: &mut Cursor<'_>) -> PResult<String> {
    const SYSTEM: [&str; 6] = ["Answered", "Flagged", "Deleted", "Seen", "Draft", "Recent"];
    if !c.eat(b'\\') {
        return c.required_atom("flag");
    }
    if c.peek() == Some(b'*') {
        return fail("\\* is not a valid flag here");
    }
    let name = c.required_atom("flag")?;
    let name = SYSTEM
        .iter()
        .find(|s| s.eq_ignore_ascii_case(&name))
        .map_or(name.as_str(), |s| s);
    Ok(format!("\\{name}"))
}

/// STORE — RFC 9051 §6.4.6 with UNCHANGEDSINCE (RFC 7162 §3.1.3):
/// `"STORE" SP sequence-set [SP "(" store-modifier ")"] SP store-att-flags`,
/// `store-att-flags = (["+" / "-"] "FLAGS" [".SILENT"]) SP (flag-list /
/// (flag *(SP flag)))`.
fn store(c: &mut Cursor<'_>, uid: bool) -> PResult<CommandBody> {
    c.sep("sequence set")?;
    let set = c.sequence_set()?;
    c.sep("message data item")?;
    let mut unchanged_since = None;
    if c.eat(b'(') {
        loop {
            let name = c.word();
            match name.as_str() {
                "UNCHANGEDSINCE" => {
                    c.sep("mod-sequence")?;
                    unchanged_since = Some(c.modseq()?);
                }
                "" => return fail("Invalid STORE modifier"),
                _ => {
                    return fail(format!("Unknown STORE modifier {}", show(name.as_bytes())));
                }
            }
            if c.eat(b')') {
                break;
            }
            c.expect(b' ', "Expected ')' after STORE modifiers")?;
        }
        c.sep("message data item")?;
    }
    let action = if c.eat(b'+') {
        StoreAction::Add
    } else if c.eat(b'-') {
        StoreAction::Remove
    } else {
        StoreAction::Replace
    };
    let missing = c.at_end();
    let item = c.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
    let silent = if item.eq_ignore_ascii_case(b"FLAGS") {
        false
    } else if item.eq_ignore_ascii_case(b"FLAGS.SILENT") {
        true
    } else if item.is_empty() && missing {
        return fail("Missing message data item");
    } else {
        return fail(format!("Unknown message data item {}", show(item)));
    };
    c.sep("flags")?;
    let flags = if c.peek() == Some(b'(') {
        flag_list(c)?
    } else {
        let mut flags = vec![flag(c)?];
        while c.eat(b' ') {
            flags.push(flag(c)?);
        }
        flags
    };
    c.end()?;
    Ok(CommandBody::Store {
        uid,
        set,
        unchanged_since,
        action,
        silent,
        flags,
    })
}

/// COPY / MOVE (RFC 9051 §6.4.7, §6.4.8): `sequence-set SP mailbox`.
fn copy_or_move(c: &mut Cursor<'_>, uid: bool, is_move: bool) -> PResult<CommandBody> {
    c.sep("sequence set")?;
    let set = c.sequence_set()?;
    c.sep("mailbox name")?;
    let mailbox = mailbox(c, "mailbox name")?;
    c.end()?;
    Ok(if is_move {
        CommandBody::Move { uid, set, mailbox }
    } else {
        CommandBody::Copy { uid, set, mailbox }
    })
}
