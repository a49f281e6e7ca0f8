//! `casella import maildir` and `casella export maildir`: an account's mail
//! to and from a Dovecot Maildir++ directory, keeping what clients cache —
//! folders, UIDVALIDITY and UIDs (Dovecot's `dovecot-uidlist`), flags and
//! keywords (`dovecot-keywords`), and INTERNALDATE (the file's mtime, as
//! Dovecot reads it) — so a client that synced with Dovecot finds nothing new
//! to download here, and back.
//!
//! Layout (Maildir++, as Dovecot writes it by default): the root holds INBOX,
//! each other folder is a directory `.Name` at the root, hierarchy levels
//! joined by `.` and names in modified UTF-7 (RFC 3501 §5.1.3). A message is
//! a file in `cur/` or `new/` named `BASE[:2,FLAGS]`: `S` \Seen, `R`
//! \Answered, `F` \Flagged, `T` \Deleted, `D` \Draft, `P` $Forwarded, and
//! `a`…`z` the keywords numbered in `dovecot-keywords`.
//!
//! An import can run again: a folder already imported with the same
//! UIDVALIDITY takes only the UIDs it lacks; an account may be live meanwhile
//! (its sessions see the new mail).

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, bail};
use casella_proto_imap::mutf7;
use casella_store::{
    Flag, FlagSet, ImportMailbox, ImportMessage, Mailbox, ModSeq, Store, Uid, UidValidity,
};

/// Messages per store transaction.
const BATCH: usize = 200;

/// What `dovecot-uidlist` says: the folder's UIDVALIDITY and UIDNEXT, and
/// each message's UID by base name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UidList {
    pub validity: Option<u32>,
    pub next: Option<u32>,
    pub uids: HashMap<String, u32>,
}

/// Parses `dovecot-uidlist`: version 3 (`3 V<validity> N<next> G<guid>`, then
/// `<uid> [<ext> ...] :<base>`) or version 1 (`1 <validity> <next>`, then
/// `<uid> <base>`). Lines it cannot read are left out.
pub fn parse_uidlist(text: &str) -> UidList {
    let mut list = UidList::default();
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return list;
    };
    let mut fields = header.split_whitespace();
    let version = fields.next().unwrap_or("");
    if version == "1" {
        list.validity = fields.next().and_then(|v| v.parse().ok());
        list.next = fields.next().and_then(|v| v.parse().ok());
    } else {
        for f in fields {
            if let Some(v) = f.strip_prefix('V') {
                list.validity = v.parse().ok();
            } else if let Some(n) = f.strip_prefix('N') {
                list.next = n.parse().ok();
            }
        }
    }
    for line in lines {
        let Some((uid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(uid) = uid.parse::<u32>() else {
            continue;
        };
        let base = match rest.find(':') {
            Some(at) if version != "1" => &rest[at + 1..],
            _ => rest.split_whitespace().last().unwrap_or(""),
        };
        let base = base.split(":2,").next().unwrap_or(base);
        if uid > 0 && !base.is_empty() {
            list.uids.insert(base.to_string(), uid);
        }
    }
    list
}

/// The flags a Maildir file name carries after `:2,`.
pub fn flags_of(info: &str, keywords: &BTreeMap<u32, String>) -> FlagSet {
    let mut flags = FlagSet::new();
    for c in info.chars() {
        let flag = match c {
            'S' => Flag::Seen,
            'R' => Flag::Answered,
            'F' => Flag::Flagged,
            'T' => Flag::Deleted,
            'D' => Flag::Draft,
            'P' => Flag::Keyword("$Forwarded".into()),
            'a'..='z' => match keywords.get(&(c as u32 - 'a' as u32)) {
                Some(k) => Flag::Keyword(k.clone()),
                None => continue,
            },
            _ => continue,
        };
        flags.insert(flag);
    }
    flags
}

/// The `:2,` suffix for `flags`, letters in ASCII order as Maildir wants;
/// new keywords are numbered in `keywords`.
fn info_of(flags: &FlagSet, keywords: &mut Vec<String>) -> String {
    let mut letters: Vec<char> = Vec::new();
    for f in flags {
        let c = match f {
            Flag::Seen => 'S',
            Flag::Answered => 'R',
            Flag::Flagged => 'F',
            Flag::Deleted => 'T',
            Flag::Draft => 'D',
            Flag::Keyword(k) if k.eq_ignore_ascii_case("$Forwarded") => 'P',
            Flag::Keyword(k) => {
                let at = match keywords.iter().position(|x| x == k) {
                    Some(at) => at,
                    None if keywords.len() < 26 => {
                        keywords.push(k.clone());
                        keywords.len() - 1
                    }
                    None => continue,
                };
                (b'a' + at as u8) as char
            }
        };
        letters.push(c);
    }
    letters.sort_unstable();
    letters.dedup();
    letters.into_iter().collect()
}

/// `dovecot-keywords`: `<number> <keyword>` per line.
fn parse_keywords(text: &str) -> BTreeMap<u32, String> {
    text.lines()
        .filter_map(|l| {
            let (n, k) = l.split_once(' ')?;
            Some((n.parse().ok()?, k.trim().to_string()))
        })
        .collect()
}

/// The folders of a Maildir++ root: (mailbox name, directory), INBOX first.
fn folders(root: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out = vec![("INBOX".to_string(), root.to_path_buf())];
    let mut others = Vec::new();
    for entry in std::fs::read_dir(root).with_context(|| format!("reading {}", root.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stored) = name.strip_prefix('.') else {
            continue;
        };
        if stored.is_empty() || stored == "." || !entry.path().join("cur").is_dir() {
            continue;
        }
        let decoded = mutf7::decode(stored).unwrap_or_else(|_| stored.to_string());
        let mailbox = decoded.replace('.', "/");
        let mailbox = if mailbox.eq_ignore_ascii_case("inbox") {
            "INBOX".to_string()
        } else {
            mailbox
        };
        others.push((mailbox, entry.path()));
    }
    others.sort();
    out.extend(others);
    Ok(out)
}

/// A message file of a folder: its base name, flags and mtime.
struct MessageFile {
    path: PathBuf,
    base: String,
    info: String,
    mtime: i64,
}

fn message_files(dir: &Path) -> anyhow::Result<Vec<MessageFile>> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        let d = dir.join(sub);
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let (base, info) = match name.split_once(":2,") {
                Some((b, i)) => (b.to_string(), i.to_string()),
                None => (name.clone(), String::new()),
            };
            let mtime = entry
                .metadata()?
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64);
            out.push(MessageFile {
                path: entry.path(),
                base,
                info,
                mtime,
            });
        }
    }
    Ok(out)
}

/// What one folder's import did.
#[derive(Debug, Default, serde::Serialize)]
pub struct FolderReport {
    pub folder: String,
    pub imported: usize,
    pub skipped: usize,
    pub uid_validity: u32,
}

/// Progress on standard error: a bar on a terminal, plain lines otherwise.
struct Progress {
    tty: bool,
    last: std::time::Instant,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            last: std::time::Instant::now(),
        }
    }

    fn show(&mut self, folder: &str, done: usize, total: usize) {
        let finished = done == total;
        if self.tty {
            if !finished && self.last.elapsed() < Duration::from_millis(100) {
                return;
            }
            let width = 30;
            let filled = (done * width).checked_div(total).unwrap_or(width);
            eprint!(
                "\r{folder:<24.24} [{}{}] {done}/{total}",
                "#".repeat(filled),
                " ".repeat(width - filled)
            );
            if finished {
                eprintln!();
            }
        } else if finished || self.last.elapsed() >= Duration::from_secs(5) {
            eprintln!("{folder}: {done}/{total}");
        } else {
            return;
        }
        self.last = std::time::Instant::now();
        let _ = std::io::stderr().flush();
    }
}

/// Imports the Maildir++ at `root` into `account`'s mailboxes.
pub async fn import(
    store: &dyn Store,
    account: casella_store::AccountId,
    root: &Path,
) -> anyhow::Result<Vec<FolderReport>> {
    if !root.join("cur").is_dir() {
        bail!("{} is not a Maildir (it has no cur/)", root.display());
    }
    let keywords = std::fs::read_to_string(root.join("dovecot-keywords"))
        .map(|t| parse_keywords(&t))
        .unwrap_or_default();
    let mut progress = Progress::new();
    let mut reports = Vec::new();
    for (name, dir) in folders(root)? {
        // Each folder has its own keywords file in Maildir++; the root's is
        // INBOX's.
        let keywords = match std::fs::read_to_string(dir.join("dovecot-keywords")) {
            Ok(t) => parse_keywords(&t),
            Err(_) => keywords.clone(),
        };
        let report = import_folder(store, account, &name, &dir, &keywords, &mut progress)
            .await
            .with_context(|| format!("importing {name}"))?;
        reports.push(report);
    }
    Ok(reports)
}

async fn import_folder(
    store: &dyn Store,
    account: casella_store::AccountId,
    name: &str,
    dir: &Path,
    keywords: &BTreeMap<u32, String>,
    progress: &mut Progress,
) -> anyhow::Result<FolderReport> {
    let list = std::fs::read_to_string(dir.join("dovecot-uidlist"))
        .map(|t| parse_uidlist(&t))
        .unwrap_or_default();
    let mut files = message_files(dir)?;
    // Known UIDs first, in order; files the list does not know yet (new
    // deliveries) after them with the next UIDs.
    files.sort_by_key(|f| (list.uids.get(&f.base).copied().unwrap_or(u32::MAX), f.mtime));
    let mut next = list.next.unwrap_or(1).max(1);
    for f in &files {
        if let Some(&uid) = list.uids.get(&f.base) {
            next = next.max(uid.saturating_add(1));
        }
    }
    let mut numbered = Vec::with_capacity(files.len());
    for f in files {
        let uid = match list.uids.get(&f.base) {
            Some(&uid) => uid,
            None => {
                next = next.saturating_add(1);
                next - 1
            }
        };
        numbered.push((Uid(uid), f));
    }
    let validity = list
        .validity
        .filter(|v| *v > 0)
        .unwrap_or_else(|| casella_store::now_unix().clamp(1, u32::MAX as i64) as u32);
    let mailbox = target_mailbox(store, account, name, validity, next).await?;
    // A run before may have imported some; the account may have had mail
    // since. A UID here with other bytes, or one at or above UIDNEXT taken
    // meanwhile, is a different message: it is appended with a new UID.
    // One expunged here stays expunged.
    let have: HashMap<Uid, casella_store::BlobId> = store
        .list_messages(mailbox.id)
        .await?
        .into_iter()
        .map(|m| (m.uid, m.blob))
        .collect();
    let expunged: std::collections::HashSet<Uid> = store
        .expunged_since(mailbox.id, ModSeq(0))
        .await?
        .into_iter()
        .collect();
    let have_blobs: std::collections::HashSet<casella_store::BlobId> =
        have.values().cloned().collect();
    let used = !have.is_empty() || !expunged.is_empty();
    // Into a mailbox in use, imported messages take a MODSEQ above every
    // one there (CONDSTORE clients see them as changes).
    let modseq = if used {
        ModSeq(mailbox.highest_modseq.0 + 1)
    } else {
        ModSeq(1)
    };
    let total = numbered.len();
    let mut report = FolderReport {
        folder: name.to_string(),
        uid_validity: mailbox.uid_validity.0,
        ..FolderReport::default()
    };
    let mut batch = Vec::with_capacity(BATCH);
    let mut appends = Vec::new();
    for (i, (uid, f)) in numbered.into_iter().enumerate() {
        let raw =
            std::fs::read(&f.path).with_context(|| format!("reading {}", f.path.display()))?;
        let flags = flags_of(&f.info, keywords);
        // Hashed only into a mailbox in use (a first import has nothing to
        // compare with, and the store hashes what it stores anyway).
        let blob = used.then(|| {
            casella_store::blob::BlobDir::id_of(&casella_store::normalize_line_ends(raw.clone()))
        });
        if blob.is_some() && have.get(&uid) == blob.as_ref()
            || (expunged.contains(&uid) && !have.contains_key(&uid))
        {
            report.skipped += 1;
        } else if have.contains_key(&uid) || (used && uid < mailbox.uid_next) {
            // Taken here by another message: appended with a new UID, once
            // (a run after that finds its bytes in the mailbox).
            if blob.as_ref().is_some_and(|b| have_blobs.contains(b)) {
                report.skipped += 1;
                progress.show(name, i + 1, total);
                continue;
            }
            appends.push(casella_store::NewMessage {
                raw,
                internal_date: Some(f.mtime),
                flags,
                binary: false,
            });
        } else {
            batch.push(ImportMessage {
                uid,
                modseq,
                internal_date: f.mtime,
                flags,
                raw,
            });
        }
        if batch.len() >= BATCH {
            report.imported += batch.len();
            store
                .import_messages(mailbox.id, std::mem::take(&mut batch))
                .await?;
        }
        progress.show(name, i + 1, total);
    }
    report.imported += batch.len();
    store.import_messages(mailbox.id, batch).await?;
    // The rest after the UIDs kept, with new ones.
    report.imported += appends.len();
    for chunk in appends.chunks(BATCH) {
        store.append_batch(mailbox.id, chunk.to_vec()).await?;
    }
    if total == 0 {
        progress.show(name, 0, 0);
    }
    Ok(report)
}

/// The mailbox to import into: the one of that name when it already has this
/// UIDVALIDITY (an import run before), else a new one with it (an existing
/// empty one takes it over; one with other mail is an error).
async fn target_mailbox(
    store: &dyn Store,
    account: casella_store::AccountId,
    name: &str,
    validity: u32,
    next: u32,
) -> anyhow::Result<Mailbox> {
    if let Some(mb) = store.mailbox_by_name(account, name).await?
        && mb.uid_validity.0 == validity
    {
        return Ok(mb);
    }
    match store
        .import_mailbox(
            account,
            ImportMailbox {
                name: name.to_string(),
                special_use: None,
                uid_validity: UidValidity(validity),
                uid_next: Uid(next.max(1)),
                highest_modseq: ModSeq(1),
            },
        )
        .await
    {
        Ok(mb) => Ok(mb),
        Err(casella_store::StoreError::Exists(_)) => bail!(
            "{name} exists here already with other mail (another UIDVALIDITY); \
             rename or empty it first"
        ),
        Err(e) => Err(e.into()),
    }
}

/// Writes `account`'s mailboxes as a Maildir++ at `root` (made if missing;
/// a folder already there is an error, so nothing is overwritten).
pub async fn export(
    store: &dyn Store,
    account: casella_store::AccountId,
    root: &Path,
) -> anyhow::Result<Vec<FolderReport>> {
    let mut reports = Vec::new();
    let mut progress = Progress::new();
    for mb in store.list_mailboxes(account).await? {
        let dir = if mb.name == "INBOX" {
            root.to_path_buf()
        } else {
            root.join(format!(".{}", mutf7::encode(&mb.name).replace('/', ".")))
        };
        if dir.join("dovecot-uidlist").exists() {
            bail!("{} holds a Maildir already", dir.display());
        }
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        let messages = store.list_messages(mb.id).await?;
        let total = messages.len();
        let mut uidlist = format!("3 V{} N{}\n", mb.uid_validity.0, mb.uid_next.0);
        let mut keywords: Vec<String> = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let raw = store.read_blob(&m.blob).await?;
            let base = format!(
                "{}.M{}P{}.casella,S={}",
                m.internal_date,
                m.uid.0,
                account.0,
                raw.len()
            );
            let name = format!("{base}:2,{}", info_of(&m.flags, &mut keywords));
            let path = dir.join("cur").join(&name);
            std::fs::write(&path, &raw).with_context(|| format!("writing {}", path.display()))?;
            let mtime = UNIX_EPOCH + Duration::from_secs(m.internal_date.max(0) as u64);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(mtime))
                .with_context(|| format!("dating {}", path.display()))?;
            uidlist.push_str(&format!("{} :{base}\n", m.uid.0));
            progress.show(&mb.name, i + 1, total);
        }
        if total == 0 {
            progress.show(&mb.name, 0, 0);
        }
        std::fs::write(dir.join("dovecot-uidlist"), uidlist)?;
        if !keywords.is_empty() {
            let text: String = keywords
                .iter()
                .enumerate()
                .map(|(n, k)| format!("{n} {k}\n"))
                .collect();
            std::fs::write(dir.join("dovecot-keywords"), text)?;
        }
        if mb.name != "INBOX" {
            // Dovecot's marker of a Maildir++ folder.
            std::fs::write(dir.join("maildirfolder"), b"")?;
        }
        reports.push(FolderReport {
            folder: mb.name.clone(),
            imported: total,
            skipped: 0,
            uid_validity: mb.uid_validity.0,
        });
    }
    Ok(reports)
}

/// `casella import maildir ADDRESS DIR` / `casella export maildir ADDRESS DIR`.
pub async fn command(
    data: &Path,
    export_to: bool,
    address: &str,
    dir: &Path,
    json: bool,
) -> anyhow::Result<()> {
    let store = crate::config::open_store(data).await?;
    let account = crate::account::named(&*store, address).await?;
    let reports = if export_to {
        export(&*store, account.id, dir).await?
    } else {
        import(&*store, account.id, dir).await?
    };
    if json {
        let imported: usize = reports.iter().map(|r| r.imported).sum();
        let skipped: usize = reports.iter().map(|r| r.skipped).sum();
        let key = if export_to { "exported" } else { "imported" };
        println!(
            "{}",
            serde_json::json!({
                "account": account.address,
                key: imported,
                "skipped": skipped,
                "folders": reports,
            })
        );
    } else {
        for r in &reports {
            let verb = if export_to { "exported" } else { "imported" };
            println!(
                "{}: {} {verb}, {} there already (UIDVALIDITY {})",
                r.folder, r.imported, r.skipped, r.uid_validity
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uidlists_of_both_versions() {
        let v3 = "3 V1733580000 N7 G0123456789abcdef\n\
                  1 :1733580001.M1P2.host,S=100,W=102\n\
                  5 W2000 :1733580002.M3P2.host\n\
                  junk line\n";
        let l = parse_uidlist(v3);
        assert_eq!(l.validity, Some(1_733_580_000));
        assert_eq!(l.next, Some(7));
        assert_eq!(l.uids.get("1733580001.M1P2.host,S=100,W=102"), Some(&1));
        assert_eq!(l.uids.get("1733580002.M3P2.host"), Some(&5));
        let v1 = "1 42 3\n1 one.host\n2 two.host:2,S\n";
        let l = parse_uidlist(v1);
        assert_eq!((l.validity, l.next), (Some(42), Some(3)));
        assert_eq!(l.uids.get("two.host"), Some(&2));
    }

    #[test]
    fn flags_and_keywords_both_ways() {
        let keywords: BTreeMap<u32, String> =
            [(0, "$Label1".to_string()), (1, "work".to_string())].into();
        let f = flags_of("FPSab", &keywords);
        assert!(f.contains(&Flag::Flagged) && f.contains(&Flag::Seen));
        assert!(f.contains(&Flag::Keyword("$Forwarded".into())));
        assert!(f.contains(&Flag::Keyword("work".into())));
        let mut names = Vec::new();
        let info = info_of(&f, &mut names);
        assert_eq!(info, "FPSab");
        assert_eq!(names, vec!["$Label1".to_string(), "work".to_string()]);
        assert!(
            flags_of("z", &keywords).is_empty(),
            "an unknown keyword letter"
        );
    }
}
