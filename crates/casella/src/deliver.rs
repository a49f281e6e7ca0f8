//! `casella deliver --to ADDRESS < message` — local delivery for an MTA, with
//! sendmail's exit codes (sysexits.h) so the MTA knows to bounce or retry.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use casella_directory::Directory;

use crate::config;

/// sysexits.h EX_NOUSER: the MTA bounces.
const EX_NOUSER: u8 = 67;
/// sysexits.h EX_TEMPFAIL: the MTA retries later.
const EX_TEMPFAIL: u8 = 75;
/// sysexits.h EX_CANTCREAT, as dovecot-lda answers a full mailbox: the MTA
/// bounces (5.2.2, mailbox full).
const EX_CANTCREAT: u8 = 73;

pub async fn run(data: &Path, to: &str) -> anyhow::Result<ExitCode> {
    let store = match config::open_store(data).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("casella deliver: {e:#}");
            return Ok(ExitCode::from(EX_TEMPFAIL));
        }
    };
    let mut raw = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut raw) {
        eprintln!("casella deliver: reading the message: {e}");
        return Ok(ExitCode::from(EX_TEMPFAIL));
    }
    let directory = Directory::new(store.clone());
    match config::load_or_create(data).and_then(|c| c.quota.limits()) {
        Ok(limits) => directory.set_quota_defaults(limits),
        Err(e) => {
            eprintln!("casella deliver: {e:#}");
            return Ok(ExitCode::from(EX_TEMPFAIL));
        }
    }
    let mut account = directory.recipient(to).await;
    if let Ok(None) = account
        && let Some((local, domain)) = to.rsplit_once('@')
        && let Some((base, _)) = local.split_once('+')
    {
        account = directory.recipient(&format!("{base}@{domain}")).await;
    }
    let account = match account {
        Ok(Some(a)) => a,
        Ok(None) => {
            eprintln!("casella deliver: {to}: no such user");
            return Ok(ExitCode::from(EX_NOUSER));
        }
        Err(e) => {
            eprintln!("casella deliver: {e}");
            return Ok(ExitCode::from(EX_TEMPFAIL));
        }
    };
    match directory.quota_of(&account).await {
        Ok(Some(q)) if q.receive_refused(raw.len() as u64, 1) => {
            eprintln!("casella deliver: {to}: 5.2.2 mailbox full");
            return Ok(ExitCode::from(EX_CANTCREAT));
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!("casella deliver: {e}");
            return Ok(ExitCode::from(EX_TEMPFAIL));
        }
    }
    match store.deliver(account.id, raw).await {
        Ok(ap) => {
            tracing::info!(to = %account.address, uid = ap.uid.0, size = ap.size, "delivered");
            directory
                .warn_if_over(&account, casella_store::now_unix())
                .await;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("casella deliver: {e}");
            Ok(ExitCode::from(EX_TEMPFAIL))
        }
    }
}
