//! search: SEARCH TEXT, BODY and FROM over one large INBOX, one query at a time.
//! TEXT and BODY look for rare words (each in about 4% of the messages), FROM for
//! a family name (1 sender in 20).

use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Better, Ctx, Figure, Meter, Outcome};
use crate::mail::{LAST, RARE, Shape};
use crate::proto::{Imap, search_hits};
use crate::server::{Mailbox, Target};
use crate::stats::{Errors, Lat};

#[derive(Clone, Debug)]
pub struct Params {
    pub messages: usize,
    /// Timed queries per kind at most.
    pub queries: usize,
    /// Longest time for all timed queries.
    pub duration: Duration,
    /// Longest wait for one query.
    pub query_timeout: Duration,
}

impl Params {
    pub fn title(&self) -> String {
        format!(
            "search: {} messages in INBOX, up to {} queries per kind (at most {} s)",
            self.messages,
            self.queries,
            self.duration.as_secs_f64()
        )
    }

    pub fn mailboxes(&self) -> Vec<Mailbox> {
        vec![Mailbox {
            user: 1,
            count: self.messages,
            stream: 50_000,
            shape: Shape::default(),
        }]
    }
}

const KINDS: [&str; 3] = ["TEXT", "BODY", "FROM"];

fn query(kind: &str, i: usize) -> String {
    let term = match kind {
        "FROM" => LAST[i % LAST.len()],
        _ => RARE[i % RARE.len()],
    };
    format!("SEARCH {kind} \"{term}\"")
}

pub async fn run(t: &Target, ctx: &Ctx, p: &Params) -> Result<Outcome> {
    let mut out = Outcome::default();
    let Some(addr) = t.ep.imap else {
        out.figures
            .push(Figure::na("SEARCH TEXT p50 ms", Better::Lower, "no IMAP"));
        return Ok(out);
    };
    let mut imap = Imap::connect(addr, p.query_timeout, 64 * 1024).await?;
    imap.login(&ctx.users.name(1), &ctx.users.password).await?;
    let n = imap.select("INBOX").await?;
    // Untimed: one query of each kind.
    for kind in KINDS {
        imap.ok(&query(kind, 0)).await?;
    }
    let mut lat: Vec<Lat> = vec![Lat::default(); KINDS.len()];
    let mut hits = vec![0usize; KINDS.len()];
    let mut errors = Errors::default();
    let meter = Meter::start(t.pid);
    let deadline = Instant::now() + p.duration;
    'outer: for i in 0..p.queries {
        for (k, kind) in KINDS.iter().enumerate() {
            if Instant::now() >= deadline {
                break 'outer;
            }
            let q = query(kind, i);
            let t0 = Instant::now();
            match imap.ok(&q).await {
                Ok(r) => {
                    lat[k].add(t0.elapsed());
                    hits[k] += search_hits(&r.untagged);
                }
                Err(e) => {
                    errors.add(format!("{q}: {e:#}"));
                    break 'outer;
                }
            }
        }
    }
    let usage = meter.stop();
    let total: usize = lat.iter().map(Lat::count).sum();
    for (k, kind) in KINDS.iter().enumerate() {
        out.fig(
            format!("SEARCH {kind} p50 ms"),
            lat[k].pct_ms(50.0),
            Better::Lower,
            1,
        );
        out.fig(
            format!("SEARCH {kind} max ms"),
            lat[k].pct_ms(100.0),
            Better::Lower,
            1,
        );
        out.fig(
            format!("SEARCH {kind} mean hits"),
            (lat[k].count() > 0).then(|| hits[k] as f64 / lat[k].count() as f64),
            Better::Info,
            1,
        );
    }
    out.fig(
        "server CPU ms per query",
        usage
            .server_cpu
            .filter(|_| total > 0)
            .map(|c| c * 1000.0 / total as f64),
        Better::Lower,
        1,
    );
    out.fig("queries", Some(total as f64), Better::Info, 0);
    out.details.push(format!("INBOX holds {n} messages"));
    if errors.count == 0 {
        imap.logout().await?;
    }
    out.errors = errors;
    Ok(out)
}
