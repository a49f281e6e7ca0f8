//! The IMAP command decoder: any bytes give a command or an error, never a
//! panic; the literal scanner and modified UTF-7 too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = casella_proto_imap::parse_command(data);
    let _ = casella_proto_imap::literal_at_end(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(decoded) = casella_proto_imap::mutf7::decode(text) {
            // Whatever decodes encodes back to something that decodes the same.
            let again = casella_proto_imap::mutf7::encode(&decoded);
            assert_eq!(
                casella_proto_imap::mutf7::decode(&again).ok(),
                Some(decoded)
            );
        }
    }
});
