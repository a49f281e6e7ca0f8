//! QUOTA — RFC 9208: one quota root per account, named `""`, over all its
//! mailboxes, with the STORAGE resource (in units of 1024 octets, §5.1) and
//! the MESSAGE resource (§5.2) where a limit is set (casella.toml `[quota]`,
//! `casella account set ADDRESS quota-receive=… quota-messages=…`: Exchange's
//! ProhibitSendReceiveQuota is the limit of STORAGE). SETQUOTA is the
//! administrator's, so it is refused (QUOTASET is not announced). APPEND and
//! COPY that would pass a limit answer `NO [OVERQUOTA]` (§4.3); MOVE within
//! the account adds nothing, so it is not refused (a full mailbox can still be
//! tidied into Deleted Items).

use casella_directory::quota::QuotaState;

use crate::session::Session;

/// The one quota root's name.
const ROOT: &str = "\"\"";

impl Session {
    /// The account's quota now, or the reply already given when it could not
    /// be read (`Err`).
    async fn quota_now(&mut self, tag: &str) -> Result<Option<QuotaState>, ()> {
        let account = self.account_id();
        match self.shared.directory.quota(account).await {
            Ok(q) => Ok(q),
            Err(e) => {
                let reply = super::store_error(&e);
                self.tagged(tag, &reply);
                Err(())
            }
        }
    }

    /// `* QUOTA "" (STORAGE used limit MESSAGE used limit)` (RFC 9208 §5.1).
    fn quota_line(&mut self, q: &QuotaState) {
        let mut resources = Vec::new();
        if let Some(limit) = q.receive {
            resources.push(format!(
                "STORAGE {} {}",
                q.usage.bytes.div_ceil(1024),
                limit / 1024
            ));
        }
        if let Some(limit) = q.messages {
            resources.push(format!("MESSAGE {} {limit}", q.usage.messages));
        }
        self.line(&format!("* QUOTA {ROOT} ({})", resources.join(" ")));
    }

    /// Whether `q` has a limit IMAP reports (a root exists).
    fn has_root(q: &Option<QuotaState>) -> Option<QuotaState> {
        q.filter(|q| q.receive.is_some() || q.messages.is_some())
    }

    /// GETQUOTAROOT mailbox (RFC 9208 §4.3): the roots of an existing
    /// mailbox and their quotas; none when no limit applies.
    pub(crate) async fn cmd_getquotaroot(&mut self, tag: &str, name: &str) {
        let Some(name) = self.mailbox_arg(tag, name) else {
            return;
        };
        let Some(mb) = self.find_mailbox(tag, &name).await else {
            return;
        };
        let Ok(q) = self.quota_now(tag).await else {
            return;
        };
        let mut out = b"* QUOTAROOT ".to_vec();
        self.encode_name(&mut out, &mb.name);
        let root = Self::has_root(&q);
        if root.is_some() {
            out.extend_from_slice(b" ");
            out.extend_from_slice(ROOT.as_bytes());
        }
        self.out.response(&out);
        if let Some(q) = root {
            self.quota_line(&q);
        }
        self.finish(tag, "OK GETQUOTAROOT completed", true).await;
    }

    /// GETQUOTA root (RFC 9208 §4.2).
    pub(crate) async fn cmd_getquota(&mut self, tag: &str, root: &str) {
        if !root.is_empty() {
            self.tagged(tag, "NO [NONEXISTENT] No such quota root");
            return;
        }
        let Ok(q) = self.quota_now(tag).await else {
            return;
        };
        match Self::has_root(&q) {
            Some(q) => {
                self.quota_line(&q);
                self.finish(tag, "OK GETQUOTA completed", true).await;
            }
            None => self.tagged(tag, "NO [NONEXISTENT] No quota applies to this account"),
        }
    }

    /// SETQUOTA (RFC 9208 §4.1): quotas are the administrator's.
    pub(crate) fn cmd_setquota(&mut self, tag: &str) {
        self.tagged(
            tag,
            "NO [NOPERM] Quotas are set by the administrator (casella account set ... quota-receive=...)",
        );
    }

    /// Refuses with `NO [OVERQUOTA]` (RFC 9208 §4.3) when adding `bytes` in
    /// `messages` would pass the account's limit: `Err` when it refused (or
    /// answered an error); else whether a level applies (then
    /// [`Session::warn_if_over`] after adding).
    pub(crate) async fn check_quota(
        &mut self,
        tag: &str,
        bytes: u64,
        messages: u64,
    ) -> Result<bool, ()> {
        match self.quota_now(tag).await? {
            Some(q) if q.receive_refused(bytes, messages) => {
                self.tagged(
                    tag,
                    "NO [OVERQUOTA] The mailbox is full: delete messages (and empty Deleted Items) first",
                );
                Err(())
            }
            q => Ok(q.is_some()),
        }
    }

    /// After adding mail under a quota: the warning when usage passed its
    /// level (once a week).
    pub(crate) async fn warn_if_over(&mut self) {
        let Ok(account) = self.store().account(self.account_id()).await else {
            return;
        };
        self.shared
            .directory
            .warn_if_over(&account, casella_store::now_unix())
            .await;
    }
}
