//! `casella account …`

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, bail};
use casella_directory::{Secret, hash_password};

use casella_store::{Account, NewAccount, StoreError};

use crate::cli::{AccountCommand, AliasCommand};
use crate::config;

fn read_password(password_stdin: bool) -> anyhow::Result<Secret<String>> {
    if !password_stdin {
        bail!("give the password on standard input with --password-stdin");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password")?;
    let pw = line.trim_end_matches(['\r', '\n']).to_string();
    if pw.is_empty() {
        bail!("the password is empty");
    }
    Ok(Secret::new(pw))
}

fn valid_address(address: &str) -> anyhow::Result<String> {
    casella_directory::options::new_address(address).map_err(|e| anyhow::anyhow!("{e}"))
}

/// `backend=SITE` (a site of the front ends' `[sites]`), or `backend=` / `backend=none`
/// for the front ends' default-backend.
fn backend_site(data: &Path, value: &str) -> anyhow::Result<Option<String>> {
    let site = value.trim();
    if site.is_empty() || site.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    if !site
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        bail!(
            "backend={site}: a site name is letters, digits, '-', '_' and '.' (a name in [sites])"
        );
    }
    // Only front ends read [sites]; this node's configuration may not have them.
    if let Ok(config) = config::load_or_create(data)
        && !config.sites.is_empty()
        && !config.sites.contains_key(site)
    {
        eprintln!("warning: site {site:?} is not in this node's [sites]");
    }
    Ok(Some(site.to_string()))
}

/// The account of `address` (any case), or an error naming it.
pub async fn named(store: &dyn casella_store::Store, address: &str) -> anyhow::Result<Account> {
    match store
        .account_by_address(&address.trim().to_ascii_lowercase())
        .await?
    {
        Some(a) => Ok(a),
        None => bail!("no account {address}"),
    }
}

pub async fn run(data: &Path, command: AccountCommand) -> anyhow::Result<()> {
    let store = config::open_store(data).await?;
    match command {
        AccountCommand::Add {
            address,
            password_stdin,
            admin,
        } => {
            let address = valid_address(&address)?;
            let password = read_password(password_stdin)?;
            casella_directory::password_rules::check(&address, password.expose())?;
            let hash = hash_password(&password).map_err(anyhow::Error::msg)?;
            match store
                .create_account(NewAccount {
                    address: address.clone(),
                    password_hash: hash,
                    is_admin: admin,
                })
                .await
            {
                Ok(mut a) => {
                    a.settings.scram = Some(casella_directory::scram::derive(password.expose()));
                    store.update_account(&a).await?;
                    println!("created {}", a.address)
                }
                Err(StoreError::Exists(_)) => bail!("{address} exists already"),
                Err(e) => return Err(e.into()),
            }
        }
        AccountCommand::Show { address } => {
            let a = named(&*store, &address).await?;
            println!("address: {}", a.address);
            println!("administrator: {}", if a.is_admin { "yes" } else { "no" });
            for (key, value) in casella_directory::options::values(&a) {
                println!("{key}: {value}");
            }
            println!(
                "backend: {}",
                a.settings.backend.as_deref().unwrap_or("none")
            );
            let usage = store.usage(a.id).await?;
            let config = config::load_or_create(data)?;
            let state =
                casella_directory::quota::QuotaState::new(&a, &config.quota.limits()?, usage);
            let level = |l: Option<u64>| {
                l.map_or_else(|| "none".to_string(), casella_directory::quota::format_size)
            };
            println!(
                "usage: {} in {} messages (warning at {}, sending stops at {}, receiving at {})",
                casella_directory::quota::format_bytes(usage.bytes),
                usage.messages,
                level(state.warning),
                level(state.send),
                level(state.receive)
            );
            let aliases = store.aliases(a.id).await?;
            println!(
                "aliases: {}",
                if aliases.is_empty() {
                    "none".to_string()
                } else {
                    aliases.join(", ")
                }
            );
            for mb in store.list_mailboxes(a.id).await? {
                let count = store.list_messages(mb.id).await?.len();
                let role = mb
                    .special_use
                    .map(|r| format!(" {}", r.attribute()))
                    .unwrap_or_default();
                println!(
                    "mailbox: {}{role} ({count} messages, UIDVALIDITY {})",
                    mb.name, mb.uid_validity.0
                );
            }
        }
        AccountCommand::List => {
            for a in store.list_accounts().await? {
                let mut notes: Vec<String> = Vec::new();
                if a.is_admin {
                    notes.push("admin".into());
                }
                if !a.pop_enabled {
                    notes.push("pop=off".into());
                }
                if !a.imap_enabled {
                    notes.push("imap=off".into());
                }
                if !a.submission_enabled {
                    notes.push("submission=off".into());
                }
                if let Some(site) = &a.settings.backend {
                    notes.push(format!("backend={site}"));
                }
                if notes.is_empty() {
                    println!("{}", a.address);
                } else {
                    println!("{}\t{}", a.address, notes.join(" "));
                }
            }
        }
        AccountCommand::Remove { address } => {
            let Some(a) = store
                .account_by_address(&address.to_ascii_lowercase())
                .await?
            else {
                bail!("no account {address}");
            };
            store.delete_account(a.id).await?;
            // Its open sessions on the running servers end too.
            store.record_signout(&a.address, unix_now()).await?;
            println!("removed {}", a.address);
        }
        AccountCommand::Set { address, settings } => {
            let Some(mut a) = store
                .account_by_address(&address.to_ascii_lowercase())
                .await?
            else {
                bail!("no account {address}");
            };
            let was_disabled = a.settings.disabled;
            for setting in &settings {
                let Some((key, value)) = setting.split_once('=') else {
                    bail!("{setting}: expected KEY=VALUE");
                };
                if key.eq_ignore_ascii_case("backend") {
                    a.settings.backend = backend_site(data, value)?;
                    continue;
                }
                casella_directory::options::set(&mut a, key, value)
                    .map_err(|e| anyhow::anyhow!("{setting}: {e}"))?;
            }
            let switched_off = a.settings.disabled && !was_disabled;
            store.update_account(&a).await?;
            if switched_off {
                // Its open mail sessions end too, here and on every node.
                store.record_signout(&a.address, unix_now()).await?;
            }
            println!("updated {}", a.address);
        }
        AccountCommand::Alias { command } => alias(&*store, command).await?,
        AccountCommand::Passwd {
            address,
            password_stdin,
        } => {
            let Some(mut a) = store
                .account_by_address(&address.to_ascii_lowercase())
                .await?
            else {
                bail!("no account {address}");
            };
            let password = read_password(password_stdin)?;
            casella_directory::password_rules::set_password(&mut a, &password)?;
            store.update_account(&a).await?;
            // A password set by an administrator ends the sessions opened with
            // the old one (it may have been stolen), here and on every node.
            store.record_signout(&a.address, unix_now()).await?;
            println!("password changed for {}", a.address);
        }
        AccountCommand::Signout { address } => {
            match casella_web::signout::record(&*store, &address).await? {
                Some((a, _)) => println!(
                    "signed out {} everywhere: its web sessions end now, its mail sessions within a second",
                    a.address
                ),
                None => bail!("no account {address}"),
            }
        }
        AccountCommand::Recover {
            address,
            since,
            folder,
            id,
            restore,
        } => recover(&*store, &address, since, folder, id, restore).await?,
    }
    Ok(())
}

/// `casella account recover`: lists the recoverable items that match, and
/// with `restore` puts them back.
async fn recover(
    store: &dyn casella_store::Store,
    address: &str,
    since: Option<String>,
    folder: Option<String>,
    ids: Vec<i64>,
    restore: bool,
) -> anyhow::Result<()> {
    let a = named(store, address).await?;
    let now = store.time_source().now();
    let filter = casella_store::RecoverFilter {
        since: since
            .map(|s| crate::dates::parse_since(&s, now))
            .transpose()?,
        folder,
    };
    let mut items = store.recoverable(a.id, &filter).await?;
    if !ids.is_empty() {
        items.retain(|i| ids.contains(&i.id));
    }
    if items.is_empty() {
        println!("no recoverable items");
        return Ok(());
    }
    if restore {
        let wanted: Vec<i64> = items.iter().map(|i| i.id).collect();
        let restored = store.restore_recoverable(a.id, &wanted).await?;
        for r in &restored {
            println!("restored {} to {} as UID {}", r.id, r.folder, r.uid.0);
        }
        println!("{} restored", restored.len());
        return Ok(());
    }
    let blobs: Vec<casella_store::BlobId> = items.iter().map(|i| i.blob.clone()).collect();
    let fields = store.search_fields(&blobs, false).await?;
    println!("ID\tDELETED\tFOLDER\tSIZE\tFROM\tSUBJECT");
    for (item, f) in items.iter().zip(fields) {
        let (from, subject) = f
            .as_deref()
            .map(|f| (f.from.clone(), f.subject.clone()))
            .unwrap_or_default();
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            item.id,
            crate::dates::format_utc(item.deleted_at),
            item.folder,
            item.size,
            one_line(&from),
            one_line(&subject)
        );
    }
    println!(
        "{} recoverable; restore with: casella account recover {} --restore [--id N]",
        items.len(),
        a.address
    );
    Ok(())
}

/// A header value on one line of a table (no tabs or line breaks).
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

async fn alias(store: &dyn casella_store::Store, command: AliasCommand) -> anyhow::Result<()> {
    let owner = |address: &str| address.trim().to_ascii_lowercase();
    match command {
        AliasCommand::Add { address, alias } => {
            let Some(a) = store.account_by_address(&owner(&address)).await? else {
                bail!("no account {address}");
            };
            let alias = valid_address(&alias)?;
            match store.add_alias(a.id, &alias).await {
                Ok(()) => println!("{alias} is now an alias of {}", a.address),
                Err(StoreError::Exists(_)) => bail!("{alias} is in use already"),
                Err(e) => return Err(e.into()),
            }
        }
        AliasCommand::Remove { address, alias } => {
            let Some(a) = store.account_by_address(&owner(&address)).await? else {
                bail!("no account {address}");
            };
            let alias = alias.trim().to_ascii_lowercase();
            if !store.aliases(a.id).await?.contains(&alias) {
                bail!("{alias} is not an alias of {}", a.address);
            }
            store.remove_alias(&alias).await?;
            println!("removed {alias} from {}", a.address);
        }
        AliasCommand::List { address } => {
            let Some(a) = store.account_by_address(&owner(&address)).await? else {
                bail!("no account {address}");
            };
            for alias in store.aliases(a.id).await? {
                println!("{alias}");
            }
        }
    }
    Ok(())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
