//! How the fields SEARCH matches are kept: the decoded header fields (small:
//! addresses, subject, date) in one column, the header and body text (as
//! large as the message) in another, so searches by header read and cache
//! only the first.

use casella_mime::SearchFields;

use crate::{StoreError, StoreResult};

/// The two columns' JSON: the fields without their text, and `[header, body]`.
pub(crate) fn to_columns(mut fields: SearchFields) -> StoreResult<(String, String)> {
    let text = (
        std::mem::take(&mut fields.header_text),
        std::mem::take(&mut fields.body_text),
    );
    Ok((
        serde_json::to_string(&fields).map_err(StoreError::internal)?,
        serde_json::to_string(&text).map_err(StoreError::internal)?,
    ))
}

/// The fields from their column; with the text column, the text too. A
/// header column that still holds text (rows from before the split) keeps it
/// unless the text column says otherwise.
pub(crate) fn from_columns(headers: &str, text: Option<&str>) -> StoreResult<SearchFields> {
    let mut fields: SearchFields = serde_json::from_str(headers).map_err(StoreError::internal)?;
    if let Some(text) = text {
        let (header_text, body_text): (String, String) =
            serde_json::from_str(text).map_err(StoreError::internal)?;
        fields.header_text = header_text;
        fields.body_text = body_text;
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let parsed =
            casella_mime::parse(b"From: a@example.org\r\nSubject: Hi\r\n\r\nthe body\r\n").search;
        let (headers, text) = to_columns(parsed.clone()).unwrap();
        assert!(!headers.contains("the body"));
        let only_headers = from_columns(&headers, None).unwrap();
        assert_eq!(only_headers.subject, "Hi");
        assert!(only_headers.body_text.is_empty());
        assert_eq!(from_columns(&headers, Some(&text)).unwrap(), parsed);
    }
}
