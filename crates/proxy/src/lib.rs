//! casella-proxy: front ends and back ends (Exchange's Client Access and Mailbox
//! roles).
//!
//! A front end runs the pre-authentication part of IMAP, POP3 and submission
//! itself (TLS, greeting, capabilities, the login with its policy and delays).
//! Right after a successful login the session calls its [`LoginProxy`] hook: the
//! [`Connector`] finds the account's back end (a site of `[sites]`), connects to
//! that back end's internal listener, proves that it knows the cluster secret and
//! hands the authenticated identity over — never the user's password. From then on
//! [`relay`] copies bytes both ways until either side closes.
//!
//! A back end's `*-internal` listener ([`InternalListener`]) accepts only front ends
//! that pass the proof, then starts the protocol's session already logged in
//! ([`Backend::start`]).
//!
//! The internal channel, one line each (CRLF-terminated):
//!
//! ```text
//! B: XCASELLA-CHALLENGE <protocol> <nonce>
//! F: XCASELLA-PROXY <address> <mac> client=<ip:port> tls=yes|no [helo=<name> esmtp=yes|no]
//! B: the protocol's own reply to a successful login, or its refusal (then it closes)
//!    or XCASELLA-REFUSED <text> when the proof is wrong (then it closes)
//! ```
//!
//! `<nonce>` is 32 fresh random bytes per connection (hex); `<mac>` is the hex
//! HMAC-SHA256, keyed with the cluster secret, of `casella-proxy-v1`, protocol,
//! nonce, address and the parameters after the MAC, separated by NUL bytes. A
//! captured exchange is useless on any other connection (another nonce), for
//! another account or protocol, or with altered parameters.
//!
//! Owns: the internal channel's syntax and proof, choosing and connecting to a
//! back end, relaying.
//! Must not: check passwords or parse any mail protocol beyond the one line the
//! back end answers a hand-over with; the secret never reaches a log.
//! Invariant: a back end starts a session only for a proof made with its own
//! nonce; a front end relays only after the back end's reply.

mod connect;
mod internal;
mod proof;
mod relay;
mod secret;
mod session;

pub use connect::{BoxFuture, Connector, LoginProxy, ProxyError, Site, Upstream};
pub use internal::{Backend, InternalListener};
pub use proof::{Handover, ProofError, challenge_line, new_nonce, proof_line, verify_proof};
pub use relay::relay;
pub use secret::{ClusterSecret, SecretError};
pub use session::drive_then_relay;

/// What the fuzz targets reach that the API does not offer (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use crate::proof::parse_challenge;
}
