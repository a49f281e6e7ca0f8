//! pop3-retr: N clients, one user each, downloading their whole mailbox of M
//! messages again and again (USER/PASS, STAT, LIST, RETR 1..M, QUIT; nothing deleted).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::{Better, Ctx, Figure, Meter, Outcome};
use crate::mail::Shape;
use crate::proto::Pop3;
use crate::server::{Mailbox, Target};
use crate::stats::{Errors, Lat};

#[derive(Clone, Debug)]
pub struct Params {
    pub clients: usize,
    pub messages: usize,
    pub duration: Duration,
    /// Whole-mailbox downloads per client at most.
    pub max_rounds: u64,
}

impl Params {
    pub fn title(&self) -> String {
        format!(
            "pop3-retr: {} clients, {} messages per mailbox, {} s",
            self.clients,
            self.messages,
            self.duration.as_secs_f64()
        )
    }

    pub fn mailboxes(&self) -> Vec<Mailbox> {
        (1..=self.clients)
            .map(|u| Mailbox {
                user: u,
                count: self.messages,
                stream: 20_000 + u as u64,
                shape: Shape::default(),
            })
            .collect()
    }
}

/// Untimed: one LIST per user (Dovecot learns the sizes it reports).
pub async fn warm(t: &Target, ctx: &Ctx, p: &Params) -> Result<()> {
    let Some(addr) = t.ep.pop3 else { return Ok(()) };
    for u in 1..=p.clients {
        let mut pop = Pop3::connect(addr, Duration::from_secs(600)).await?;
        pop.login(&ctx.users.name(u), &ctx.users.password).await?;
        let sizes = pop.list().await?;
        if sizes.len() != p.messages {
            bail!(
                "{}: LIST shows {} messages, {} loaded",
                ctx.users.name(u),
                sizes.len(),
                p.messages
            );
        }
        pop.quit().await?;
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    messages: u64,
    bytes: u64,
    mailboxes: u64,
    retr: Lat,
    session: Lat,
    errors: Errors,
}

async fn download(
    addr: SocketAddr,
    ctx: &Ctx,
    user: &str,
    deadline: Instant,
    t: &mut Tally,
) -> Result<()> {
    let t0 = Instant::now();
    let mut pop = Pop3::connect(addr, ctx.timeout).await?;
    pop.login(user, &ctx.users.password).await?;
    pop.cmd("STAT").await?;
    let sizes = pop.list().await?;
    let mut complete = true;
    for (i, &size) in sizes.iter().enumerate() {
        if Instant::now() >= deadline {
            complete = false;
            break;
        }
        let r0 = Instant::now();
        let got = pop.retr(i as u32 + 1).await?;
        t.retr.add(r0.elapsed());
        // LIST gives the size with CRLF line ends; RETR's data must match it.
        if got != size {
            t.errors.add(format!(
                "{user}: RETR {}: {got} bytes, LIST said {size}",
                i + 1
            ));
        }
        t.messages += 1;
        t.bytes += got;
    }
    pop.quit().await?;
    if complete {
        t.mailboxes += 1;
        t.session.add(t0.elapsed());
    }
    Ok(())
}

async fn client(addr: SocketAddr, ctx: Ctx, p: Params, id: usize, deadline: Instant) -> Tally {
    let mut t = Tally::default();
    let user = ctx.users.name(id);
    let mut rounds = 0;
    while Instant::now() < deadline && rounds < p.max_rounds {
        rounds += 1;
        if let Err(e) = download(addr, &ctx, &user, deadline, &mut t).await {
            t.errors.add(format!("{user}: {e:#}"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    t
}

pub async fn run(t: &Target, ctx: &Ctx, p: &Params) -> Result<Outcome> {
    let mut out = Outcome::default();
    let Some(addr) = t.ep.pop3 else {
        out.figures
            .push(Figure::na("messages/s", Better::Higher, "no POP3"));
        return Ok(out);
    };
    let meter = Meter::start(t.pid);
    let deadline = Instant::now() + p.duration;
    let tasks: Vec<_> = (1..=p.clients)
        .map(|id| tokio::spawn(client(addr, ctx.clone(), p.clone(), id, deadline)))
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        match task.await {
            Ok(x) => {
                all.messages += x.messages;
                all.bytes += x.bytes;
                all.mailboxes += x.mailboxes;
                all.retr.merge(x.retr);
                all.session.merge(x.session);
                all.errors.merge(x.errors);
            }
            Err(e) => all.errors.add(format!("client task: {e}")),
        }
    }
    let usage = meter.stop();
    out.rates("messages", all.messages as f64, &usage, 0);
    out.rates("MB", all.bytes as f64 / 1e6, &usage, 1);
    out.latency("RETR", &all.retr);
    out.fig(
        "whole mailboxes downloaded",
        Some(all.mailboxes as f64),
        Better::Info,
        0,
    );
    out.fig(
        "mailbox download p50 s",
        all.session.pct_ms(50.0).map(|v| v / 1000.0),
        Better::Lower,
        2,
    );
    out.usage(&usage);
    out.errors = all.errors;
    Ok(out)
}
