//! The mail transaction: MAIL (RFC 5321 §4.1.1.2), RCPT (§4.1.1.3), DATA
//! (§4.1.1.4), BDAT (RFC 3030), and what happens to an accepted message: local
//! recipients get it in their INBOX at once, remote ones (submission only) through
//! the durable outbound queue. Every reply that accepts a message comes after the
//! store committed it.

use casella_net::{Connection, Next, SessionStream};
use casella_store::{
    Account, Flag, FlagSet, NewMessage, NewQueued, QueueId, QueuedRecipient, RecipientState,
    SpecialUse, StoreError, now_unix,
};

use crate::Mode;
use crate::command::Params;
use crate::data::{DataOutcome, read_data};
use crate::headers;
use crate::params::{MailParams, RcptParams};
use crate::session::{Session, queue_id};

/// The transaction being built by MAIL, RCPT and BDAT.
pub(crate) struct Envelope {
    from: String,
    /// DSN RET and ENVID (RFC 3461 §4.3, §4.4).
    ret: Option<String>,
    envid: Option<String>,
    local: Vec<LocalRecipient>,
    remote: Vec<QueuedRecipient>,
    /// BDAT chunks so far; `None` after a chunk failed (the rest is discarded).
    chunks: Option<Vec<u8>>,
    too_big: bool,
    /// MAIL carried SMTPUTF8 (RFC 6531 §3.4): the trace says UTF8SMTP….
    smtputf8: bool,
}

struct LocalRecipient {
    address: String,
    account: Account,
}

impl Envelope {
    fn recipients(&self) -> usize {
        self.local.len() + self.remote.len()
    }
}

/// Where a recipient goes.
enum Route {
    Local(Box<Account>),
    Remote,
}

impl Session {
    pub(crate) async fn mail(&mut self, from: String, params: Params) {
        if self.helo.is_none() {
            let greet = if self.mode == Mode::Lmtp {
                "LHLO"
            } else {
                "EHLO/HELO"
            };
            self.reply(&format!("503 5.5.1 Send {greet} first"));
            return;
        }
        if self.envelope.is_some() {
            self.reply("503 5.5.1 Nested MAIL command");
            return;
        }
        // RFC 6409 §4.3 / RFC 4954 §6: submission needs a login first.
        if self.mode == Mode::Submission && self.auth.is_none() {
            self.reply("530 5.7.0 Authentication required");
            return;
        }
        let accepted = crate::params::mail_params(
            &params,
            self.mode,
            self.esmtp,
            self.config.max_message_size,
        );
        let MailParams {
            ret,
            envid,
            smtputf8,
        } = match accepted {
            Ok(p) => p,
            Err(reply) => {
                self.reply(&reply);
                return;
            }
        };
        if !from.is_empty() && !from.contains('@') {
            self.reply("553 5.1.7 The sender address must be a full address or <>");
            return;
        }
        if let Some((account, owned)) = &self.auth {
            // The sender is bound to the login (RFC 6409 §8; Exchange's reply).
            if !owns(owned, &from) {
                tracing::warn!(user = %account.address, from = %from, "sender address refused");
                self.reply("553 5.7.1 Sender address rejected: not owned by authenticated user");
                return;
            }
            if !self
                .shared
                .rate
                .allows(account.id, self.config.max_messages_per_hour)
            {
                self.reply("450 4.7.1 Too many messages sent in the last hour; try again later");
                return;
            }
            // Exchange's ProhibitSendQuota: a full mailbox sends nothing
            // (RFC 3463 X.2.2, mailbox full).
            let id = account.id;
            match self.shared.directory.quota(id).await {
                Ok(Some(q)) if q.send_refused() => {
                    self.reply(
                        "552 5.2.2 Mailbox full: your mailbox is over its size limit; \
                         delete messages to send again",
                    );
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "quota lookup failed");
                    self.reply("451 4.3.0 Temporary failure, try again later");
                    return;
                }
            }
        }
        self.envelope = Some(Envelope {
            from,
            ret,
            envid,
            local: Vec::new(),
            remote: Vec::new(),
            chunks: Some(Vec::new()),
            too_big: false,
            smtputf8,
        });
        self.reply("250 2.1.0 Sender OK");
    }

    pub(crate) async fn rcpt(&mut self, to: String, params: Params) {
        let Some(envelope) = self.envelope.as_ref() else {
            self.reply("503 5.5.1 Send MAIL first");
            return;
        };
        let RcptParams { notify, orcpt } = match crate::params::rcpt_params(&params, self.mode) {
            Ok(p) => p,
            Err(reply) => {
                self.reply(&reply);
                return;
            }
        };
        if envelope.recipients() >= self.config.max_recipients {
            self.reply("452 4.5.3 Too many recipients");
            return;
        }
        let route = match self.route(&to).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "recipient lookup failed");
                self.reply("451 4.3.0 Temporary lookup failure, try again later");
                return;
            }
        };
        // Exchange's ProhibitSendReceiveQuota: a full mailbox receives
        // nothing (RFC 3463 X.2.2; permanent, as Exchange and Dovecot answer).
        if let Route::Local(account) = &route {
            match self.shared.directory.quota_of(account).await {
                Ok(Some(q)) if q.receive_refused(1, 1) => {
                    self.reply(&format!("552 5.2.2 <{to}>: Mailbox full"));
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "quota lookup failed");
                    self.reply("451 4.3.0 Temporary lookup failure, try again later");
                    return;
                }
            }
        }
        let Some(envelope) = self.envelope.as_mut() else {
            return;
        };
        match route {
            Route::Local(account) => envelope.local.push(LocalRecipient {
                address: to,
                account: *account,
            }),
            Route::Remote => envelope.remote.push(QueuedRecipient {
                address: to,
                orcpt,
                notify,
                state: RecipientState::Pending,
                last_reply: None,
            }),
        }
        self.reply("250 2.1.5 Recipient OK");
    }

    /// Where a recipient goes, or the refusal already replied (`Ok(None)`).
    async fn route(&mut self, to: &str) -> Result<Option<Route>, StoreError> {
        let store = self.shared.directory.store().clone();
        // RFC 5321 §4.5.1: "postmaster" without a domain reaches our postmaster.
        let (local, domain) = match to.rsplit_once('@') {
            Some((l, d)) => (l.to_string(), d.to_ascii_lowercase()),
            None if to.eq_ignore_ascii_case("postmaster") => {
                for a in store.list_accounts().await? {
                    if a.address.starts_with("postmaster@") {
                        return Ok(Some(Route::Local(Box::new(a))));
                    }
                }
                self.reply("550 5.1.1 <postmaster>: Recipient address rejected: User unknown");
                return Ok(None);
            }
            None => {
                self.reply("501 5.1.3 The recipient address must be a full address");
                return Ok(None);
            }
        };
        if local.is_empty() || domain.is_empty() {
            self.reply("501 5.1.3 The recipient address must be a full address");
            return Ok(None);
        }
        if !store.is_local_domain(&domain).await? {
            // Only an authenticated submitter may relay; never an open relay.
            if self.mode == Mode::Submission && self.auth.is_some() {
                return Ok(Some(Route::Remote));
            }
            self.reply(&format!("550 5.7.1 <{to}>: Relaying denied"));
            return Ok(None);
        }
        if let Some(a) = self
            .shared
            .directory
            .recipient(&format!("{local}@{domain}"))
            .await?
        {
            return Ok(Some(Route::Local(Box::new(a))));
        }
        // Sub-addressing: user+tag@domain reaches user@domain.
        if let Some((base, _)) = local.split_once('+')
            && let Some(a) = self
                .shared
                .directory
                .recipient(&format!("{base}@{domain}"))
                .await?
        {
            return Ok(Some(Route::Local(Box::new(a))));
        }
        self.reply(&format!(
            "550 5.1.1 <{to}>: Recipient address rejected: User unknown"
        ));
        Ok(None)
    }

    fn ready_for_content(&mut self) -> bool {
        match &self.envelope {
            None => {
                self.reply("503 5.5.1 Send MAIL first");
                false
            }
            Some(e) if e.recipients() == 0 => {
                // The transaction ends here; the client starts over with MAIL.
                self.envelope = None;
                self.reply("554 5.5.1 No valid recipients");
                false
            }
            Some(_) => true,
        }
    }

    pub(crate) async fn data<S: SessionStream>(&mut self, conn: &mut Connection<S>) -> Next {
        if !self.ready_for_content() {
            return Next::Continue;
        }
        if self
            .envelope
            .as_ref()
            .is_some_and(|e| e.chunks.as_ref().is_none_or(|c| !c.is_empty()))
        {
            self.reply("503 5.5.1 DATA cannot follow BDAT");
            return Next::Continue;
        }
        self.reply("354 End data with <CR><LF>.<CR><LF>");
        if conn.flush(&mut self.out).await.is_err() {
            return Next::Close;
        }
        let read = tokio::time::timeout(
            // RFC 5321 §4.5.3.2.6: the data block may take longer than a command.
            self.config.timeout * 2,
            read_data(conn.reader(), self.config.max_message_size),
        )
        .await;
        match read {
            Err(_) => {
                self.reply("421 4.4.2 Timeout while reading the message");
                Next::Close
            }
            Ok(Err(_)) => Next::Close,
            Ok(Ok(DataOutcome::TooBig)) => {
                self.envelope = None;
                self.reply("552 5.3.4 Message size exceeds fixed maximum message size");
                Next::Continue
            }
            Ok(Ok(DataOutcome::Complete(body))) => {
                self.accept_message(body).await;
                Next::Continue
            }
        }
    }

    /// BDAT — RFC 3030 §2: the chunk is always read, even when it will be refused.
    pub(crate) async fn bdat<S: SessionStream>(
        &mut self,
        size: u64,
        last: bool,
        conn: &mut Connection<S>,
    ) -> Next {
        let max = self.config.max_message_size as u64;
        // Read (or skip) exactly `size` bytes first: the stream stays in step.
        let mut chunk = Vec::new();
        let keep = self
            .envelope
            .as_ref()
            .is_some_and(|e| e.chunks.is_some() && !e.too_big)
            && self
                .envelope
                .as_ref()
                .and_then(|e| e.chunks.as_ref())
                .map_or(0, |c| c.len() as u64)
                + size
                <= max;
        let read = async {
            // Within the message size when kept, so it fits in a usize.
            if keep {
                conn.read_into(&mut chunk, size as usize).await
            } else {
                conn.discard(size).await
            }
        };
        match tokio::time::timeout(self.config.timeout * 2, read).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Next::Close,
            Err(_) => {
                self.reply("421 4.4.2 Timeout while reading the message");
                return Next::Close;
            }
        }
        if !self.ready_for_content() {
            return Next::Continue;
        }
        let Some(envelope) = self.envelope.as_mut() else {
            return Next::Continue;
        };
        if !keep && envelope.chunks.is_some() {
            envelope.too_big = true;
        }
        if let Some(chunks) = envelope.chunks.as_mut() {
            chunks.extend_from_slice(&chunk);
        }
        if !last {
            if envelope.too_big {
                self.reply("552 5.3.4 Message size exceeds fixed maximum message size");
            } else {
                self.reply(&format!("250 2.0.0 {size} octets received"));
            }
            return Next::Continue;
        }
        if envelope.too_big {
            self.envelope = None;
            self.reply("552 5.3.4 Message size exceeds fixed maximum message size");
            return Next::Continue;
        }
        let body = envelope.chunks.take().unwrap_or_default();
        self.accept_message(body).await;
        Next::Continue
    }

    /// Delivers or queues a complete message and answers for it.
    async fn accept_message(&mut self, mut body: Vec<u8>) {
        let Some(envelope) = self.envelope.take() else {
            return;
        };
        let store = self.shared.directory.store().clone();
        let remote = self.info.remote;
        let id = queue_id();
        let submitter = self.auth.as_ref().map(|(a, _)| a.clone());
        // RFC 5322 §2.1.1 / RFC 5321 §4.5.3.1.6: no line over 998 characters.
        // Submission refuses such a message rather than rewriting it (Postfix
        // folds or re-encodes): the sender's mail program hears of it at once,
        // while a person is still there to act, instead of a bounce later; what
        // the user (or their S/MIME, PGP or DKIM signature) wrote is never
        // altered; and re-encoding would mean rebuilding the MIME structure part
        // by part. Every mail program in use encodes long lines itself
        // (quoted-printable or base64); a refusal meets only broken scripts.
        // Inbound SMTP and LMTP still take what other servers hand over.
        if self.mode == Mode::Submission
            && let Some(line) = headers::first_long_line(&body)
        {
            tracing::info!(protocol = self.protocol_name(), %remote, from = %envelope.from,
                line, "refused: a line longer than 998 characters");
            self.reply(&format!(
                "554 5.6.0 Line {line} of the message is longer than {} characters \
                 (RFC 5322 section 2.1.1); encode it (quoted-printable or base64) and send again",
                headers::MAX_LINE
            ));
            return;
        }
        if let Some((account, owned)) = &self.auth {
            // RFC 6409 §8: the From: header must be ours too, else a spoof.
            match headers::from_addresses(&body) {
                Some(froms) if froms.iter().all(|f| owns(owned, f)) && !froms.is_empty() => {}
                Some(froms) if !froms.is_empty() => {
                    tracing::warn!(user = %account.address, from = ?froms, "From: header refused");
                    self.reply(
                        "553 5.7.1 Sender address rejected: not owned by authenticated user",
                    );
                    return;
                }
                _ => body = headers::prepend(&format!("From: <{}>\r\n", envelope.from), body),
            }
            body = headers::complete_for_submission(body, &self.config.hostname);
        }
        // The copy for the remote recipients goes on the queue in the same
        // store transaction as the local copies: both or neither, so a retry
        // after a failure duplicates nothing.
        let queued = (!envelope.remote.is_empty()).then(|| NewQueued {
            sender: envelope.from.clone(),
            account: submitter.as_ref().map(|a| a.id),
            recipients: envelope.remote.clone(),
            message: headers::with_received(&self.trace(&id, None, envelope.smtputf8), &body),
            envid: envelope.envid.clone(),
            ret: envelope.ret.clone(),
            expires: now_unix() + self.config.queue_lifetime.as_secs() as i64,
        });
        let (all_ok, lmtp_replies, queue_id) = if envelope.local.is_empty() {
            match queued {
                Some(new) => match store.enqueue(new).await {
                    Ok(qid) => (true, Vec::new(), Some(qid)),
                    Err(e) => {
                        tracing::error!(error = %e, "queueing failed");
                        (false, Vec::new(), None)
                    }
                },
                None => (true, Vec::new(), None),
            }
        } else {
            self.deliver_locally(&envelope, &id, &body, queued).await
        };
        if let Some(qid) = queue_id {
            tracing::info!(protocol = self.protocol_name(), %remote, from = %envelope.from,
                recipients = envelope.remote.len(), queue_id = qid.0, id = %id, "queued");
            if let Some(w) = &self.shared.outbound {
                w.notify_one();
            }
        }
        if self.mode == Mode::Lmtp {
            for r in lmtp_replies {
                self.reply(&r);
            }
            return;
        }
        if !all_ok {
            self.reply("451 4.3.0 Temporary delivery failure, try again later");
            return;
        }
        if let Some(account) = &submitter {
            self.shared.rate.record(account.id);
            if account.settings.save_sent_copy {
                self.save_sent_copy(account, &body).await;
            }
        }
        self.reply(&format!("250 2.0.0 Ok: queued as {id}"));
    }

    /// Stores the message for the local recipients: all in one store
    /// transaction, the bytes once (RFC 5321 §4.4: with several recipients
    /// the Received field names none of them), and nothing when it fails, so
    /// the client's retry cannot duplicate anyone's copy. LMTP answers per
    /// recipient (RFC 2033 §4.2): when the one transaction fails, each
    /// recipient is tried alone (nothing was stored), so one recipient's
    /// problem does not hold the others' mail back. `queued`, the copy for
    /// the remote recipients, commits with the local ones. Returns whether
    /// every recipient's copy is stored, the LMTP replies and the queue entry.
    async fn deliver_locally(
        &self,
        envelope: &Envelope,
        id: &str,
        body: &[u8],
        queued: Option<NewQueued>,
    ) -> (bool, Vec<String>, Option<QueueId>) {
        let store = self.shared.directory.store();
        let remote = self.info.remote;
        let for_clause = match envelope.local.as_slice() {
            [only] => Some(only.address.as_str()),
            _ => None,
        };
        let message = headers::with_received(&self.trace(id, for_clause, envelope.smtputf8), body);
        let accounts: Vec<_> = envelope.local.iter().map(|r| r.account.id).collect();
        let mut queue_id = None;
        let outcome = match store.deliver_and_queue(&accounts, message, queued).await {
            Ok(stored) if stored.appended.len() == accounts.len() => {
                queue_id = stored.queued;
                Ok(stored.appended.into_iter().map(Ok).collect::<Vec<_>>())
            }
            Ok(_) => Err(casella_store::StoreError::Internal(
                "delivery answered for fewer recipients".into(),
            )),
            Err(e) => Err(e),
        };
        let results = match outcome {
            Ok(results) => results,
            Err(e) => {
                tracing::error!(protocol = self.protocol_name(), %remote, id = %id,
                    recipients = accounts.len(), error = %e, "delivery failed");
                if self.mode != Mode::Lmtp || accounts.len() == 1 {
                    envelope.local.iter().map(|_| Err(())).collect()
                } else {
                    let mut one_by_one = Vec::with_capacity(accounts.len());
                    for r in &envelope.local {
                        let trace = self.trace(id, Some(&r.address), envelope.smtputf8);
                        let message = headers::with_received(&trace, body);
                        one_by_one.push(store.deliver(r.account.id, message).await.map_err(|e| {
                            tracing::error!(protocol = self.protocol_name(),
                                to = %r.account.address, error = %e, "delivery failed");
                        }));
                    }
                    one_by_one
                }
            }
        };
        let mut all_ok = true;
        let mut replies = Vec::with_capacity(results.len());
        for (r, result) in envelope.local.iter().zip(results) {
            match result {
                Ok(ap) => {
                    tracing::info!(
                        protocol = self.protocol_name(), %remote, from = %envelope.from,
                        to = %r.account.address, uid = ap.uid.0, size = ap.size, id = %id,
                        "delivered"
                    );
                    self.shared
                        .directory
                        .warn_if_over(&r.account, now_unix())
                        .await;
                    replies.push(format!("250 2.0.0 <{}> Delivered as {id}", r.address));
                }
                Err(()) => {
                    all_ok = false;
                    replies.push(format!(
                        "451 4.3.0 <{}> Temporary failure, try again later",
                        r.address
                    ));
                }
            }
        }
        (all_ok, replies, queue_id)
    }

    /// Keeps a copy in Sent Items, read (for clients that do not save their own).
    async fn save_sent_copy(&self, account: &Account, body: &[u8]) {
        let store = self.shared.directory.store();
        let sent = match store.list_mailboxes(account.id).await {
            Ok(boxes) => boxes
                .into_iter()
                .find(|m| m.special_use == Some(SpecialUse::Sent)),
            Err(_) => None,
        };
        let Some(sent) = sent else { return };
        let flags: FlagSet = [Flag::Seen].into_iter().collect();
        let copy = NewMessage {
            raw: body.to_vec(),
            internal_date: None,
            flags,
            binary: false,
        };
        if let Err(e) = store.append(sent.id, copy).await {
            tracing::warn!(error = %e, "saving a copy in Sent Items failed");
        }
    }

    /// The Received: field for this hop (RFC 5321 §4.4); its WITH protocol
    /// type as RFC 3848 registers, or RFC 6531 §3.7.3's UTF8SMTP… / UTF8LMTP…
    /// when MAIL carried SMTPUTF8.
    fn trace(&self, id: &str, recipient: Option<&str>, smtputf8: bool) -> String {
        let with = match (self.mode, self.esmtp, self.tls_active, self.auth.is_some()) {
            (Mode::Lmtp, _, false, _) => "LMTP",
            (Mode::Lmtp, _, true, _) => "LMTPS",
            (_, true, true, true) => "ESMTPSA",
            (_, true, false, true) => "ESMTPA",
            (_, true, true, false) => "ESMTPS",
            (_, true, false, false) => "ESMTP",
            (_, false, true, _) => "SMTPS",
            (_, false, false, _) => "SMTP",
        };
        let utf8;
        let with = match with.strip_prefix('E') {
            // ESMTP… becomes UTF8SMTP…, LMTP… UTF8LMTP…; a session without
            // EHLO/LHLO keeps its type (SMTPUTF8 is an ESMTP parameter).
            Some(rest) if smtputf8 => {
                utf8 = format!("UTF8{rest}");
                utf8.as_str()
            }
            None if smtputf8 && self.mode == Mode::Lmtp => {
                utf8 = format!("UTF8{with}");
                utf8.as_str()
            }
            _ => with,
        };
        let helo = self.helo.as_deref().unwrap_or("unknown");
        let auth = self.auth.as_ref().map(|(a, _)| a.address.as_str());
        headers::received(
            helo,
            self.info.remote.ip(),
            &self.config.hostname,
            with,
            id,
            auth,
            recipient,
        )
    }
}

/// Whether `address` is one of the login's own addresses (case-insensitive).
fn owns(owned: &[String], address: &str) -> bool {
    owned.iter().any(|o| o.eq_ignore_ascii_case(address.trim()))
}
