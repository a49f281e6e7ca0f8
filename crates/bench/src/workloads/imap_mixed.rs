//! imap-mixed: N clients, one user each, looping over a mix of what mail clients
//! do — listing (FETCH flags, envelopes, headers, body structures), reading
//! (body parts, whole messages), flagging, searching, receiving (APPEND) and
//! deleting (EXPUNGE), IDLE and NOOP, re-SELECT, and now and then a new login.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Better, Ctx, Meter, Outcome};
use crate::mail::{self, LAST, Shape};
use crate::proto::Imap;
use crate::rng::Rng;
use crate::server::{Mailbox, Target};
use crate::stats::CmdStats;

#[derive(Clone, Debug)]
pub struct Params {
    pub clients: usize,
    pub duration: Duration,
    /// Messages in each client's INBOX at the start.
    pub messages: usize,
    /// Commands per client at most (the duration usually ends the run first).
    pub max_ops: u64,
}

impl Params {
    pub fn title(&self) -> String {
        format!(
            "imap-mixed: {} clients, {} s, {} messages per mailbox",
            self.clients,
            self.duration.as_secs_f64(),
            self.messages
        )
    }

    pub fn mailboxes(&self) -> Vec<Mailbox> {
        (1..=self.clients)
            .map(|u| Mailbox {
                user: u,
                count: self.messages,
                stream: u as u64,
                shape: Shape::default(),
            })
            .collect()
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    FetchFlags,
    FetchEnvelope,
    FetchHeaders,
    FetchStructure,
    FetchPart,
    FetchWhole,
    Store,
    Search,
    Append,
    Expunge,
    Idle,
    Noop,
    Select,
    List,
    Status,
    Relogin,
}

/// The mix: (operation, weight).
const MIX: &[(Op, u32)] = &[
    (Op::FetchFlags, 12),
    (Op::FetchEnvelope, 12),
    (Op::FetchHeaders, 10),
    (Op::FetchStructure, 8),
    (Op::FetchPart, 12),
    (Op::FetchWhole, 5),
    (Op::Store, 10),
    (Op::Search, 8),
    (Op::Append, 4),
    (Op::Expunge, 4),
    (Op::Idle, 3),
    (Op::Noop, 6),
    (Op::Select, 3),
    (Op::List, 1),
    (Op::Status, 1),
    (Op::Relogin, 1),
];

pub fn mix_description() -> String {
    let total: u32 = MIX.iter().map(|m| m.1).sum();
    MIX.iter()
        .map(|(op, w)| format!("{op:?} {:.0}%", *w as f64 * 100.0 / total as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Client {
    addr: SocketAddr,
    ctx: Ctx,
    user: String,
    id: usize,
    rng: Rng,
    imap: Option<Imap>,
    stats: CmdStats,
    appended: u64,
    initial: u32,
    bytes_in_closed: u64,
}

impl Client {
    async fn connect(&mut self) -> Result<()> {
        if let Some(old) = self.imap.take() {
            self.bytes_in_closed += old.bytes_in();
        }
        let t0 = Instant::now();
        let mut imap = Imap::connect(self.addr, self.ctx.timeout, 64 * 1024).await?;
        imap.login(&self.user, &self.ctx.users.password).await?;
        self.stats.add("LOGIN", t0.elapsed());
        let t0 = Instant::now();
        imap.select("INBOX").await?;
        self.stats.add("SELECT", t0.elapsed());
        self.imap = Some(imap);
        Ok(())
    }

    /// A random range of `len` messages: "a:b".
    fn range(&mut self, len: u32) -> String {
        let n = self.imap.as_ref().map_or(1, |i| i.exists).max(1);
        if n <= len {
            return "1:*".into();
        }
        let a = 1 + self.rng.below((n - len + 1) as u64) as u32;
        format!("{a}:{}", a + len - 1)
    }

    fn one(&mut self) -> u32 {
        let n = self.imap.as_ref().map_or(1, |i| i.exists).max(1);
        1 + self.rng.below(n as u64) as u32
    }

    async fn cmd(&mut self, name: &'static str, line: &str) -> Result<()> {
        let imap = self.imap.as_mut().expect("connected");
        let t0 = Instant::now();
        imap.ok(line).await?;
        self.stats.add(name, t0.elapsed());
        Ok(())
    }

    async fn step(&mut self, op: Op) -> Result<()> {
        let exists = self.imap.as_ref().map_or(0, |i| i.exists);
        let op = match op {
            _ if exists == 0 => Op::Append,
            Op::Expunge if exists <= self.initial => Op::Noop,
            op => op,
        };
        match op {
            Op::FetchFlags => {
                let r = self.range(50);
                self.cmd("FETCH flags", &format!("FETCH {r} (UID FLAGS)"))
                    .await
            }
            Op::FetchEnvelope => {
                let r = self.range(20);
                self.cmd(
                    "FETCH envelope",
                    &format!("FETCH {r} (UID RFC822.SIZE INTERNALDATE FLAGS ENVELOPE)"),
                )
                .await
            }
            Op::FetchHeaders => {
                let r = self.range(20);
                self.cmd(
                    "FETCH headers",
                    &format!(
                        "FETCH {r} (UID BODY.PEEK[HEADER.FIELDS (FROM TO CC SUBJECT DATE MESSAGE-ID CONTENT-TYPE)])"
                    ),
                )
                .await
            }
            Op::FetchStructure => {
                let r = self.range(10);
                self.cmd(
                    "FETCH bodystructure",
                    &format!("FETCH {r} (UID BODYSTRUCTURE)"),
                )
                .await
            }
            Op::FetchPart => {
                let n = self.one();
                self.cmd(
                    "FETCH body part",
                    &format!("FETCH {n} (BODY.PEEK[1] BODY.PEEK[HEADER])"),
                )
                .await
            }
            Op::FetchWhole => {
                let n = self.one();
                self.cmd("FETCH whole message", &format!("FETCH {n} (BODY.PEEK[])"))
                    .await
            }
            Op::Store => {
                let n = self.one();
                let (sign, flag) = (
                    *self.rng.pick(&["+", "-"]),
                    *self
                        .rng
                        .pick(&["\\Seen", "\\Flagged", "\\Answered", "$Important"]),
                );
                self.cmd("STORE", &format!("STORE {n} {sign}FLAGS ({flag})"))
                    .await
            }
            Op::Search => {
                let line = match self.rng.below(5) {
                    0 => "SEARCH UNSEEN".to_string(),
                    1 => "UID SEARCH FLAGGED".to_string(),
                    2 => format!("SEARCH FROM \"{}\"", self.rng.pick(LAST)),
                    3 => format!(
                        "SEARCH SUBJECT \"{}\"",
                        self.rng
                            .pick(&["meeting", "report", "budget", "invoice", "review"])
                    ),
                    _ => format!(
                        "SEARCH SINCE {}-Jan-2024 NOT DELETED",
                        1 + self.rng.below(28)
                    ),
                };
                self.cmd("SEARCH", &line).await
            }
            Op::Append => {
                let msg = mail::message(
                    self.ctx.seed,
                    1_000_000 + self.id as u64,
                    self.appended,
                    &self.user,
                    &Shape::default(),
                );
                self.appended += 1;
                let imap = self.imap.as_mut().expect("connected");
                let t0 = Instant::now();
                imap.append("INBOX", "\\Seen", &msg).await?.ok("APPEND")?;
                self.stats.add("APPEND", t0.elapsed());
                Ok(())
            }
            Op::Expunge => {
                // Deletes the newest message (an appended one): the size stays stable.
                self.cmd(
                    "STORE",
                    &format!("STORE {exists} +FLAGS.SILENT (\\Deleted)"),
                )
                .await?;
                self.cmd("EXPUNGE", "EXPUNGE").await
            }
            Op::Idle => {
                let imap = self.imap.as_mut().expect("connected");
                let t0 = Instant::now();
                let tag = imap.idle_start().await?;
                imap.idle_done(&tag).await?.ok("IDLE")?;
                self.stats.add("IDLE+DONE", t0.elapsed());
                Ok(())
            }
            Op::Noop => self.cmd("NOOP", "NOOP").await,
            Op::Select => {
                let imap = self.imap.as_mut().expect("connected");
                let t0 = Instant::now();
                imap.select("INBOX").await?;
                self.stats.add("SELECT", t0.elapsed());
                Ok(())
            }
            Op::List => self.cmd("LIST", "LIST \"\" \"*\"").await,
            Op::Status => {
                self.cmd("STATUS", "STATUS INBOX (MESSAGES UNSEEN UIDNEXT)")
                    .await
            }
            Op::Relogin => {
                let imap = self.imap.take().expect("connected");
                self.bytes_in_closed += imap.bytes_in();
                let t0 = Instant::now();
                imap.logout().await?;
                self.stats.add("LOGOUT", t0.elapsed());
                self.connect().await
            }
        }
    }
}

async fn client(addr: SocketAddr, ctx: Ctx, p: Params, id: usize, deadline: Instant) -> CmdStats {
    let mut c = Client {
        addr,
        ctx: ctx.clone(),
        user: ctx.users.name(id),
        id,
        rng: Rng::derive(ctx.seed, 500, id as u64),
        imap: None,
        stats: CmdStats::default(),
        appended: 0,
        initial: p.messages as u32,
        bytes_in_closed: 0,
    };
    let weights: Vec<u32> = MIX.iter().map(|m| m.1).collect();
    let mut ops = 0u64;
    while Instant::now() < deadline && ops < p.max_ops {
        if c.imap.is_none()
            && let Err(e) = c.connect().await
        {
            c.stats.errors.add(format!("{}: login: {e:#}", c.user));
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let op = MIX[c.rng.weighted(&weights)].0;
        ops += 1;
        if let Err(e) = c.step(op).await {
            c.stats.errors.add(format!("{}: {op:?}: {e:#}", c.user));
            if let Some(old) = c.imap.take() {
                c.bytes_in_closed += old.bytes_in();
            }
        }
    }
    if let Some(imap) = c.imap.take() {
        c.bytes_in_closed += imap.bytes_in();
        if let Err(e) = imap.logout().await {
            c.stats.errors.add(format!("{}: LOGOUT: {e:#}", c.user));
        }
    }
    c.stats.bytes_in = c.bytes_in_closed;
    c.stats
}

pub async fn run(t: &Target, ctx: &Ctx, p: &Params) -> Result<Outcome> {
    let mut out = Outcome::default();
    let Some(addr) = t.ep.imap else {
        out.figures
            .push(super::Figure::na("commands/s", Better::Higher, "no IMAP"));
        return Ok(out);
    };
    let meter = Meter::start(t.pid);
    let deadline = Instant::now() + p.duration;
    let mut stats = CmdStats::default();
    let tasks: Vec<_> = (1..=p.clients)
        .map(|id| tokio::spawn(client(addr, ctx.clone(), p.clone(), id, deadline)))
        .collect();
    for task in tasks {
        match task.await {
            Ok(s) => stats.merge(s),
            Err(e) => stats.errors.add(format!("client task: {e}")),
        }
    }
    let usage = meter.stop();
    let total = stats.total();
    out.rates("commands", total.count() as f64, &usage, 0);
    out.latency("all commands", &total);
    out.fig(
        "MB/s received",
        Some(stats.bytes_in as f64 / 1e6 / usage.wall),
        Better::Info,
        1,
    );
    out.usage(&usage);
    out.details.push(format!("mix: {}", mix_description()));
    out.details.push(format!(
        "{:<22} {:>9} {:>9} {:>9} {:>9}",
        "command", "per s", "p50 ms", "p99 ms", "max ms"
    ));
    for (name, lat) in &stats.by_cmd {
        out.details.push(format!(
            "{:<22} {:>9.1} {:>9.2} {:>9.2} {:>9.2}",
            name,
            lat.count() as f64 / usage.wall,
            lat.pct_ms(50.0).unwrap_or(0.0),
            lat.pct_ms(99.0).unwrap_or(0.0),
            lat.pct_ms(100.0).unwrap_or(0.0)
        ));
    }
    out.errors = stats.errors;
    Ok(out)
}
