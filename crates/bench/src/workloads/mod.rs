//! The workloads. Each one names the users and mail it needs, warms a target up
//! (untimed), and runs a timed phase that returns figures. Every loop stops on a
//! count and on a deadline, whichever comes first.

pub mod idle_memory;
pub mod imap_mixed;
pub mod pop3_retr;
pub mod push_latency;
pub mod search;
pub mod submission;

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};

use crate::procfs;
use crate::proto::Imap;
use crate::server::{Mailbox, Target, Users};
use crate::stats::{Errors, Lat};

/// What every workload gets.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub users: Users,
    pub seed: u64,
    /// Longest wait for one reply.
    pub timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
    /// Shown, not compared.
    Info,
}

#[derive(Clone, Debug)]
pub struct Figure {
    pub name: String,
    pub value: Option<f64>,
    pub better: Better,
    pub decimals: usize,
    /// Why there is no value.
    pub na: Option<String>,
}

impl Figure {
    pub fn new(
        name: impl Into<String>,
        value: Option<f64>,
        better: Better,
        decimals: usize,
    ) -> Figure {
        Figure {
            name: name.into(),
            value,
            better,
            decimals,
            na: None,
        }
    }

    pub fn na(name: impl Into<String>, better: Better, why: impl Into<String>) -> Figure {
        Figure {
            name: name.into(),
            value: None,
            better,
            decimals: 0,
            na: Some(why.into()),
        }
    }
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub figures: Vec<Figure>,
    pub errors: Errors,
    /// Extra lines for the report (per-command tables and the like).
    pub details: Vec<String>,
}

impl Outcome {
    pub fn fig(
        &mut self,
        name: impl Into<String>,
        value: Option<f64>,
        better: Better,
        decimals: usize,
    ) {
        self.figures
            .push(Figure::new(name, value, better, decimals));
    }

    /// Rate and per-server-CPU-second figures for `count` units over `usage`.
    pub fn rates(&mut self, what: &str, count: f64, usage: &Usage, decimals: usize) {
        self.fig(
            format!("{what}/s"),
            Some(count / usage.wall),
            Better::Higher,
            decimals,
        );
        self.fig(
            format!("{what} per server CPU-s"),
            usage.server_cpu.filter(|&c| c > 0.0).map(|c| count / c),
            Better::Higher,
            decimals,
        );
    }

    pub fn latency(&mut self, what: &str, lat: &Lat) {
        self.fig(format!("{what} p50 ms"), lat.pct_ms(50.0), Better::Lower, 2);
        self.fig(format!("{what} p99 ms"), lat.pct_ms(99.0), Better::Lower, 2);
    }

    pub fn usage(&mut self, usage: &Usage) {
        self.fig("server CPU s", usage.server_cpu, Better::Info, 2);
        self.fig(
            "load generator CPU s",
            Some(usage.client_cpu),
            Better::Info,
            2,
        );
    }
}

/// CPU and wall time of a timed phase.
pub struct Meter {
    pid: Option<u32>,
    server0: f64,
    client0: f64,
    t0: Instant,
}

#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub wall: f64,
    pub server_cpu: Option<f64>,
    pub client_cpu: f64,
}

impl Meter {
    pub fn start(pid: Option<u32>) -> Meter {
        Meter {
            pid,
            server0: pid.map_or(0.0, procfs::tree_cpu_seconds),
            client0: procfs::self_cpu_seconds(),
            t0: Instant::now(),
        }
    }

    pub fn stop(&self) -> Usage {
        let wall = self.t0.elapsed().as_secs_f64();
        Usage {
            wall: wall.max(1e-6),
            server_cpu: self
                .pid
                .map(|p| (procfs::tree_cpu_seconds(p) - self.server0).max(0.0)),
            client_cpu: procfs::self_cpu_seconds() - self.client0,
        }
    }
}

/// One of the workloads, with its parameters.
#[derive(Clone, Debug)]
pub enum Workload {
    ImapMixed(imap_mixed::Params),
    IdleMemory(idle_memory::Params),
    Pop3Retr(pop3_retr::Params),
    Submission(submission::Params),
    PushLatency(push_latency::Params),
    Search(search::Params),
}

impl Workload {
    pub fn title(&self) -> String {
        match self {
            Workload::ImapMixed(p) => p.title(),
            Workload::IdleMemory(p) => p.title(),
            Workload::Pop3Retr(p) => p.title(),
            Workload::Submission(p) => p.title(),
            Workload::PushLatency(p) => p.title(),
            Workload::Search(p) => p.title(),
        }
    }

    /// Accounts bench1..benchN to create.
    pub fn users(&self) -> usize {
        match self {
            Workload::ImapMixed(p) => p.clients,
            Workload::IdleMemory(p) => p.users(),
            Workload::Pop3Retr(p) => p.clients,
            Workload::Submission(p) => p.clients.max(2),
            Workload::PushLatency(_) => 2,
            Workload::Search(_) => 1,
        }
    }

    /// Most sessions open at once (sizes Dovecot's process limits).
    pub fn max_sessions(&self) -> usize {
        match self {
            Workload::IdleMemory(p) => p.sessions + 10,
            _ => self.users() * 2 + 10,
        }
    }

    pub fn mailboxes(&self) -> Vec<Mailbox> {
        match self {
            Workload::ImapMixed(p) => p.mailboxes(),
            Workload::IdleMemory(p) => p.mailboxes(),
            Workload::Pop3Retr(p) => p.mailboxes(),
            Workload::Submission(_) => Vec::new(),
            Workload::PushLatency(_) => Vec::new(),
            Workload::Search(p) => p.mailboxes(),
        }
    }

    /// Untimed: what a server in steady state has done already (indexes built,
    /// caches filled).
    pub async fn warm(&self, t: &Target, ctx: &Ctx) -> Result<()> {
        match self {
            Workload::ImapMixed(p) => {
                warm_imap(
                    t,
                    ctx,
                    p.clients,
                    "FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE)",
                )
                .await
            }
            Workload::IdleMemory(p) => warm_imap(t, ctx, p.users(), "NOOP").await,
            Workload::Pop3Retr(p) => pop3_retr::warm(t, ctx, p).await,
            Workload::Submission(p) => warm_imap(t, ctx, p.clients.max(2), "NOOP").await,
            Workload::PushLatency(_) => warm_imap(t, ctx, 2, "NOOP").await,
            Workload::Search(_) => {
                warm_imap(
                    t,
                    ctx,
                    1,
                    "FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE)",
                )
                .await
            }
        }
    }

    pub async fn run(&self, t: &Target, ctx: &Ctx) -> Result<Outcome> {
        match self {
            Workload::ImapMixed(p) => imap_mixed::run(t, ctx, p).await,
            Workload::IdleMemory(p) => idle_memory::run(t, ctx, p).await,
            Workload::Pop3Retr(p) => pop3_retr::run(t, ctx, p).await,
            Workload::Submission(p) => submission::run(t, ctx, p).await,
            Workload::PushLatency(p) => push_latency::run(t, ctx, p).await,
            Workload::Search(p) => search::run(t, ctx, p).await,
        }
    }
}

/// Logs in as users 1..=n (four at a time), selects INBOX and sends `cmd`.
async fn warm_imap(t: &Target, ctx: &Ctx, n: usize, cmd: &str) -> Result<()> {
    let Some(addr) = t.ep.imap else {
        return Ok(());
    };
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(4));
    let mut tasks = Vec::new();
    for i in 1..=n {
        let (sem, ctx, cmd) = (sem.clone(), ctx.clone(), cmd.to_string());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await?;
            let user = ctx.users.name(i);
            // Generous: the first SELECT of a large mailbox may build an index.
            let mut imap = Imap::connect(addr, Duration::from_secs(600), 64 * 1024).await?;
            imap.login(&user, &ctx.users.password).await?;
            let n = imap.select("INBOX").await?;
            if n > 0 || !cmd.starts_with("FETCH") {
                imap.ok(&cmd).await?;
            }
            imap.logout().await?;
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| anyhow!("warm-up task: {e}"))??;
    }
    Ok(())
}
