//! The three messages of a fresh INBOX that the IMAP client tests deliver and that
//! `imap_check.py`'s session expects, shared by every test that runs that session.

/// The three messages of a fresh INBOX: distinct senders, subjects and Date: days
/// (1, 2, 3 June 2025), the first two small, the third over 1000 bytes (LARGER), and
/// a line starting with a dot.
pub const MSG1: &[u8] = b"From: Alice <a@remote.test>\r\n\
To: u@example.org\r\n\
Subject: first message\r\n\
Message-ID: <first@remote.test>\r\n\
Date: Sun, 01 Jun 2025 10:00:00 +0000\r\n\
\r\n\
Hello,\r\n\
.this line starts with a dot\r\n\
end of the first message\r\n";

pub const MSG2: &[u8] = b"From: Bob <b@remote.test>\r\n\
To: u@example.org\r\n\
Subject: second message\r\n\
Message-ID: <second@remote.test>\r\n\
Date: Mon, 02 Jun 2025 11:00:00 +0000\r\n\
\r\n\
The second body.\r\n";

pub fn msg3() -> Vec<u8> {
    let mut m = b"From: Carol <c@remote.test>\r\n\
To: u@example.org\r\n\
Subject: third message\r\n\
Message-ID: <third@remote.test>\r\n\
Date: Tue, 03 Jun 2025 12:00:00 +0000\r\n\
\r\n\
The third body, a long one.\r\n"
        .to_vec();
    for i in 1..=20 {
        m.extend_from_slice(
            format!("line {i:02} of padding, so that this message is over 1000 bytes\r\n")
                .as_bytes(),
        );
    }
    m
}
