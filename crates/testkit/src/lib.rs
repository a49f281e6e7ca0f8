//! casella-testkit: what protocol tests need to drive a real server.
//!
//! [`TestServer`] runs the `casella` binary on ephemeral loopback ports in its own
//! temporary data directory; [`LineClient`] sends exact bytes and reads replies, over
//! cleartext, implicit TLS or after STARTTLS, trusting the server's own certificate.
//! Everything here is blocking std I/O with timeouts, so a broken server fails a
//! test instead of hanging it.

mod client;
pub mod clients;
pub mod doveadm;
pub mod imap_inbox;
pub mod mbsync;
pub mod postgres;
mod server;

pub use client::LineClient;
pub use server::{ServerBuilder, TestServer};
