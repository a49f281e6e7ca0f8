//! NOTIFY — RFC 5465 §8:
//! `notify = "NOTIFY" SP (notify-set / "NONE")`,
//! `notify-set = "SET" [SP "STATUS"] SP event-group *(SP event-group)`,
//! `event-group = "(" filter-mailboxes SP events ")"`.

use super::cursor::{Cursor, PResult, fail};
use super::fetch::attr;
use super::mailbox;
use crate::types::{CommandBody, NotifyEvent, NotifyFilter, NotifyGroup, NotifySet};

pub(super) fn notify(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sep("NOTIFY NONE or SET")?;
    if c.eat_keyword("NONE") {
        c.end()?;
        return Ok(CommandBody::Notify(None));
    }
    if !c.eat_keyword("SET") {
        return fail("Expected NOTIFY NONE or NOTIFY SET");
    }
    c.sep("event group")?;
    let status = c.eat_keyword("STATUS");
    if status {
        c.sep("event group")?;
    }
    let mut groups = Vec::new();
    loop {
        groups.push(group(c)?);
        if c.at_end() {
            break;
        }
        c.sep("event group")?;
    }
    Ok(CommandBody::Notify(Some(NotifySet { status, groups })))
}

fn group(c: &mut Cursor<'_>) -> PResult<NotifyGroup> {
    c.expect(b'(', "Invalid event group")?;
    let filter = filter(c)?;
    c.sep("events")?;
    let events = if c.eat_keyword("NONE") {
        Vec::new()
    } else {
        events(c)?
    };
    c.expect(b')', "Expected ')' after the events")?;
    Ok(NotifyGroup { filter, events })
}

fn filter(c: &mut Cursor<'_>) -> PResult<NotifyFilter> {
    let word = c.word();
    Ok(match word.as_str() {
        "SELECTED" => NotifyFilter::Selected,
        "SELECTED-DELAYED" => NotifyFilter::SelectedDelayed,
        "INBOXES" => NotifyFilter::Inboxes,
        "PERSONAL" => NotifyFilter::Personal,
        "SUBSCRIBED" => NotifyFilter::Subscribed,
        "SUBTREE" => {
            c.sep("mailboxes")?;
            NotifyFilter::Subtree(mailboxes(c)?)
        }
        "MAILBOXES" => {
            c.sep("mailboxes")?;
            NotifyFilter::Mailboxes(mailboxes(c)?)
        }
        _ => return fail("Invalid NOTIFY filter"),
    })
}

/// `one-or-more-mailbox = mailbox / "(" mailbox *(SP mailbox) ")"`.
fn mailboxes(c: &mut Cursor<'_>) -> PResult<Vec<String>> {
    if !c.eat(b'(') {
        return Ok(vec![mailbox(c, "mailbox name")?]);
    }
    let mut names = vec![mailbox(c, "mailbox name")?];
    while !c.eat(b')') {
        c.expect(b' ', "Expected ')' after the mailboxes")?;
        names.push(mailbox(c, "mailbox name")?);
    }
    Ok(names)
}

fn events(c: &mut Cursor<'_>) -> PResult<Vec<NotifyEvent>> {
    c.expect(b'(', "Invalid events")?;
    let mut events = Vec::new();
    loop {
        let name = c.required_atom("event")?;
        let event = match name.to_ascii_uppercase().as_str() {
            "MESSAGENEW" => {
                let mut items = Vec::new();
                if c.peek() == Some(b' ') && c.peek_at(1) == Some(b'(') {
                    c.sep("fetch attributes")?;
                    c.expect(b'(', "Invalid fetch attributes")?;
                    loop {
                        items.push(attr(c)?);
                        if c.eat(b')') {
                            break;
                        }
                        c.expect(b' ', "Expected ')' after fetch attributes")?;
                    }
                }
                NotifyEvent::MessageNew(items)
            }
            "MESSAGEEXPUNGE" => NotifyEvent::MessageExpunge,
            "FLAGCHANGE" => NotifyEvent::FlagChange,
            "MAILBOXNAME" => NotifyEvent::MailboxName,
            "SUBSCRIPTIONCHANGE" => NotifyEvent::SubscriptionChange,
            _ => NotifyEvent::Other(name),
        };
        events.push(event);
        if c.eat(b')') {
            return Ok(events);
        }
        c.expect(b' ', "Expected ')' after the events")?;
    }
}
