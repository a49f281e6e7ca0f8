//! The POP3 command decoder: any line gives a command or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = casella_pop3::parse_command(data);
});
