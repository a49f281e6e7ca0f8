//! The queue runner: claims due entries, delivers them hop by hop, records what
//! happened, bounces what failed, and sleeps until the next entry is due.
//!
//! Invariants:
//! - An entry is changed (`queue_update`) or removed (`queue_remove`) only after its
//!   attempt; a crash mid-attempt leaves the claim's lease to run out and the entry
//!   is tried again — at-least-once, as SMTP itself is.
//! - A bounce is delivered before the entry is updated, so a crash between the two
//!   may repeat a bounce but never loses one.
//! - One attempt is bounded well inside the claim's lease, so no other runner (on
//!   another node) claims an entry while this one still works on it.
//! - Nothing but the runner holding the claim rewrites a claimed entry: `queue
//!   retry` changes only the next attempt of unclaimed entries
//!   (`MailStore::queue_retry`), so a retry during a delivery cannot end its claim
//!   and have the message sent twice.
//! - Other processes (the CLI's `queue retry`) and other nodes change the queue in
//!   the store only; the runner asks the store every [`LOOK`] whether something is
//!   due, so their changes take effect within a second.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use casella_net::ShutdownSignal;
use casella_store::{Queued, RecipientState, Store, StoreError, normalize_line_ends, now_unix};
use rustls::ClientConfig;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::client::{
    ClientError, ClientOptions, ClientTls, Envelope, EnvelopeRecipient, RcptOutcome, SmtpClient,
};
use crate::config::{RelayConfig, TlsMode};
use crate::dkim::Signers;
use crate::dsn::{FailedRecipient, build_dsn, wants_failure_notice};
use crate::pool::{ConnectionCache, Destination, Pooled};
use crate::route::{self, DnsResolver, NextHop, Resolve, RouteError, Target};
use crate::seven_bit;

/// How long a claim keeps other runners off an entry (seconds).
pub const LEASE_SECS: i64 = 600;
/// One attempt ends this long before its lease does.
const ATTEMPT_BUDGET: Duration = Duration::from_secs(LEASE_SECS as u64 - 60);
/// Entries attempted at the same time.
pub const PARALLEL: usize = 8;
/// Recipients per mail transaction.
const RCPTS_PER_TRANSACTION: usize = 50;
/// The runner asks the store this often whether an unclaimed entry is due: one
/// indexed read that stops at the first unclaimed entry. This is how `queue retry`
/// (another process) and entries enqueued on other nodes reach a running server
/// within a second, on SQLite as on PostgreSQL, without a wake-up channel
/// between processes that could lose a wake-up.
const LOOK: Duration = Duration::from_secs(1);
/// The runner tries to claim at least this often even when nothing looks due: a
/// claim whose runner died (another node) runs out without anyone being told.
const POLL: Duration = Duration::from_secs(30);

/// One entry's bytes as the next hops may get them.
struct Content<'a> {
    /// As queued (line ends normalized).
    original: &'a [u8],
    /// DKIM-signed when a key signs for the sender, else `original`.
    signed: &'a [u8],
    /// The envelope sender (which key signs).
    sender: &'a str,
}

/// How long a connection from the cache may take to answer RSET.
const RSET_PROBE: Duration = Duration::from_secs(10);

/// The outbound relay.
pub struct Relay {
    inner: Inner,
}

struct Inner {
    store: Arc<dyn Store>,
    config: RelayConfig,
    waker: Arc<Notify>,
    resolver: Arc<dyn Resolve>,
    signers: Signers,
    opportunistic: Arc<ClientConfig>,
    /// The verified TLS configuration for a smarthost that requires TLS, or why
    /// there is none (then its deliveries are deferred).
    smarthost_tls: Option<Result<Arc<ClientConfig>, String>>,
    /// Connections that finished a transaction, for the next message to the
    /// same destination.
    connections: ConnectionCache,
}

impl Relay {
    /// Loads the DKIM keys and TLS roots (problems are logged; see [`crate::dkim`]).
    pub fn new(store: Arc<dyn Store>, config: RelayConfig) -> Relay {
        let signers = Signers::load(&config.dkim);
        let resolver = Arc::new(DnsResolver::with_servers(config.dns_servers.clone()));
        let smarthost_tls = config.smarthost.as_ref().and_then(|s| match s.tls {
            TlsMode::Opportunistic => None,
            TlsMode::Required | TlsMode::Implicit => {
                let r = crate::tls::verified_config(s.ca_file.as_deref());
                if let Err(e) = &r {
                    tracing::error!(error = %e, "smarthost TLS roots not loaded; relaying is deferred");
                }
                Some(r)
            }
        });
        Relay {
            inner: Inner {
                store,
                config,
                waker: Arc::new(Notify::new()),
                resolver,
                signers,
                opportunistic: crate::tls::opportunistic_config(),
                smarthost_tls,
                connections: ConnectionCache::default(),
            },
        }
    }

    /// Replaces DNS (tests, or a caching resolver shared with other parts).
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolve>) -> Relay {
        self.inner.resolver = resolver;
        self
    }

    /// The submission server calls `notify_one()` on this after it enqueued.
    pub fn waker(&self) -> Arc<Notify> {
        self.inner.waker.clone()
    }

    /// Runs until `shutdown`. Up to [`PARALLEL`] entries are attempted at once; a
    /// free slot is filled as soon as it frees, so a slow host never holds up the
    /// rest of the queue. On shutdown, attempts in flight are dropped; their entries
    /// are retried when the claim's lease runs out.
    pub async fn run(self, mut shutdown: ShutdownSignal) {
        let inner = Arc::new(self.inner);
        tracing::info!(
            hostname = %inner.config.hostname,
            smarthost = ?inner.config.smarthost.as_ref().map(|s| format!("{}:{}", s.host, s.port)),
            "outbound relay started"
        );
        // Claims left by an earlier run of this node (a crash) are ours to redo.
        if let Err(e) = inner.store.queue_release_claims().await {
            tracing::error!(error = %e, "releasing old queue claims failed");
        }
        let mut tasks = JoinSet::new();
        // The first round claims whatever is due, as a wake-up does.
        let mut woken = true;
        let mut last_claim = tokio::time::Instant::now();
        loop {
            if shutdown.is_shutting_down() {
                break;
            }
            let free = PARALLEL.saturating_sub(tasks.len());
            if free > 0 {
                let now = now_unix();
                // Claiming is a write; looking is a read. Claim when something
                // is due, when woken, and at least every POLL.
                let due = match inner.store.queue_next_attempt().await {
                    Ok(at) => at.is_some_and(|at| at <= now),
                    Err(e) => {
                        tracing::debug!(error = %e, "looking at the queue failed");
                        true // the claim below tries (and logs) it properly
                    }
                };
                if woken || due || last_claim.elapsed() >= POLL {
                    last_claim = tokio::time::Instant::now();
                    match inner.store.queue_claim(now, LEASE_SECS, free).await {
                        Ok(batch) => {
                            for entry in batch {
                                let inner = inner.clone();
                                tasks.spawn(async move { inner.attempt(entry).await });
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "claiming queue entries failed"),
                    }
                }
            }
            woken = false;
            // Connections that waited too long say QUIT in the background.
            for client in inner.connections.expire() {
                tokio::spawn(client.quit());
            }
            // Until a finished attempt (a free slot), a wake-up from this
            // process's submission service, or the next look at the store.
            tokio::select! {
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = tokio::time::sleep(LOOK) => {}
                _ = inner.waker.notified() => woken = true,
                _ = shutdown.wait() => break,
            }
        }
        tasks.abort_all();
        // Each QUIT is bounded (5 s); all of them together at most 2 s more.
        let mut quits = JoinSet::new();
        for client in inner.connections.drain() {
            quits.spawn(client.quit());
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), quits.join_all()).await;
        tracing::info!("outbound relay stopped");
    }
}

impl Inner {
    /// One delivery attempt of one entry, and its bookkeeping.
    async fn attempt(&self, mut entry: Queued) {
        let id = entry.id;
        let original = match self.store.queue_message(id).await {
            Ok(m) => normalize_line_ends(m),
            Err(StoreError::NotFound(_)) => return, // removed meanwhile (by an admin)
            Err(e) => {
                // Leave the claim to expire; the entry is tried again then.
                tracing::error!(queue_id = id.0, error = %e, "reading a queued message failed");
                return;
            }
        };
        let signed = self.signers.sign(&original, &entry.sender);
        let content = Content {
            original: &original,
            signed: signed.as_deref().unwrap_or(&original),
            sender: &entry.sender,
        };

        // Group the pending recipients by next hop: one connection per hop.
        let mut hops: BTreeMap<NextHop, Vec<usize>> = BTreeMap::new();
        for (i, r) in entry.recipients.iter().enumerate() {
            if r.state == RecipientState::Pending {
                hops.entry(route::next_hop(&self.config, &r.address))
                    .or_default()
                    .push(i);
            }
        }
        let deadline = tokio::time::Instant::now() + ATTEMPT_BUDGET;
        let mut newly_failed = Vec::new();
        let mut first_temporary: Option<String> = None;
        for (hop, indexes) in hops {
            let envelope = Envelope {
                sender: entry.sender.clone(),
                recipients: indexes
                    .iter()
                    .map(|&i| {
                        let r = &entry.recipients[i];
                        EnvelopeRecipient {
                            address: r.address.clone(),
                            orcpt: r.orcpt.clone(),
                            notify: r.notify.clone(),
                        }
                    })
                    .collect(),
                envid: entry.envid.clone(),
                ret: entry.ret.clone(),
            };
            let outcomes = match tokio::time::timeout_at(
                deadline,
                self.deliver_hop(&hop, &envelope, &content),
            )
            .await
            {
                Ok(o) => o,
                Err(_) => {
                    vec![
                        RcptOutcome::Temporary("the delivery attempt took too long".into());
                        indexes.len()
                    ]
                }
            };
            for (&i, outcome) in indexes.iter().zip(outcomes) {
                let r = &mut entry.recipients[i];
                match outcome {
                    RcptOutcome::Delivered(reply) => {
                        tracing::info!(queue_id = id.0, to = %r.address, ?hop, %reply, "delivered");
                        r.state = RecipientState::Delivered;
                        r.last_reply = Some(reply);
                    }
                    RcptOutcome::Permanent(reply) => {
                        tracing::info!(queue_id = id.0, to = %r.address, ?hop, %reply, "bounced");
                        r.state = RecipientState::Failed;
                        r.last_reply = Some(reply);
                        newly_failed.push((i, false));
                    }
                    RcptOutcome::Temporary(reply) => {
                        tracing::info!(queue_id = id.0, to = %r.address, ?hop, %reply, "deferred");
                        first_temporary.get_or_insert_with(|| format!("{}: {reply}", r.address));
                        r.last_reply = Some(reply);
                    }
                }
            }
        }

        // Out of time: what is still pending fails (RFC 5321 §4.5.4.1 give-up time).
        let now = now_unix();
        let expires = if entry.expires > 0 {
            entry.expires
        } else {
            entry.created + self.config.lifetime.as_secs() as i64
        };
        if now >= expires {
            for (i, r) in entry.recipients.iter_mut().enumerate() {
                if r.state == RecipientState::Pending {
                    tracing::info!(queue_id = id.0, to = %r.address, "expired");
                    r.state = RecipientState::Failed;
                    newly_failed.push((i, true));
                }
            }
        }

        self.bounce(&entry, &newly_failed, &original, now).await;

        let pending = entry
            .recipients
            .iter()
            .any(|r| r.state == RecipientState::Pending);
        let result = if pending {
            entry.attempts += 1;
            let delay = self.config.retry_delay(entry.attempts).as_secs() as i64;
            // Never wait past the expiry: the last attempt happens when it comes.
            entry.next_attempt = (now + delay.max(1)).min(expires.max(now + 1));
            entry.last_error = first_temporary;
            self.store.queue_update(&entry).await
        } else {
            self.store.queue_remove(id).await
        };
        match result {
            Ok(()) => {}
            // Only `queue delete` removes a claimed entry (see the invariants).
            Err(StoreError::NotFound(_)) => {
                tracing::info!(queue_id = id.0, "deleted from the queue during its attempt")
            }
            Err(e) => {
                tracing::error!(queue_id = id.0, error = %e, "recording a delivery attempt failed")
            }
        }
    }

    /// Delivers to one next hop: its addresses in order until one takes the
    /// transaction. An outcome per envelope recipient.
    async fn deliver_hop(
        &self,
        hop: &NextHop,
        envelope: &Envelope,
        content: &Content<'_>,
    ) -> Vec<RcptOutcome> {
        let n = envelope.recipients.len();
        let targets = match route::resolve(hop, &self.config, &*self.resolver).await {
            Ok(t) => t,
            Err(RouteError::Permanent(e)) => return vec![RcptOutcome::Permanent(e); n],
            Err(RouteError::Temporary(e)) => return vec![RcptOutcome::Temporary(e); n],
        };
        let options = match self.client_options(hop) {
            Ok(o) => o,
            Err(e) => return vec![RcptOutcome::Temporary(e); n],
        };
        let mut all_permanent = true;
        let mut last_error = String::from("no address to try");
        for target in targets.iter().take(route::MAX_ADDRESSES) {
            match self.session(target, &options, envelope, content).await {
                Ok(outcomes) => return outcomes,
                Err(e) => {
                    tracing::info!(host = %target.host, addr = %target.addr, error = %e, "next hop unusable");
                    all_permanent &= e.is_permanent();
                    last_error = match e {
                        ClientError::Rejected { reply, .. } => reply.to_string(),
                        e => format!("{} [{}]: {e}", target.host, target.addr),
                    };
                }
            }
        }
        // Bounce only when every address refused us with a 5xx.
        let outcome = if all_permanent && !targets.is_empty() {
            RcptOutcome::Permanent(last_error)
        } else {
            RcptOutcome::Temporary(last_error)
        };
        vec![outcome; n]
    }

    /// One connection to one address; a failed opportunistic handshake is tried
    /// again in cleartext (RFC 7435 §4: better unencrypted than undelivered).
    async fn session(
        &self,
        target: &Target,
        options: &ClientOptions,
        envelope: &Envelope,
        content: &Content<'_>,
    ) -> Result<Vec<RcptOutcome>, ClientError> {
        let destination = Destination::new(target.addr, &target.host, options);
        let mut conn = match self.reuse(&destination).await {
            Some(c) => c,
            None => Pooled {
                client: self.connect(target, options).await?,
                opened: tokio::time::Instant::now(),
                uses: 0,
            },
        };
        let outcomes = self
            .transactions(target, &mut conn, envelope, content)
            .await;
        if let Some(client) = self.connections.put(destination, conn) {
            client.quit().await;
        }
        Ok(outcomes)
    }

    /// A connection to `destination` that waited in the cache and answers RSET.
    async fn reuse(&self, destination: &Destination) -> Option<Pooled> {
        loop {
            let mut expired = Vec::new();
            let found = self.connections.take(destination, &mut expired);
            for c in expired {
                c.quit().await;
            }
            let mut conn = found?;
            // Bounded apart from the command timeout: a live server answers
            // RSET at once, and a new connection is always an alternative.
            let probe = tokio::time::timeout(RSET_PROBE, conn.client.reset());
            if let Ok(true) = probe.await {
                tracing::debug!(addr = ?destination, uses = conn.uses, "reusing a connection");
                return Some(conn);
            }
            // Closed by the server while it waited: the next, or a new one.
        }
    }

    /// A new connection; a failed opportunistic handshake is tried again in
    /// cleartext (RFC 7435 §4: better unencrypted than undelivered).
    async fn connect(
        &self,
        target: &Target,
        options: &ClientOptions,
    ) -> Result<SmtpClient, ClientError> {
        let client = match SmtpClient::connect(target.addr, &target.host, options).await {
            Ok(c) => c,
            Err(ClientError::Tls(e)) if matches!(options.tls, ClientTls::Opportunistic(_)) => {
                tracing::info!(host = %target.host, error = %e, "TLS failed; retrying in cleartext");
                let cleartext = ClientOptions {
                    tls: ClientTls::Off,
                    ..options.clone()
                };
                SmtpClient::connect(target.addr, &target.host, &cleartext).await?
            }
            Err(e) => return Err(e),
        };
        tracing::debug!(host = %target.host, addr = %target.addr, tls = client.is_tls(), "connected");
        Ok(client)
    }

    /// The entry's transactions on one connection.
    async fn transactions(
        &self,
        target: &Target,
        conn: &mut Pooled,
        envelope: &Envelope,
        content: &Content<'_>,
    ) -> Vec<RcptOutcome> {
        let client = &mut conn.client;
        // RFC 6152 §3: 8-bit content for a server without 8BITMIME is made 7-bit
        // first (and signed after that), or bounced when it cannot be. A server
        // with SMTPUTF8 takes 8-bit content (RFC 6531 §3.1 requires 8BITMIME).
        let caps = client.capabilities();
        let converted;
        let message = if seven_bit::is_8bit(content.original)
            && !caps.eight_bit_mime
            && !caps.smtputf8
        {
            match seven_bit::convert(content.original) {
                Ok(m) => {
                    tracing::info!(host = %target.host, "no 8BITMIME: sending the message converted to 7-bit");
                    converted = self.signers.sign(&m, content.sender).unwrap_or(m);
                    &converted[..]
                }
                Err(seven_bit::Unconvertible(why)) => {
                    let reply = format!(
                        "554 5.6.3 {} does not offer 8BITMIME, and the message cannot be made 7-bit: {why}",
                        target.host
                    );
                    return vec![RcptOutcome::Permanent(reply); envelope.recipients.len()];
                }
            }
        } else {
            content.signed
        };
        // Servers may take as few as 100 recipients per transaction (RFC 5321
        // §4.5.3.1.8); like Postfix, send at most 50 at a time on one connection.
        let mut outcomes = Vec::with_capacity(envelope.recipients.len());
        for chunk in envelope.recipients.chunks(RCPTS_PER_TRANSACTION) {
            let part = Envelope {
                recipients: chunk.to_vec(),
                ..envelope.clone()
            };
            outcomes.extend(client.send(&part, message).await);
            conn.uses += 1;
        }
        outcomes
    }

    fn client_options(&self, hop: &NextHop) -> Result<ClientOptions, String> {
        let mut options = ClientOptions {
            helo_name: self.config.hostname.clone(),
            tls: ClientTls::Opportunistic(self.opportunistic.clone()),
            auth: None,
            connect_timeout: self.config.connect_timeout,
            command_timeout: self.config.command_timeout,
        };
        if let (NextHop::Smarthost, Some(smarthost)) = (hop, &self.config.smarthost) {
            let verified = || match &self.smarthost_tls {
                Some(Ok(c)) => Ok(c.clone()),
                Some(Err(e)) => Err(format!("smarthost TLS: {e}")),
                None => Err("smarthost TLS is not configured".to_string()),
            };
            options.tls = match smarthost.tls {
                TlsMode::Opportunistic => ClientTls::Opportunistic(self.opportunistic.clone()),
                TlsMode::Required => ClientTls::Required(verified()?),
                TlsMode::Implicit => ClientTls::Implicit(verified()?),
            };
            options.auth = smarthost.auth.clone();
        }
        Ok(options)
    }

    /// Sends the sender a bounce for the recipients that failed in this attempt
    /// and asked for one (RFC 3461 §4.1); never for a bounce (empty sender).
    async fn bounce(&self, entry: &Queued, failed: &[(usize, bool)], original: &[u8], now: i64) {
        let report: Vec<FailedRecipient> = failed
            .iter()
            .map(|&(i, expired)| (&entry.recipients[i], expired))
            .filter(|(r, _)| wants_failure_notice(r.notify.as_deref()))
            .map(|(r, expired)| FailedRecipient {
                address: r.address.clone(),
                orcpt: r.orcpt.clone(),
                reply: r.last_reply.clone(),
                expired,
            })
            .collect();
        if report.is_empty() {
            return;
        }
        if entry.sender.is_empty() {
            tracing::info!(
                queue_id = entry.id.0,
                "a bounce failed; no bounce for a bounce"
            );
            return;
        }
        let Some(account) = entry.account else {
            tracing::warn!(queue_id = entry.id.0, sender = %entry.sender,
                "no submitting account to return the bounce to; dropped");
            return;
        };
        let dsn = build_dsn(&self.config.hostname, entry, &report, original, now);
        match self.store.deliver(account, dsn).await {
            Ok(a) => tracing::info!(queue_id = entry.id.0, sender = %entry.sender, uid = a.uid.0,
                recipients = report.len(), "bounce delivered"),
            Err(e) => {
                tracing::error!(queue_id = entry.id.0, error = %e, "delivering a bounce failed")
            }
        }
    }
}
