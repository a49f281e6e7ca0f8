//! Dates in RFC 5322 §3.3 form, for Received: headers.

pub use casella_mime::format_rfc5322_date as rfc5322_date;
