//! push-latency: one client IDLEs on INBOX while another delivers a message to
//! that INBOX (IMAP APPEND from a second session, or LMTP); the figure is the time
//! from the start of the delivery to the `* N EXISTS` the idling client reads.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Better, Ctx, Figure, Outcome};
use crate::mail::{self, Shape};
use crate::proto::{Imap, Smtp, dot_stuff};
use crate::server::Target;
use crate::stats::{Errors, Lat};

#[derive(Clone, Debug)]
pub struct Params {
    pub samples: usize,
    /// Longest time for all samples of one delivery method.
    pub duration: Duration,
    /// Pause between samples.
    pub gap: Duration,
}

impl Params {
    pub fn title(&self) -> String {
        format!(
            "push-latency: {} samples per delivery method (at most {} s), IDLE on INBOX",
            self.samples,
            self.duration.as_secs_f64()
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Append,
    Lmtp,
}

enum Deliverer {
    Append(Imap),
    Lmtp(Smtp),
}

/// Longest wait for one EXISTS (Dovecot falls back to a 30 s poll).
const EXISTS_LIMIT: Duration = Duration::from_secs(35);

async fn phase(t: &Target, ctx: &Ctx, p: &Params, via: Via) -> Result<(Lat, Lat, Errors)> {
    let addr = t.ep.imap.expect("imap");
    let user = ctx.users.name(1);
    let mut lat = Lat::default();
    let mut ack = Lat::default();
    let mut errors = Errors::default();
    let mut idle = Imap::connect(addr, ctx.timeout, 16 * 1024).await?;
    idle.login(&user, &ctx.users.password).await?;
    idle.select("INBOX").await?;
    let mut deliverer = match via {
        Via::Append => {
            let mut d = Imap::connect(addr, ctx.timeout, 16 * 1024).await?;
            d.login(&user, &ctx.users.password).await?;
            Deliverer::Append(d)
        }
        Via::Lmtp => {
            Deliverer::Lmtp(Smtp::connect(t.ep.lmtp.expect("lmtp"), true, ctx.timeout).await?)
        }
    };
    let shape = Shape {
        min_size: 3000,
        max_size: 8000,
        from: None,
    };
    let pool: Vec<Vec<u8>> = (0..8)
        .map(|i| mail::message(ctx.seed, 40_000, i, &user, &shape))
        .collect();
    let stuffed: Vec<Vec<u8>> = pool.iter().map(|m| dot_stuff(m)).collect();
    let rcpt = vec![user.clone()];
    let tag = idle.idle_start().await?;
    let deadline = Instant::now() + p.duration;
    let mut i = 0usize;
    while i < p.samples && Instant::now() < deadline {
        let prev = idle.exists;
        let k = i % pool.len();
        i += 1;
        let t0 = Instant::now();
        let deliver = async {
            let r = match &mut deliverer {
                Deliverer::Append(d) => d
                    .append("INBOX", "", &pool[k])
                    .await
                    .and_then(|r| r.ok("APPEND").map(|_| ())),
                Deliverer::Lmtp(s) => s.send("sender@bench.example", &rcpt, &stuffed[k]).await,
            };
            (r, Instant::now())
        };
        let wait = async {
            let r = idle.idle_wait_exists(&tag, prev, EXISTS_LIMIT).await;
            (r, Instant::now())
        };
        let ((dr, t_ack), (er, t_exists)) = tokio::join!(deliver, wait);
        match (dr, er) {
            (Ok(()), Ok(_)) => {
                lat.add(t_exists - t0);
                ack.add(t_ack - t0);
            }
            (Err(e), _) => {
                errors.add(format!("{via:?} delivery: {e:#}"));
                break;
            }
            (_, Err(e)) => {
                errors.add(format!("IDLE: {e:#}"));
                break;
            }
        }
        tokio::time::sleep(p.gap).await;
    }
    if errors.count == 0 {
        idle.idle_done(&tag).await?.ok("IDLE")?;
        idle.logout().await?;
        match deliverer {
            Deliverer::Append(d) => d.logout().await?,
            Deliverer::Lmtp(s) => s.quit().await?,
        }
    }
    Ok((lat, ack, errors))
}

pub async fn run(t: &Target, ctx: &Ctx, p: &Params) -> Result<Outcome> {
    let mut out = Outcome::default();
    if t.ep.imap.is_none() {
        out.figures
            .push(Figure::na("push p99 ms", Better::Lower, "no IMAP"));
        return Ok(out);
    }
    for via in [Via::Append, Via::Lmtp] {
        let label = match via {
            Via::Append => "APPEND→EXISTS",
            Via::Lmtp => "LMTP→EXISTS",
        };
        if via == Via::Lmtp && t.ep.lmtp.is_none() {
            out.figures.push(Figure::na(
                format!("{label} p50 ms"),
                Better::Lower,
                "no LMTP",
            ));
            out.figures.push(Figure::na(
                format!("{label} p99 ms"),
                Better::Lower,
                "no LMTP",
            ));
            continue;
        }
        match phase(t, ctx, p, via).await {
            Ok((lat, ack, errors)) => {
                out.latency(label, &lat);
                out.fig(
                    format!("{label} max ms"),
                    lat.pct_ms(100.0),
                    Better::Lower,
                    2,
                );
                out.fig(
                    format!("{label} samples"),
                    Some(lat.count() as f64),
                    Better::Info,
                    0,
                );
                out.fig(
                    format!("{label}: delivery acknowledged p50 ms"),
                    ack.pct_ms(50.0),
                    Better::Lower,
                    2,
                );
                out.errors.merge(errors);
            }
            Err(e) => out.errors.add(format!("{label}: {e:#}")),
        }
    }
    Ok(out)
}
