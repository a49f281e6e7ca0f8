//! casella-proto-imap: IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501) on the wire,
//! without I/O.
//!
//! Owns: the typed command AST ([`types`]), the command parser ([`parse`]), the
//! framing of a command into its line and literal pieces ([`frame`]), modified
//! UTF-7 mailbox names ([`mutf7`]), and the encoding of server data that needs care:
//! strings, ENVELOPE, BODY/BODYSTRUCTURE and body sections ([`encode`],
//! [`section`]).
//! Must not: do I/O or know about the store. Invariant: the parser never panics and
//! never allocates more than the input it was given.

pub mod encode;
pub mod frame;
pub mod mutf7;
pub mod names;
pub mod parse;
pub mod section;
pub mod types;

pub use frame::{LiteralSpec, literal_at_end};
pub use parse::{ParseError, parse_command, parse_imap_url};
pub use types::*;
