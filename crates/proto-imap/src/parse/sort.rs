//! SORT and THREAD — RFC 5256 §3 (sort keys DISPLAYFROM/DISPLAYTO: RFC 5957 §3;
//! RETURN options on SORT: ESORT, RFC 5267 §3).
//!
//! ```text
//! sort            = ["UID" SP] "SORT" [search-return-opts] SP sort-criteria SP search-criteria
//! sort-criteria   = "(" sort-criterion *(SP sort-criterion) ")"
//! sort-criterion  = ["REVERSE" SP] sort-key
//! thread          = ["UID" SP] "THREAD" SP thread-alg SP search-criteria
//! search-criteria = charset 1*(SP search-key)
//! ```

use super::cursor::{Cursor, PResult, fail, show};
use super::search::{program, return_options};
use crate::types::{CommandBody, SortCriterion, SortKey, ThreadAlgorithm};

/// After the SORT keyword.
pub(super) fn sort(c: &mut Cursor<'_>, uid: bool) -> PResult<CommandBody> {
    c.sep("sort criteria")?;
    let mut returns = None;
    if c.eat_keyword("RETURN") {
        c.sep("sort return options")?;
        returns = Some(return_options(c)?);
        c.sep("sort criteria")?;
    }
    let keys = criteria(c)?;
    c.sep("charset")?;
    let charset = c.astring_text("charset")?;
    c.sep("search criteria")?;
    let criteria = program(c, Some(&charset))?;
    Ok(CommandBody::Sort {
        uid,
        returns,
        keys,
        charset,
        criteria,
    })
}

/// After the THREAD keyword.
pub(super) fn thread(c: &mut Cursor<'_>, uid: bool) -> PResult<CommandBody> {
    c.sep("threading algorithm")?;
    let name = c.word();
    let algorithm = match name.as_str() {
        "ORDEREDSUBJECT" => ThreadAlgorithm::OrderedSubject,
        "REFERENCES" => ThreadAlgorithm::References,
        "" => return fail("Missing threading algorithm"),
        _ => {
            return fail(format!(
                "Unknown threading algorithm {}",
                show(name.as_bytes())
            ));
        }
    };
    c.sep("charset")?;
    let charset = c.astring_text("charset")?;
    c.sep("search criteria")?;
    let criteria = program(c, Some(&charset))?;
    Ok(CommandBody::Thread {
        uid,
        algorithm,
        charset,
        criteria,
    })
}

/// `sort-criteria`.
fn criteria(c: &mut Cursor<'_>) -> PResult<Vec<SortCriterion>> {
    c.expect(b'(', "Expected '(' before sort criteria")?;
    let mut out = Vec::new();
    loop {
        let mut name = c.word();
        let reverse = name == "REVERSE";
        if reverse {
            c.sep("sort key")?;
            name = c.word();
        }
        let key = match name.as_str() {
            "ARRIVAL" => SortKey::Arrival,
            "CC" => SortKey::Cc,
            "DATE" => SortKey::Date,
            "FROM" => SortKey::From,
            "SIZE" => SortKey::Size,
            "SUBJECT" => SortKey::Subject,
            "TO" => SortKey::To,
            "DISPLAYFROM" => SortKey::DisplayFrom,
            "DISPLAYTO" => SortKey::DisplayTo,
            "" => return fail("Missing sort key"),
            _ => return fail(format!("Unknown sort key {}", show(name.as_bytes()))),
        };
        out.push(SortCriterion { reverse, key });
        if c.eat(b')') {
            return Ok(out);
        }
        c.expect(b' ', "Expected ')' after sort criteria")?;
    }
}
