//! submission: N clients, each logged in (AUTH PLAIN) as its own user, sending
//! messages of a fixed size to another local user, one transaction after another.
//! Then the same over LMTP (no AUTH) where the server has LMTP — the comparison
//! for a peer without a submission service that delivers locally. Afterwards every
//! accepted message must be in a mailbox.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Better, Ctx, Figure, Meter, Outcome};
use crate::mail::{self, Shape};
use crate::proto::{Imap, Smtp, dot_stuff};
use crate::server::Target;
use crate::stats::{Errors, Lat};

#[derive(Clone, Debug)]
pub struct Params {
    pub clients: usize,
    pub duration: Duration,
    /// Message size in bytes.
    pub size: usize,
    /// Messages per client at most.
    pub max_messages: u64,
}

impl Params {
    pub fn title(&self) -> String {
        format!(
            "submission: {} clients, {} byte messages, {} s per protocol",
            self.clients,
            self.size,
            self.duration.as_secs_f64()
        )
    }

    fn users(&self) -> usize {
        self.clients.max(2)
    }

    fn rcpt(&self, id: usize) -> usize {
        id % self.users() + 1
    }
}

#[derive(Default)]
struct Tally {
    sent: u64,
    lat: Lat,
    errors: Errors,
}

async fn client(
    addr: SocketAddr,
    lmtp: bool,
    ctx: Ctx,
    p: Params,
    id: usize,
    deadline: Instant,
) -> Tally {
    let mut t = Tally::default();
    let user = ctx.users.name(id);
    let rcpt = vec![ctx.users.name(p.rcpt(id))];
    let shape = Shape {
        min_size: p.size,
        max_size: p.size,
        from: Some(user.clone()),
    };
    let pool: Vec<Vec<u8>> = (0..8)
        .map(|i| {
            dot_stuff(&mail::message(
                ctx.seed,
                30_000 + id as u64,
                i,
                &rcpt[0],
                &shape,
            ))
        })
        .collect();
    let from = if lmtp {
        "sender@bench.example".to_string()
    } else {
        user.clone()
    };
    let mut n = 0u64;
    while Instant::now() < deadline && n < p.max_messages {
        let session = async {
            let mut s = Smtp::connect(addr, lmtp, ctx.timeout).await?;
            if !lmtp {
                s.auth_plain(&user, &ctx.users.password).await?;
            }
            anyhow::Ok(s)
        }
        .await;
        let mut s = match session {
            Ok(s) => s,
            Err(e) => {
                t.errors.add(format!("{user}: {e:#}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut broken = false;
        while Instant::now() < deadline && n < p.max_messages {
            let t0 = Instant::now();
            let r = s.send(&from, &rcpt, &pool[(n % 8) as usize]).await;
            n += 1;
            match r {
                Ok(()) => {
                    t.sent += 1;
                    t.lat.add(t0.elapsed());
                }
                Err(e) => {
                    t.errors.add(format!("{user}: {e:#}"));
                    broken = true;
                    break;
                }
            }
        }
        if !broken && let Err(e) = s.quit().await {
            t.errors.add(format!("{user}: QUIT: {e:#}"));
        }
    }
    t
}

async fn phase(
    t: &Target,
    ctx: &Ctx,
    p: &Params,
    addr: SocketAddr,
    lmtp: bool,
    label: &str,
    out: &mut Outcome,
) -> u64 {
    let meter = Meter::start(t.pid);
    let deadline = Instant::now() + p.duration;
    let tasks: Vec<_> = (1..=p.clients)
        .map(|id| tokio::spawn(client(addr, lmtp, ctx.clone(), p.clone(), id, deadline)))
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        match task.await {
            Ok(x) => {
                all.sent += x.sent;
                all.lat.merge(x.lat);
                all.errors.merge(x.errors);
            }
            Err(e) => all.errors.add(format!("client task: {e}")),
        }
    }
    let usage = meter.stop();
    out.rates(&format!("{label} messages"), all.sent as f64, &usage, 0);
    out.fig(
        format!("{label} MB/s"),
        Some(all.sent as f64 * p.size as f64 / 1e6 / usage.wall),
        Better::Higher,
        1,
    );
    out.latency(&format!("{label} message"), &all.lat);
    out.fig(
        format!("{label} server CPU s"),
        usage.server_cpu,
        Better::Info,
        2,
    );
    out.errors.merge(all.errors);
    all.sent
}

pub async fn run(t: &Target, ctx: &Ctx, p: &Params) -> Result<Outcome> {
    let mut out = Outcome::default();
    let mut sent = 0;
    match t.ep.submission {
        Some(addr) => sent += phase(t, ctx, p, addr, false, "submission", &mut out).await,
        None => out.figures.push(Figure::na(
            "submission messages/s",
            Better::Higher,
            "no submission service",
        )),
    }
    match t.ep.lmtp {
        Some(addr) => sent += phase(t, ctx, p, addr, true, "LMTP", &mut out).await,
        None => out.figures.push(Figure::na(
            "LMTP messages/s",
            Better::Higher,
            "no LMTP service",
        )),
    }
    // Every accepted message must be in a mailbox.
    if sent > 0
        && let Some(addr) = t.ep.imap
    {
        let mut found = 0u64;
        for u in 1..=p.users() {
            let mut imap = Imap::connect(addr, Duration::from_secs(120), 16 * 1024).await?;
            imap.login(&ctx.users.name(u), &ctx.users.password).await?;
            found += imap.select("INBOX").await? as u64;
            imap.logout().await?;
        }
        if found < sent {
            out.errors.add(format!(
                "{sent} messages accepted, {found} in the mailboxes"
            ));
        }
        out.details.push(format!(
            "{sent} messages accepted; {found} found in the recipients' INBOXes"
        ));
    }
    Ok(out)
}
