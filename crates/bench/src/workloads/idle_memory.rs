//! idle-memory: K authenticated sessions in IDLE on INBOX; the server's memory
//! (PSS and RSS over its whole process tree) before and while they are held.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Better, Ctx, Figure, Meter, Outcome};
use crate::mail::Shape;
use crate::procfs;
use crate::proto::Imap;
use crate::server::{Mailbox, Target};
use crate::stats::Errors;

#[derive(Clone, Debug)]
pub struct Params {
    pub sessions: usize,
    /// Users the sessions are spread over (default: min(sessions, 100)).
    pub users: Option<usize>,
    /// Messages in each user's INBOX.
    pub messages: usize,
    /// Sessions being opened at once.
    pub concurrency: usize,
    /// Longest time for opening all sessions.
    pub open_timeout: Duration,
    /// Pause between the last session open and the measurement.
    pub settle: Duration,
    /// Stop opening sessions when the machine's available memory falls below this.
    pub min_available: u64,
}

impl Params {
    pub fn users(&self) -> usize {
        self.users.unwrap_or(self.sessions.min(100)).max(1)
    }

    pub fn title(&self) -> String {
        format!(
            "idle-memory: {} IDLE sessions over {} users ({} messages each)",
            self.sessions,
            self.users(),
            self.messages
        )
    }

    pub fn mailboxes(&self) -> Vec<Mailbox> {
        (1..=self.users())
            .map(|u| Mailbox {
                user: u,
                count: self.messages,
                stream: 10_000 + u as u64,
                shape: Shape::default(),
            })
            .collect()
    }
}

enum End {
    /// Opened, held, and closed cleanly.
    Held,
    /// Not opened: opening was stopped.
    Skipped,
}

pub async fn run(t: &Target, ctx: &Ctx, p: &Params) -> Result<Outcome> {
    let mut out = Outcome::default();
    let Some(addr) = t.ep.imap else {
        out.figures
            .push(Figure::na("sessions held", Better::Higher, "no IMAP"));
        return Ok(out);
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = t.pid.map(procfs::tree_memory);

    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let opened = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sem = Arc::new(tokio::sync::Semaphore::new(p.concurrency.max(1)));
    let hold_limit = p.open_timeout + p.settle + Duration::from_secs(120);
    let n_users = p.users();
    let meter = Meter::start(t.pid);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(p.sessions);
    for k in 0..p.sessions {
        let (ctx, opened, failed, stop, sem) = (
            ctx.clone(),
            opened.clone(),
            failed.clone(),
            stop.clone(),
            sem.clone(),
        );
        let mut release = release_rx.clone();
        tasks.push(tokio::spawn(async move {
            let user = ctx.users.name(k % n_users + 1);
            let r = async {
                let permit = sem.acquire().await?;
                if stop.load(Ordering::Relaxed) {
                    return Ok(End::Skipped);
                }
                let mut imap = Imap::connect(addr, ctx.timeout, 1024).await?;
                imap.login(&user, &ctx.users.password).await?;
                imap.select("INBOX").await?;
                let tag = imap.idle_start().await?;
                drop(permit);
                opened.fetch_add(1, Ordering::Relaxed);
                let _ = tokio::time::timeout(hold_limit, release.wait_for(|&r| r)).await;
                imap.idle_done(&tag).await?.ok("IDLE")?;
                imap.logout().await?;
                anyhow::Ok(End::Held)
            }
            .await;
            if r.is_err() {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            r.map_err(|e| format!("{user}: {e:#}"))
        }));
    }
    let deadline = started + p.open_timeout;
    let mut note = None;
    let mut last_report = Instant::now();
    loop {
        let (o, f) = (
            opened.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
        );
        if o + f >= p.sessions || Instant::now() > deadline {
            break;
        }
        if procfs::mem_available().is_some_and(|a| a < p.min_available)
            && !stop.load(Ordering::Relaxed)
        {
            stop.store(true, Ordering::Relaxed);
            note = Some(format!(
                "stopped opening at {o} sessions: available memory below {} MiB",
                p.min_available >> 20
            ));
        }
        if stop.load(Ordering::Relaxed) && sem.available_permits() == p.concurrency.max(1) {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!("    {}: {o} sessions open, {f} failed", t.name);
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if Instant::now() > deadline {
        stop.store(true, Ordering::Relaxed);
        note.get_or_insert_with(|| {
            format!(
                "opening stopped by --open-timeout after {:?}",
                p.open_timeout
            )
        });
    }
    let opening = meter.stop();
    let held = opened.load(Ordering::Relaxed);
    tokio::time::sleep(p.settle).await;
    let mem = t.pid.map(procfs::tree_memory);
    let _ = release_tx.send(true);

    let mut errors = Errors::default();
    let mut closed = 0usize;
    let join_deadline =
        Instant::now() + Duration::from_secs(120) + Duration::from_millis(p.sessions as u64 * 20);
    for task in tasks {
        let left = join_deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, task).await {
            Ok(Ok(Ok(End::Held))) => closed += 1,
            Ok(Ok(Ok(End::Skipped))) => {}
            Ok(Ok(Err(e))) => errors.add(e),
            Ok(Err(e)) => errors.add(format!("session task: {e}")),
            Err(_) => errors.add("session did not end in time"),
        }
    }

    out.fig("sessions held", Some(held as f64), Better::Higher, 0);
    match (base, mem) {
        (Some(b), Some(m)) if held > 0 => {
            let per =
                |after: u64, before: u64| (after as f64 - before as f64) / held as f64 / 1024.0;
            out.fig(
                "PSS per session KiB",
                Some(per(m.pss, b.pss)),
                Better::Lower,
                1,
            );
            out.fig(
                "RSS per session KiB",
                Some(per(m.rss, b.rss)),
                Better::Lower,
                1,
            );
            out.fig(
                "server PSS before MiB",
                Some(b.pss as f64 / 1048576.0),
                Better::Info,
                1,
            );
            out.fig(
                "server PSS with sessions MiB",
                Some(m.pss as f64 / 1048576.0),
                Better::Info,
                1,
            );
            out.fig(
                "server RSS with sessions MiB",
                Some(m.rss as f64 / 1048576.0),
                Better::Info,
                1,
            );
            out.fig(
                "server processes",
                Some(m.processes as f64),
                Better::Info,
                0,
            );
        }
        _ => out.figures.push(Figure::na(
            "PSS per session KiB",
            Better::Lower,
            "no server PID to measure",
        )),
    }
    out.fig(
        "sessions opened/s (connect+LOGIN+SELECT+IDLE)",
        Some(held as f64 / opening.wall),
        Better::Higher,
        1,
    );
    out.fig(
        "server CPU s (opening)",
        opening.server_cpu,
        Better::Info,
        2,
    );
    if let Some(n) = note {
        out.details.push(n);
    }
    out.details.push(format!(
        "{closed} sessions ended cleanly (DONE, LOGOUT) after the measurement"
    ));
    out.errors = errors;
    Ok(out)
}
