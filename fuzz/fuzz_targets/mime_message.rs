//! The MIME path: parsing any message gives a structure whose part offsets lie
//! inside the message, and every retrieval format turns it into a message that
//! parses again.
#![no_main]

use casella_mime::{BodyPart, Presentation, RetrievalFormat};
use libfuzzer_sys::fuzz_target;

fn check(part: &BodyPart, len: u32) {
    let o = part.offsets;
    assert!(o.header_start <= o.body_start && o.body_start <= o.body_end && o.body_end <= len);
    for p in &part.parts {
        check(p, len);
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = casella_mime::parse(data);
    check(&parsed.body, data.len() as u32);
    for format in [
        RetrievalFormat::TextOnly,
        RetrievalFormat::HtmlOnly,
        RetrievalFormat::HtmlAndText,
    ] {
        let p = Presentation {
            format,
            suppress_read_receipt: true,
        };
        if let Some(shown) = p.apply(data, &parsed.body) {
            let again = casella_mime::parse(&shown);
            check(&again.body, shown.len() as u32);
        }
    }
});
