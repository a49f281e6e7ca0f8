//! Idle SMTP connections kept for the next message to the same destination —
//! Postfix's connection cache (`smtp_connection_cache_time_limit`,
//! `smtp_connection_reuse_time_limit`). Without it every message costs a TCP
//! connect, EHLO, STARTTLS with a full handshake and AUTH.
//!
//! Bounds: a connection waits at most [`IDLE`] for its next message, serves at
//! most [`MAX_USES`] transactions and lives at most [`MAX_AGE`]; at most
//! [`MAX_IDLE_PER_DESTINATION`] wait per destination. A connection is kept only
//! after a transaction that ended cleanly (`SmtpClient::is_reusable`), and is
//! checked with RSET before it is used again.
//!
//! Must not: do I/O under its lock. What leaves the cache is returned to the
//! caller, who says QUIT.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::client::{ClientOptions, ClientTls, SmtpClient};

/// How long a connection waits for the next message (Postfix: 2 s).
pub const IDLE: Duration = Duration::from_secs(2);
/// How long one connection may be used (Postfix: 300 s).
pub const MAX_AGE: Duration = Duration::from_secs(300);
/// Transactions per connection: some servers limit them, and a few hundred is
/// plenty to amortize the handshake.
pub const MAX_USES: u32 = 100;
/// Idle connections kept per destination (the runner attempts at most
/// `PARALLEL` entries at once).
pub const MAX_IDLE_PER_DESTINATION: usize = crate::PARALLEL;

/// A destination: the address, the name it was verified as, and how we log in
/// and protect the session — a connection serves only exactly that again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    addr: SocketAddr,
    host: String,
    tls: &'static str,
    auth_user: Option<String>,
}

impl Destination {
    pub fn new(addr: SocketAddr, host: &str, options: &ClientOptions) -> Destination {
        Destination {
            addr,
            host: host.to_ascii_lowercase(),
            tls: match options.tls {
                ClientTls::Off => "off",
                ClientTls::Opportunistic(_) => "opportunistic",
                ClientTls::Required(_) => "required",
                ClientTls::Implicit(_) => "implicit",
            },
            auth_user: options.auth.as_ref().map(|(u, _)| u.clone()),
        }
    }
}

/// A connection and its history.
pub struct Pooled {
    pub client: SmtpClient,
    /// When it was opened.
    pub opened: Instant,
    /// Transactions it carried.
    pub uses: u32,
}

struct Idle {
    conn: Pooled,
    since: Instant,
}

#[derive(Default)]
pub struct ConnectionCache {
    idle: Mutex<HashMap<Destination, Vec<Idle>>>,
}

impl ConnectionCache {
    /// The most recently returned live connection to `to`, if any; expired ones
    /// found on the way are handed back in `expired` for QUIT.
    pub fn take(&self, to: &Destination, expired: &mut Vec<SmtpClient>) -> Option<Pooled> {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(to)?;
        let mut found = None;
        while let Some(i) = list.pop() {
            if fresh(&i, now) {
                found = Some(i.conn);
                break;
            }
            expired.push(i.conn.client);
        }
        if list.is_empty() {
            idle.remove(to);
        }
        found
    }

    /// Keeps `conn` for the next message to `to`, or hands it back when it may
    /// not be kept (then the caller says QUIT).
    pub fn put(&self, to: Destination, conn: Pooled) -> Option<SmtpClient> {
        let now = Instant::now();
        if !conn.client.is_reusable()
            || conn.uses >= MAX_USES
            || now.duration_since(conn.opened) >= MAX_AGE
        {
            return Some(conn.client);
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(to).or_default();
        if list.len() >= MAX_IDLE_PER_DESTINATION {
            return Some(conn.client);
        }
        list.push(Idle { conn, since: now });
        None
    }

    /// Takes out every connection that waited too long (for QUIT).
    pub fn expire(&self) -> Vec<SmtpClient> {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        for list in idle.values_mut() {
            let (keep, gone): (Vec<Idle>, Vec<Idle>) = std::mem::take(list)
                .into_iter()
                .partition(|i| fresh(i, now));
            *list = keep;
            out.extend(gone.into_iter().map(|i| i.conn.client));
        }
        idle.retain(|_, l| !l.is_empty());
        out
    }

    /// Takes out every connection (shutdown).
    pub fn drain(&self) -> Vec<SmtpClient> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.drain()
            .flat_map(|(_, l)| l.into_iter().map(|i| i.conn.client))
            .collect()
    }
}

fn fresh(i: &Idle, now: Instant) -> bool {
    now.duration_since(i.since) < IDLE && now.duration_since(i.conn.opened) < MAX_AGE
}
