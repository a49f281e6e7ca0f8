//! Storage quotas with Exchange's three levels (IssueWarningQuota,
//! ProhibitSendQuota, ProhibitSendReceiveQuota) and a message count limit:
//! the server's levels (casella.toml `[quota]`), an account's own
//! (`casella account set ADDRESS quota-send=2GB`), and the account's usage
//! as the store keeps it. Recoverable items do not count, as in Exchange
//! (they have their own quota there).

use casella_store::{Account, QuotaLimits, StoreResult, Usage};

use crate::Directory;

/// A size as people write it: `2GB`, `500 MB`, `100KiB`, `1048576`; `0`,
/// `none` or `unlimited` for no limit (`Some(0)`).
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim().to_ascii_lowercase().replace(' ', "");
    if v == "none" || v == "unlimited" {
        return Some(0);
    }
    let split = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let unit = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1u64,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    let n: f64 = num.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let bytes = n * unit as f64;
    (bytes < u64::MAX as f64).then_some(bytes.round() as u64)
}

/// A limit: `2 GB`, `500 MB`, `12 KB`, `900 B` (binary units), or
/// `unlimited` for 0.
pub fn format_size(bytes: u64) -> String {
    if bytes == 0 {
        return "unlimited".to_string();
    }
    format_bytes(bytes)
}

/// An amount: `2 GB`, `1.5 MB`, `0 B`.
pub fn format_bytes(bytes: u64) -> String {
    for (unit, name) in [
        (1u64 << 40, "TB"),
        (1 << 30, "GB"),
        (1 << 20, "MB"),
        (1 << 10, "KB"),
    ] {
        if bytes >= unit {
            let n = bytes as f64 / unit as f64;
            return if n.fract() == 0.0 {
                format!("{n:.0} {name}")
            } else {
                format!("{n:.1} {name}")
            };
        }
    }
    format!("{bytes} B")
}

/// An account's quota: its levels in force and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaState {
    pub usage: Usage,
    /// Each level in force, `None` for none.
    pub warning: Option<u64>,
    pub send: Option<u64>,
    pub receive: Option<u64>,
    pub messages: Option<u64>,
}

impl QuotaState {
    /// The levels in force for `account` over the server's `defaults`.
    pub fn new(account: &Account, defaults: &QuotaLimits, usage: Usage) -> QuotaState {
        let own = &account.settings.quota;
        let pick =
            |own: Option<u64>, default: Option<u64>| own.or(default).filter(|&limit| limit > 0);
        QuotaState {
            usage,
            warning: pick(own.warning, defaults.warning),
            send: pick(own.send, defaults.send),
            receive: pick(own.receive, defaults.receive),
            messages: pick(own.messages, defaults.messages),
        }
    }

    /// Whether any level applies (else there is nothing to check).
    pub fn limited(account: &Account, defaults: &QuotaLimits) -> bool {
        let s = QuotaState::new(account, defaults, Usage::default());
        s.warning.is_some() || s.send.is_some() || s.receive.is_some() || s.messages.is_some()
    }

    /// Whether sending is refused (ProhibitSendQuota, or the
    /// ProhibitSendReceiveQuota above it, reached).
    pub fn send_refused(&self) -> bool {
        let at = |limit: Option<u64>| limit.is_some_and(|l| self.usage.bytes >= l);
        at(self.send) || at(self.receive)
    }

    /// Whether adding `bytes` in `messages` more would pass
    /// ProhibitSendReceiveQuota or the message limit.
    pub fn receive_refused(&self, bytes: u64, messages: u64) -> bool {
        self.receive
            .is_some_and(|l| self.usage.bytes.saturating_add(bytes) > l)
            || self
                .messages
                .is_some_and(|l| self.usage.messages.saturating_add(messages) > l)
    }

    /// Whether usage is at or past IssueWarningQuota.
    pub fn warn(&self) -> bool {
        self.warning.is_some_and(|l| self.usage.bytes >= l)
    }
}

/// How often the warning comes again while usage stays above the level.
pub const WARN_AGAIN: i64 = 7 * 86_400;

impl Directory {
    /// The server's quota levels (casella.toml `[quota]`).
    pub fn set_quota_defaults(&self, limits: QuotaLimits) {
        *self
            .quota_defaults
            .write()
            .unwrap_or_else(|p| p.into_inner()) = limits;
    }

    pub fn quota_defaults(&self) -> QuotaLimits {
        *self
            .quota_defaults
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The account's quota now (its levels read fresh, so a change applies to
    /// sessions already open); `None` when no level applies to it.
    pub async fn quota(
        &self,
        account: casella_store::AccountId,
    ) -> StoreResult<Option<QuotaState>> {
        let account = self.store().account(account).await?;
        self.quota_of(&account).await
    }

    /// As [`Directory::quota`] for an account just read: its usage is read
    /// only when a level applies.
    pub async fn quota_of(&self, account: &Account) -> StoreResult<Option<QuotaState>> {
        let defaults = self.quota_defaults();
        if !QuotaState::limited(account, &defaults) {
            return Ok(None);
        }
        let usage = self.store().usage(account.id).await?;
        Ok(Some(QuotaState::new(account, &defaults, usage)))
    }

    /// After mail reached `account` (as read before): when usage has passed
    /// IssueWarningQuota, delivers the warning to its INBOX — once, and again
    /// a week later if usage is still above it. Failures are logged, never
    /// passed on (the mail is in).
    pub async fn warn_if_over(&self, account: &Account, now: i64) {
        if let Err(e) = self.try_warn(account, now).await {
            tracing::warn!(error = %e, "quota warning not delivered");
        }
    }

    async fn try_warn(&self, account: &Account, now: i64) -> StoreResult<()> {
        let Some(state) = self.quota_of(account).await? else {
            return Ok(());
        };
        if !state.warn() {
            return Ok(());
        }
        let store = self.store();
        let mut account = store.account(account.id).await?;
        if account
            .settings
            .quota_warned_at
            .is_some_and(|at| now.saturating_sub(at) < WARN_AGAIN)
        {
            return Ok(());
        }
        // Recorded first: two deliveries at once warn once (the later
        // update fails on the revision and warns no more).
        account.settings.quota_warned_at = Some(now);
        store.update_account(&account).await?;
        let message = warning_message(&account.address, &state, now);
        store.deliver(account.id, message).await?;
        tracing::info!(user = %account.address, "quota warning delivered");
        Ok(())
    }
}

/// The warning, as Exchange words it, to the account's INBOX.
fn warning_message(address: &str, state: &QuotaState, now: i64) -> Vec<u8> {
    let limit = |l: Option<u64>| l.map_or_else(|| "none".to_string(), format_size);
    format!(
        "From: Mail System <postmaster@{domain}>\r\n\
         To: <{address}>\r\n\
         Subject: Your mailbox is almost full\r\n\
         Date: {date}\r\n\
         Auto-Submitted: auto-generated\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Your mailbox is almost full.\r\n\
         \r\n\
         It holds {used} in {count} messages; the warning level is {warning}.\r\n\
         At {send} you will no longer be able to send mail, and at {receive}\r\n\
         you will no longer receive any.\r\n\
         \r\n\
         Delete messages you do not need, and empty Deleted Items.\r\n",
        domain = address.rsplit_once('@').map_or("localhost", |(_, d)| d),
        date = casella_mime::format_rfc5322_date(now),
        used = format_bytes(state.usage.bytes),
        count = state.usage.messages,
        warning = limit(state.warning),
        send = limit(state.send),
        receive = limit(state.receive),
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use casella_store::{AccountId, AccountSettings};

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2GB"), Some(2 << 30));
        assert_eq!(parse_size("1.5 MB"), Some(1_572_864));
        assert_eq!(parse_size("100KiB"), Some(102_400));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("unlimited"), Some(0));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(format_size(2 << 30), "2 GB");
        assert_eq!(format_size(1_572_864), "1.5 MB");
        assert_eq!(format_size(0), "unlimited");
        assert_eq!(format_size(900), "900 B");
        assert_eq!(format_bytes(0), "0 B");
    }

    #[test]
    fn levels_and_overrides() {
        let mut a = Account {
            id: AccountId(1),
            address: "a@example.org".into(),
            password_hash: String::new(),
            is_admin: false,
            pop_enabled: true,
            imap_enabled: true,
            submission_enabled: true,
            settings: AccountSettings::default(),
        };
        let defaults = QuotaLimits {
            warning: Some(900),
            send: Some(1000),
            receive: Some(1200),
            messages: None,
        };
        let usage = Usage {
            bytes: 1000,
            messages: 3,
        };
        let s = QuotaState::new(&a, &defaults, usage);
        assert!(s.warn() && s.send_refused());
        assert!(!s.receive_refused(200, 1));
        assert!(s.receive_refused(201, 1));
        a.settings.quota.send = Some(0);
        a.settings.quota.messages = Some(3);
        let s = QuotaState::new(&a, &defaults, usage);
        assert!(!s.send_refused(), "the account's own: unlimited");
        assert!(s.receive_refused(0, 1), "the message limit");
        assert!(QuotaState::limited(&a, &QuotaLimits::default()));
        a.settings.quota = QuotaLimits::default();
        assert!(!QuotaState::limited(&a, &QuotaLimits::default()));
    }
}
