//! casella-relay: the outbound relay — mail that authenticated users submit for
//! other domains leaves through here.
//!
//! Owns: the queue runner ([`Relay`]), our SMTP client ([`client`]), next-hop
//! resolution (smarthost, static routes, MX — [`route`]), bounces ([`dsn`]), DKIM
//! signing ([`dkim`]), 7-bit conversion ([`seven_bit`]) and the connection cache
//! (`pool`).
//! Must not: accept mail (that is casella-smtp), or touch the queue other than
//! through the store's queue methods.
//! Invariants:
//! - A queue entry is updated or removed only after its attempt, so a crash
//!   retries rather than loses (at-least-once delivery, as SMTP is).
//! - Credentials go only over TLS; a smarthost that requires TLS never gets
//!   cleartext mail.
//! - A bounce (empty sender) never causes a bounce.
//!
//! RFCs: 5321 (SMTP, §5.1 MX), 3207 (STARTTLS), 4954 + 4616 (AUTH PLAIN), 1870
//! (SIZE), 6152 (8BITMIME), 6531 (SMTPUTF8), 3461/3464/3463/6522 (DSN), 7505 (null
//! MX), 6376 + 8463 (DKIM), 7435 (opportunistic TLS), 8314 (implicit TLS).

pub mod client;
pub mod config;
pub mod dkim;
pub mod dsn;
mod pool;
pub mod reply;
pub mod route;
mod runner;
pub mod seven_bit;
pub mod tls;

#[cfg(test)]
mod sink;
#[cfg(test)]
mod tests;

pub use config::{DkimKey, RelayConfig, Smarthost, TlsMode};
pub use runner::{LEASE_SECS, PARALLEL, Relay};
