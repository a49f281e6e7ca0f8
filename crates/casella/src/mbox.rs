//! `casella import mbox` and `casella export mbox`: folders to and from mbox
//! files (mboxrd: a `From ` line before each message, lines that start with
//! `>*From ` quoted with one more `>`; LF line ends), as mutt, Thunderbird and
//! Python's `mailbox` read them. Flags travel in the headers those programs
//! use: `Status:` (`R` read), `X-Status:` (`A` answered, `F`
//! flagged, `T` draft, `D` deleted) and `X-Keywords:`; an import takes them
//! out of the message again. INTERNALDATE is the `From ` line's date (UTC).
//! Imported messages get new UIDs.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use casella_mime::{days_from_civil, format_asctime, month_number};
use casella_store::{AccountId, Flag, FlagSet, NewMessage, Store};

/// The date of a `From sender DATE` line (asctime, UTC), if it has one.
fn from_line_date(line: &str) -> Option<i64> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    // From SENDER WDAY MON DAY HH:MM:SS YEAR: the last five.
    let [mon, day, time, year] = tokens.get(tokens.len().checked_sub(4)?..)? else {
        return None;
    };
    let m = month_number(mon)?;
    let d: u32 = day.parse().ok()?;
    let y: i64 = year.parse().ok()?;
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, mi, s] = hms[..] else { return None };
    Some(days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60 + s)
}

/// The mbox headers for `flags`.
fn flag_headers(flags: &FlagSet) -> String {
    let mut status = String::new();
    let mut x = String::new();
    let mut keywords = Vec::new();
    for f in flags {
        match f {
            Flag::Seen => status.push('R'),
            Flag::Answered => x.push('A'),
            Flag::Flagged => x.push('F'),
            Flag::Draft => x.push('T'),
            Flag::Deleted => x.push('D'),
            Flag::Keyword(k) => keywords.push(k.as_str()),
        }
    }
    let mut out = String::new();
    if !status.is_empty() {
        out.push_str(&format!("Status: {status}\n"));
    }
    if !x.is_empty() {
        out.push_str(&format!("X-Status: {x}\n"));
    }
    if !keywords.is_empty() {
        out.push_str(&format!("X-Keywords: {}\n", keywords.join(" ")));
    }
    out
}

/// Writes each folder of `account` to `dir/NAME.mbox` (`Archive/2024` as
/// `dir/Archive/2024.mbox`); a file there already is an error.
pub async fn export(
    store: &dyn Store,
    account: AccountId,
    dir: &Path,
) -> anyhow::Result<Vec<(String, usize)>> {
    let mut out = Vec::new();
    for mb in store.list_mailboxes(account).await? {
        let path = dir.join(format!("{}.mbox", mb.name));
        if path.exists() {
            bail!("{} exists already", path.display());
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = BufWriter::new(file);
        let messages = store.list_messages(mb.id).await?;
        for m in &messages {
            let raw = store.read_blob(&m.blob).await?;
            writeln!(w, "From MAILER-DAEMON {}", format_asctime(m.internal_date))?;
            w.write_all(flag_headers(&m.flags).as_bytes())?;
            for line in raw.split_inclusive(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\n").unwrap_or(line);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                // mboxrd: one more `>` before `>*From `.
                if line
                    .iter()
                    .skip_while(|&&b| b == b'>')
                    .take(5)
                    .eq(b"From ".iter())
                {
                    w.write_all(b">")?;
                }
                w.write_all(line)?;
                w.write_all(b"\n")?;
            }
            w.write_all(b"\n")?;
        }
        w.flush()?;
        out.push((mb.name.clone(), messages.len()));
    }
    Ok(out)
}

/// One message of an mbox: its bytes (CRLF), flags and date.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub raw: Vec<u8>,
    pub flags: FlagSet,
    pub date: Option<i64>,
}

/// Splits an mbox into messages: unquotes mboxrd `>From ` lines, takes the
/// Status/X-Status/X-Keywords headers out into flags, and drops the blank
/// line that ends each message.
pub fn parse(bytes: &[u8]) -> Vec<Parsed> {
    let mut out = Vec::new();
    let mut current: Option<(Vec<Vec<u8>>, Option<i64>)> = None;
    let finish = |lines: Vec<Vec<u8>>, date: Option<i64>, out: &mut Vec<Parsed>| {
        let mut lines = lines;
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let mut flags = FlagSet::new();
        let mut raw = Vec::new();
        let mut in_header = true;
        for line in lines {
            if in_header && line.is_empty() {
                in_header = false;
            }
            if in_header {
                let text = String::from_utf8_lossy(&line);
                let (name, value) = text.split_once(':').unwrap_or(("", ""));
                let value = value.trim();
                match name.to_ascii_lowercase().as_str() {
                    "status" => {
                        if value.contains('R') {
                            flags.insert(Flag::Seen);
                        }
                        continue;
                    }
                    "x-status" => {
                        for (c, f) in [
                            ('A', Flag::Answered),
                            ('F', Flag::Flagged),
                            ('T', Flag::Draft),
                            ('D', Flag::Deleted),
                        ] {
                            if value.contains(c) {
                                flags.insert(f);
                            }
                        }
                        continue;
                    }
                    "x-keywords" => {
                        for k in value.split([' ', ',']).filter(|k| !k.is_empty()) {
                            flags.insert(Flag::Keyword(k.to_string()));
                        }
                        continue;
                    }
                    _ => {}
                }
            }
            raw.extend_from_slice(&line);
            raw.extend_from_slice(b"\r\n");
        }
        out.push(Parsed { raw, flags, date });
    };
    for line in bytes.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.starts_with(b"From ") {
            if let Some((lines, date)) = current.take() {
                finish(lines, date, &mut out);
            }
            current = Some((Vec::new(), from_line_date(&String::from_utf8_lossy(line))));
            continue;
        }
        let Some((lines, _)) = current.as_mut() else {
            continue;
        };
        let unquoted = if line.starts_with(b">")
            && line
                .iter()
                .skip_while(|&&b| b == b'>')
                .take(5)
                .eq(b"From ".iter())
        {
            &line[1..]
        } else {
            line
        };
        lines.push(unquoted.to_vec());
    }
    if let Some((mut lines, date)) = current.take() {
        // The file's final line end made one empty line more.
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        finish(lines, date, &mut out);
    }
    out
}

/// Appends the messages of the mbox `file` to `account`'s folder `folder`
/// (made if missing; default: the file's name without `.mbox`).
pub async fn import(
    store: &dyn Store,
    account: AccountId,
    file: &Path,
    folder: Option<&str>,
) -> anyhow::Result<(String, usize)> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let name = match folder {
        Some(f) => f.to_string(),
        None => file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "INBOX".to_string()),
    };
    let mailbox = match store.mailbox_by_name(account, &name).await? {
        Some(mb) => mb,
        None => store.create_mailbox(account, &name, None).await?,
    };
    let messages = parse(&bytes);
    let count = messages.len();
    for chunk in messages.chunks(200) {
        let batch = chunk
            .iter()
            .map(|m| NewMessage {
                raw: m.raw.clone(),
                internal_date: m.date,
                flags: m.flags.clone(),
                binary: false,
            })
            .collect();
        store.append_batch(mailbox.id, batch).await?;
    }
    Ok((mailbox.name, count))
}

/// The mbox files under `dir` (a file is itself), with their folder names
/// (`dir/Archive/2024.mbox` → `Archive/2024`).
pub fn files(path: &Path) -> anyhow::Result<Vec<(PathBuf, Option<String>)>> {
    if path.is_file() {
        return Ok(vec![(path.to_path_buf(), None)]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "mbox") {
                let rel = p.strip_prefix(path).unwrap_or(&p).with_extension("");
                let name = rel
                    .to_string_lossy()
                    .replace(std::path::MAIN_SEPARATOR, "/");
                out.push((p, Some(name)));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `casella import mbox ADDRESS FILE|DIR [--folder NAME]` / `casella export
/// mbox ADDRESS DIR`.
pub async fn command(
    data: &Path,
    export_to: bool,
    address: &str,
    path: &Path,
    folder: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let store = crate::config::open_store(data).await?;
    let account = crate::account::named(&*store, address).await?;
    let done = if export_to {
        export(&*store, account.id, path).await?
    } else {
        let mut done = Vec::new();
        for (file, name) in files(path)? {
            done.push(import(&*store, account.id, &file, folder.or(name.as_deref())).await?);
        }
        done
    };
    let verb = if export_to { "exported" } else { "imported" };
    if json {
        let folders: Vec<serde_json::Value> = done
            .iter()
            .map(|(f, n)| serde_json::json!({"folder": f, verb: n}))
            .collect();
        let total: usize = done.iter().map(|(_, n)| n).sum();
        println!(
            "{}",
            serde_json::json!({"account": account.address, verb: total, "folders": folders})
        );
    } else {
        for (f, n) in &done {
            println!("{f}: {n} {verb}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_lines_round_trip() {
        let t = 1_796_687_312;
        let line = format!("From MAILER-DAEMON {}", format_asctime(t));
        assert_eq!(line, "From MAILER-DAEMON Mon Dec  7 23:48:32 2026");
        assert_eq!(from_line_date(&line), Some(t));
        assert_eq!(from_line_date("From someone"), None);
    }

    #[test]
    fn mboxrd_quoting_and_flags() {
        let mbox = b"From a Mon Dec  7 23:48:32 2026\n\
            Status: RO\nX-Status: AF\nX-Keywords: $Label1 work\nSubject: one\n\n\
            >From the start\n>>From quoted\nFrom-ish is fine\n\n\
            From b Tue Dec  8 00:00:00 2026\nSubject: two\n\nbody\n\n";
        let parsed = parse(mbox);
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            parsed[0].raw,
            b"Subject: one\r\n\r\nFrom the start\r\n>From quoted\r\nFrom-ish is fine\r\n"
        );
        assert!(parsed[0].flags.contains(&Flag::Seen));
        assert!(parsed[0].flags.contains(&Flag::Answered));
        assert!(parsed[0].flags.contains(&Flag::Keyword("work".into())));
        assert_eq!(parsed[1].raw, b"Subject: two\r\n\r\nbody\r\n");
        assert!(parsed[1].flags.is_empty());
        assert_eq!(parsed[1].date, Some(1_796_688_000));
    }
}
