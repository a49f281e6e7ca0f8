//! SORT ordering — RFC 5256 §3 (sort keys), §2.1–§2.2 (base subject, sent
//! date), RFC 5957 §3 (DISPLAYFROM, DISPLAYTO).
//!
//! Owns: the order of a set of messages under a list of sort criteria.
//! Must not: read storage or write the wire; the keys come from what was parsed
//! at delivery ([`casella_store::SortKeys`]).
//! Rules followed:
//! - Strings compare under i;ascii-casemap (RFC 4790 §9.2): ASCII letters
//!   upper-cased, then octet by octet. Non-ASCII UTF-8 compares by its bytes.
//! - DATE is the sent date in UTC; a message whose Date: is missing or does not
//!   parse sorts by its INTERNALDATE (§2.2).
//! - FROM, TO, CC compare the first address's addr-mailbox; DISPLAYFROM and
//!   DISPLAYTO its display name, or its addr-spec when it has none (RFC 5957).
//!   A message without the field sorts as the empty string.
//! - REVERSE turns one criterion around; messages equal under every criterion
//!   are in ascending sequence order (§3: "sequence number ... tie-breaker").

use std::cmp::Ordering;

use casella_proto_imap::{SortCriterion, SortKey};
use casella_store::SortKeys;

/// What sorting and threading know about one message.
pub struct MessageKeys<'a> {
    /// Message sequence number in the session's view (the final tie-breaker).
    pub seq: u32,
    /// INTERNALDATE, Unix seconds (ARRIVAL; the fallback for DATE).
    pub internal_date: i64,
    /// RFC822.SIZE.
    pub size: u32,
    /// The Date: field, Unix seconds UTC, when it parsed.
    pub sent_date: Option<i64>,
    pub keys: &'a SortKeys,
}

impl MessageKeys<'_> {
    /// RFC 5256 §2.2: the sent date, or INTERNALDATE when there is none.
    pub fn sent(&self) -> i64 {
        self.sent_date.unwrap_or(self.internal_date)
    }
}

/// One message's value under one criterion, ready to compare.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Value {
    Number(i64),
    Text(Vec<u8>),
}

/// i;ascii-casemap: ASCII letters to upper case, everything else as it is.
pub fn ascii_casemap(s: &str) -> Vec<u8> {
    s.bytes().map(|b| b.to_ascii_uppercase()).collect()
}

fn value(m: &MessageKeys<'_>, key: SortKey) -> Value {
    let k = m.keys;
    match key {
        SortKey::Arrival => Value::Number(m.internal_date),
        SortKey::Date => Value::Number(m.sent()),
        SortKey::Size => Value::Number(i64::from(m.size)),
        SortKey::Subject => Value::Text(ascii_casemap(&k.base_subject)),
        SortKey::From => Value::Text(ascii_casemap(&k.from.mailbox)),
        SortKey::To => Value::Text(ascii_casemap(&k.to.mailbox)),
        SortKey::Cc => Value::Text(ascii_casemap(&k.cc.mailbox)),
        SortKey::DisplayFrom => Value::Text(ascii_casemap(&k.from.display)),
        SortKey::DisplayTo => Value::Text(ascii_casemap(&k.to.display)),
    }
}

/// The positions of `messages` in sorted order. Each key is computed once per
/// message, not once per comparison.
pub fn sort_order(messages: &[MessageKeys<'_>], criteria: &[SortCriterion]) -> Vec<usize> {
    let columns: Vec<(bool, Vec<Value>)> = criteria
        .iter()
        .map(|c| {
            (
                c.reverse,
                messages.iter().map(|m| value(m, c.key)).collect(),
            )
        })
        .collect();
    let mut order: Vec<usize> = (0..messages.len()).collect();
    order.sort_by(|&a, &b| {
        for (reverse, values) in &columns {
            let o = values[a].cmp(&values[b]);
            let o = if *reverse { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        messages[a].seq.cmp(&messages[b].seq)
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use casella_store::AddressKey;

    fn keys(subject: &str, from: &str, display: &str) -> SortKeys {
        SortKeys {
            base_subject: subject.into(),
            from: AddressKey {
                mailbox: from.into(),
                display: display.into(),
            },
            ..SortKeys::default()
        }
    }

    fn crit(reverse: bool, key: SortKey) -> SortCriterion {
        SortCriterion { reverse, key }
    }

    /// Messages 1, 2, … with these keys and nothing else to tell them apart.
    fn messages(k: &[SortKeys]) -> Vec<MessageKeys<'_>> {
        k.iter()
            .enumerate()
            .map(|(i, k)| MessageKeys {
                seq: i as u32 + 1,
                internal_date: 0,
                size: 0,
                sent_date: None,
                keys: k,
            })
            .collect()
    }

    #[test]
    fn ascii_casemap_orders_brackets_after_letters() {
        // i;ascii-casemap upper-cases: '[' (0x5B) and '_' (0x5F) come after 'Z'.
        let k: Vec<SortKeys> = ["_", "b", "[xyz]", "A", "", "B (a)"]
            .iter()
            .map(|s| keys(s, "", ""))
            .collect();
        let msgs = messages(&k);
        let order = sort_order(&msgs, &[crit(false, SortKey::Subject)]);
        let seqs: Vec<u32> = order.iter().map(|&i| msgs[i].seq).collect();
        assert_eq!(seqs, vec![5, 4, 2, 6, 3, 1]);
        // REVERSE turns the key around; equal keys stay in sequence order.
        let order = sort_order(&msgs, &[crit(true, SortKey::Subject)]);
        let seqs: Vec<u32> = order.iter().map(|&i| msgs[i].seq).collect();
        assert_eq!(seqs, vec![1, 3, 6, 2, 4, 5]);
    }

    #[test]
    fn date_falls_back_to_internal_date_and_ties_go_by_sequence() {
        let k = SortKeys::default();
        let m = |seq, internal_date, sent_date| MessageKeys {
            seq,
            internal_date,
            size: 10 * seq,
            sent_date,
            keys: &k,
        };
        let msgs = vec![
            m(1, 500, Some(100)),
            m(2, 50, None),
            m(3, 900, Some(100)),
            m(4, 100, None),
        ];
        let seqs = |order: Vec<usize>| order.iter().map(|&i| msgs[i].seq).collect::<Vec<_>>();
        assert_eq!(
            seqs(sort_order(&msgs, &[crit(false, SortKey::Date)])),
            vec![2, 1, 3, 4]
        );
        assert_eq!(
            seqs(sort_order(&msgs, &[crit(true, SortKey::Date)])),
            vec![1, 3, 4, 2]
        );
        assert_eq!(
            seqs(sort_order(
                &msgs,
                &[crit(false, SortKey::Date), crit(true, SortKey::Size)]
            )),
            vec![2, 4, 3, 1]
        );
        assert_eq!(
            seqs(sort_order(&msgs, &[crit(false, SortKey::Arrival)])),
            vec![2, 4, 1, 3]
        );
        assert_eq!(
            seqs(sort_order(&msgs, &[crit(true, SortKey::Size)])),
            vec![4, 3, 2, 1]
        );
    }

    #[test]
    fn address_keys_use_the_mailbox_and_display_keys_the_name() {
        let k = [
            keys("", "user2", "Zed"),
            keys("", "USER1", "alice"),
            keys("", "", ""),
        ];
        let msgs = messages(&k);
        let seqs = |order: Vec<usize>| order.iter().map(|&i| msgs[i].seq).collect::<Vec<_>>();
        assert_eq!(
            seqs(sort_order(&msgs, &[crit(false, SortKey::From)])),
            vec![3, 2, 1]
        );
        assert_eq!(
            seqs(sort_order(&msgs, &[crit(false, SortKey::DisplayFrom)])),
            vec![3, 2, 1]
        );
        assert_eq!(
            seqs(sort_order(&msgs, &[crit(true, SortKey::DisplayFrom)])),
            vec![1, 2, 3]
        );
        // To and Cc are empty for all: sequence order.
        assert_eq!(
            seqs(sort_order(&msgs, &[crit(true, SortKey::Cc)])),
            vec![1, 2, 3]
        );
    }
}
