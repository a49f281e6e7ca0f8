//! Protocol logs in Exchange's CSV layout — date-time, connector-id, session-id,
//! sequence-number, local-endpoint, remote-endpoint, event, data, context — one
//! directory per protocol, rolled over hourly, daily or by size. Events: `+`
//! connect, `-` disconnect, `>` sent, `<` received, `*` information. Sessions pass
//! secrets already masked (`****`); this module never sees a password.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// When a new log file starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollover {
    Hourly,
    Daily,
    /// When the file reaches this many bytes.
    Size(u64),
}

struct Current {
    /// The period the file belongs to (hour or day number), or a counter for Size.
    period: i64,
    file: File,
    written: u64,
}

/// One protocol's log (shared by its sessions).
pub struct ProtocolLog {
    dir: PathBuf,
    /// e.g. "POP3", "IMAP4", "SMTP-Submission".
    connector: String,
    rollover: Rollover,
    current: Mutex<Option<Current>>,
    sessions: AtomicU64,
}

const HEADER: &str = "#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,data,context\n";

fn now() -> (i64, u32) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_millis())
}

/// `2026-11-24T12:05:00.123Z`
fn timestamp(secs: i64, millis: u32) -> String {
    let days = secs.div_euclid(86_400);
    let t = secs.rem_euclid(86_400);
    let (y, m, d) = casella_mime::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        t / 3600,
        t % 3600 / 60,
        t % 60
    )
}

/// A CSV field: quoted when it holds a comma, quote or line end.
fn csv(field: &str) -> String {
    let clean: String = field
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    if clean.contains([',', '"']) {
        format!("\"{}\"", clean.replace('"', "\"\""))
    } else {
        clean
    }
}

impl std::fmt::Debug for ProtocolLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ProtocolLog({}, {:?})",
            self.dir.display(),
            self.rollover
        )
    }
}

impl ProtocolLog {
    pub fn new(dir: PathBuf, connector: &str, rollover: Rollover) -> ProtocolLog {
        ProtocolLog {
            dir,
            connector: connector.to_string(),
            rollover,
            current: Mutex::new(None),
            sessions: AtomicU64::new(0),
        }
    }

    pub fn directory(&self) -> &PathBuf {
        &self.dir
    }

    /// A logger for one connection.
    pub fn session(self: &Arc<Self>, local: SocketAddr, remote: SocketAddr) -> SessionLog {
        let (secs, _) = now();
        let n = self.sessions.fetch_add(1, Ordering::Relaxed);
        SessionLog {
            log: self.clone(),
            id: format!("{:08X}{:08X}", secs as u32, n as u32),
            sequence: 0,
            local,
            remote,
        }
    }

    fn write(&self, line: &str) {
        let (secs, _) = now();
        let period = match self.rollover {
            Rollover::Hourly => secs.div_euclid(3600),
            Rollover::Daily => secs.div_euclid(86_400),
            Rollover::Size(_) => 0,
        };
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let roll = match (&*current, self.rollover) {
            (None, _) => true,
            (Some(c), Rollover::Size(max)) => c.written + line.len() as u64 > max,
            (Some(c), _) => c.period != period,
        };
        if roll {
            *current = self.open(period, secs);
        }
        if let Some(c) = current.as_mut()
            && c.file.write_all(line.as_bytes()).is_ok()
        {
            c.written += line.len() as u64;
        }
    }

    fn open(&self, period: i64, secs: i64) -> Option<Current> {
        if let Err(e) = std::fs::create_dir_all(&self.dir) {
            tracing::warn!(error = %e, dir = %self.dir.display(), "cannot create the protocol log directory");
            return None;
        }
        let (y, m, d) = casella_mime::civil_from_days(secs.div_euclid(86_400));
        let hour = secs.rem_euclid(86_400) / 3600;
        let mut name = format!("{}{y:04}{m:02}{d:02}", self.connector.to_ascii_uppercase());
        if self.rollover != Rollover::Daily {
            name.push_str(&format!("-{hour:02}"));
        }
        // Several files in one period (size rollover): number them.
        let mut path = self.dir.join(format!("{name}.LOG"));
        let mut i = 1;
        while matches!(self.rollover, Rollover::Size(_)) && path.exists() {
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if let Rollover::Size(max) = self.rollover
                && len < max
            {
                break;
            }
            path = self.dir.join(format!("{name}-{i}.LOG"));
            i += 1;
        }
        let fresh = !path.exists();
        match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(mut file) => {
                let mut written = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                if fresh {
                    let head = format!(
                        "#Software: casella\n#Log-type: {} protocol log\n{HEADER}",
                        self.connector
                    );
                    let _ = file.write_all(head.as_bytes());
                    written += head.len() as u64;
                }
                Some(Current {
                    period,
                    file,
                    written,
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "cannot open the protocol log");
                None
            }
        }
    }
}

/// One connection's entries.
pub struct SessionLog {
    log: Arc<ProtocolLog>,
    id: String,
    sequence: u64,
    local: SocketAddr,
    remote: SocketAddr,
}

impl SessionLog {
    /// Logs one event; `data` must already have secrets masked.
    pub fn event(&mut self, event: char, data: &str, context: &str) {
        let (secs, millis) = now();
        let line = format!(
            "{},{},{},{},{},{},{event},{},{}\n",
            timestamp(secs, millis),
            csv(&self.log.connector),
            self.id,
            self.sequence,
            self.local,
            self.remote,
            csv(data),
            csv(context)
        );
        self.sequence += 1;
        self.log.write(&line);
    }
}

impl Drop for SessionLog {
    fn drop(&mut self) {
        self.event('-', "", "disconnected");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_the_exchange_layout_and_roll_by_size() {
        let dir = tempfile_dir();
        let log = Arc::new(ProtocolLog::new(dir.clone(), "POP3", Rollover::Size(600)));
        let local: SocketAddr = "127.0.0.1:110".parse().unwrap();
        let remote: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        {
            let mut s = log.session(local, remote);
            s.event('+', "", "connected");
            s.event('<', "PASS ****", "");
            s.event('>', "+OK a, \"quoted\" reply", "");
        }
        for _ in 0..10 {
            log.session(local, remote).event('*', "x", "");
        }
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        // The first file has the plain name; the next ones are numbered.
        files.sort_by_key(|p| p.to_string_lossy().len());
        assert!(files.len() >= 2, "rolled over by size: {files:?}");
        let first = std::fs::read_to_string(&files[0]).unwrap();
        assert!(
            first.contains("#Fields: date-time,connector-id,session-id,sequence-number"),
            "{first}"
        );
        let lines: Vec<&str> = first.lines().filter(|l| !l.starts_with('#')).collect();
        let cols: Vec<&str> = lines[1].split(',').collect();
        assert_eq!(cols[1], "POP3");
        assert_eq!(cols[3], "1");
        assert_eq!(cols[4], "127.0.0.1:110");
        assert_eq!(cols[6], "<");
        assert_eq!(cols[7], "PASS ****");
        assert!(
            lines[2].contains(",>,\"+OK a, \"\"quoted\"\" reply\","),
            "{}",
            lines[2]
        );
        assert!(lines[3].contains(",-,,disconnected"), "{}", lines[3]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "casella-protolog-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }
}
