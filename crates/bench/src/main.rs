//! casella-bench: drives IMAP, POP3 and SMTP servers on loopback with fixed,
//! seeded workloads and reports rates, latency percentiles, server CPU and memory —
//! for casella, and with `--peer dovecot` for Dovecot beside it in one table.

mod mail;
mod procfs;
mod proto;
mod report;
mod rng;
mod server;
mod stats;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use server::{DovecotMode, Endpoints, Target, Users};
use workloads::{Ctx, Outcome, Workload};
use workloads::{idle_memory, imap_mixed, pop3_retr, push_latency, search, submission};

#[derive(Parser, Debug)]
#[command(
    name = "casella-bench",
    about = "Benchmarks IMAP, POP3 and SMTP servers on loopback: casella, and Dovecot beside it with --peer dovecot",
    after_help = "Every workload starts its own servers in temp dirs (unless --target), loads the same \
                  generated mail into each, warms them up, runs the timed phase on each in turn, prints one \
                  Markdown table and stops every process it started. A run with protocol errors is not a \
                  result: the table shows them and the exit status is 1."
)]
struct Cli {
    /// The casella binary to start.
    #[arg(long, global = true, default_value = "target/release/casella")]
    casella: PathBuf,
    /// Also run the workload on this peer (started and stopped by the bench).
    #[arg(long, global = true, value_enum)]
    peer: Option<Peer>,
    /// Dovecot configurations to compare: default (a login process per connection),
    /// fast (high-performance login mode: service_count = 0, process_min_avail).
    #[arg(
        long,
        global = true,
        value_enum,
        value_delimiter = ',',
        default_value = "default,fast"
    )]
    dovecot_modes: Vec<ModeArg>,
    /// Password scheme in Dovecot's passwd-file: argon2id (casella's parameters, the
    /// same hashing cost per login) or plain.
    #[arg(long, global = true, default_value = "argon2id")]
    dovecot_password_scheme: String,
    /// Drive a running server instead of starting casella:
    /// imap=HOST:PORT,pop3=HOST:PORT,submission=HOST:PORT,lmtp=HOST:PORT.
    /// Its users (--user-format, --password) must exist.
    #[arg(long, global = true)]
    target: Option<String>,
    /// PID of the --target server's root process, for CPU and memory figures.
    #[arg(long, global = true)]
    target_pid: Option<u32>,
    /// With --target: the mail is already there; load nothing.
    #[arg(long, global = true)]
    no_load: bool,
    /// Start casella with its SEARCH text index off (`search-index = false`;
    /// on is the default).
    #[arg(long, global = true)]
    no_search_index: bool,
    /// The default now (kept so older command lines still run).
    #[arg(long, global = true, hide = true)]
    search_index: bool,
    /// User names; {} is replaced by 1, 2, 3…
    #[arg(long, global = true, default_value = "bench{}@bench.test")]
    user_format: String,
    #[arg(long, global = true, default_value = "bench-password")]
    password: String,
    /// Seed of the generated mail and of every client's choices.
    #[arg(long, global = true, default_value_t = 1)]
    seed: u64,
    /// Timed runs per server, alternating between servers; the table shows medians.
    #[arg(long, global = true, default_value_t = 1)]
    rounds: usize,
    /// Longest wait for one reply, in seconds (longer ones count as errors).
    #[arg(long, global = true, default_value_t = 60.0)]
    timeout: f64,
    /// Also append the report to this file.
    #[arg(long, global = true)]
    output: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Peer {
    Dovecot,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum ModeArg {
    Default,
    Fast,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// N clients looping over a realistic IMAP command mix.
    ImapMixed {
        #[arg(long, default_value_t = 10)]
        clients: usize,
        /// Seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Messages in each client's INBOX.
        #[arg(long, default_value_t = 200)]
        messages: usize,
        /// Commands per client at most.
        #[arg(long, default_value_t = 10_000_000)]
        max_ops: u64,
    },
    /// K authenticated IDLE sessions; server memory per session.
    IdleMemory {
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
        /// Users the sessions are spread over [default: min(sessions, 100)].
        #[arg(long)]
        users: Option<usize>,
        #[arg(long, default_value_t = 20)]
        messages: usize,
        /// Sessions being opened at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Seconds allowed for opening all sessions.
        #[arg(long, default_value_t = 900.0)]
        open_timeout: f64,
        /// Seconds between the last session opened and the measurement.
        #[arg(long, default_value_t = 3.0)]
        settle: f64,
        /// Stop opening sessions when the machine has less memory available (MiB).
        #[arg(long, default_value_t = 3072)]
        min_available_mib: u64,
    },
    /// N clients downloading whole mailboxes of M messages over POP3.
    Pop3Retr {
        #[arg(long, default_value_t = 10)]
        clients: usize,
        #[arg(long, default_value_t = 500)]
        messages: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[arg(long, default_value_t = 1_000_000)]
        max_rounds: u64,
    },
    /// N clients sending messages to local users (submission, then LMTP).
    Submission {
        #[arg(long, default_value_t = 10)]
        clients: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Message size in bytes.
        #[arg(long, default_value_t = 10240)]
        size: usize,
        #[arg(long, default_value_t = 10_000_000)]
        max_messages: u64,
    },
    /// Delivery-to-EXISTS latency seen by an IDLE client.
    PushLatency {
        #[arg(long, default_value_t = 200)]
        samples: usize,
        /// Seconds at most per delivery method.
        #[arg(long, default_value_t = 60.0)]
        duration: f64,
        /// Milliseconds between samples.
        #[arg(long, default_value_t = 10)]
        gap_ms: u64,
    },
    /// SEARCH TEXT / BODY / FROM on one large folder.
    Search {
        #[arg(long, default_value_t = 10_000)]
        messages: usize,
        /// Timed queries per kind.
        #[arg(long, default_value_t = 20)]
        queries: usize,
        /// Seconds at most for the timed queries.
        #[arg(long, default_value_t = 120.0)]
        duration: f64,
        /// Seconds at most for one query.
        #[arg(long, default_value_t = 600.0)]
        query_timeout: f64,
    },
    /// Every workload with its defaults, one after another.
    All,
    /// Every workload for about a second with tiny sizes, against casella only (the
    /// test suite runs this).
    Quick,
    /// Print the Dovecot configuration the bench generates (for each --dovecot-modes),
    /// with DIR for the temp dir and example ports; starts nothing.
    DovecotConfig {
        /// Sessions the configuration must allow.
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
    },
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn defaults() -> Vec<Workload> {
    vec![
        Workload::ImapMixed(imap_mixed::Params {
            clients: 10,
            duration: secs(10.0),
            messages: 200,
            max_ops: 10_000_000,
        }),
        Workload::IdleMemory(idle_memory::Params {
            sessions: 1000,
            users: None,
            messages: 20,
            concurrency: 32,
            open_timeout: secs(900.0),
            settle: secs(3.0),
            min_available: 3072 << 20,
        }),
        Workload::Pop3Retr(pop3_retr::Params {
            clients: 10,
            messages: 500,
            duration: secs(10.0),
            max_rounds: 1_000_000,
        }),
        Workload::Submission(submission::Params {
            clients: 10,
            duration: secs(10.0),
            size: 10240,
            max_messages: 10_000_000,
        }),
        Workload::PushLatency(push_latency::Params {
            samples: 200,
            duration: secs(60.0),
            gap: Duration::from_millis(10),
        }),
        Workload::Search(search::Params {
            messages: 10_000,
            queries: 20,
            duration: secs(120.0),
            query_timeout: secs(600.0),
        }),
    ]
}

fn quick() -> Vec<Workload> {
    vec![
        Workload::ImapMixed(imap_mixed::Params {
            clients: 3,
            duration: secs(1.0),
            messages: 20,
            max_ops: 100_000,
        }),
        Workload::IdleMemory(idle_memory::Params {
            sessions: 20,
            users: Some(4),
            messages: 3,
            concurrency: 8,
            open_timeout: secs(30.0),
            settle: secs(0.2),
            min_available: 0,
        }),
        Workload::Pop3Retr(pop3_retr::Params {
            clients: 2,
            messages: 20,
            duration: secs(1.0),
            max_rounds: 1000,
        }),
        Workload::Submission(submission::Params {
            clients: 2,
            duration: secs(0.5),
            size: 10240,
            max_messages: 1000,
        }),
        Workload::PushLatency(push_latency::Params {
            samples: 10,
            duration: secs(5.0),
            gap: Duration::from_millis(5),
        }),
        Workload::Search(search::Params {
            messages: 100,
            queries: 3,
            duration: secs(5.0),
            query_timeout: secs(30.0),
        }),
    ]
}

impl Cli {
    fn workloads(&self) -> Vec<Workload> {
        match &self.cmd {
            &Cmd::ImapMixed {
                clients,
                duration,
                messages,
                max_ops,
            } => {
                vec![Workload::ImapMixed(imap_mixed::Params {
                    clients: clients.max(1),
                    duration: secs(duration),
                    messages,
                    max_ops,
                })]
            }
            &Cmd::IdleMemory {
                sessions,
                users,
                messages,
                concurrency,
                open_timeout,
                settle,
                min_available_mib,
            } => vec![Workload::IdleMemory(idle_memory::Params {
                sessions,
                users,
                messages,
                concurrency,
                open_timeout: secs(open_timeout),
                settle: secs(settle),
                min_available: min_available_mib << 20,
            })],
            &Cmd::Pop3Retr {
                clients,
                messages,
                duration,
                max_rounds,
            } => {
                vec![Workload::Pop3Retr(pop3_retr::Params {
                    clients: clients.max(1),
                    messages,
                    duration: secs(duration),
                    max_rounds,
                })]
            }
            &Cmd::Submission {
                clients,
                duration,
                size,
                max_messages,
            } => {
                vec![Workload::Submission(submission::Params {
                    clients: clients.max(1),
                    duration: secs(duration),
                    size: size.max(500),
                    max_messages,
                })]
            }
            &Cmd::PushLatency {
                samples,
                duration,
                gap_ms,
            } => {
                vec![Workload::PushLatency(push_latency::Params {
                    samples,
                    duration: secs(duration),
                    gap: Duration::from_millis(gap_ms),
                })]
            }
            &Cmd::Search {
                messages,
                queries,
                duration,
                query_timeout,
            } => {
                vec![Workload::Search(search::Params {
                    messages,
                    queries,
                    duration: secs(duration),
                    query_timeout: secs(query_timeout),
                })]
            }
            Cmd::All => defaults(),
            Cmd::Quick => quick(),
            Cmd::DovecotConfig { .. } => Vec::new(),
        }
    }

    fn quick(&self) -> bool {
        matches!(self.cmd, Cmd::Quick)
    }
}

/// Longest wait for casella's background text index to read the loaded mail.
const INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(1800);

/// Starts the servers for one workload (casella or --target first, then the peers).
fn start_targets(
    cli: &Cli,
    w: &Workload,
    users: &Users,
    notes: &mut Vec<String>,
) -> Result<Vec<Target>> {
    let mut targets = Vec::new();
    let n = w.users();
    match &cli.target {
        Some(spec) => targets.push(server::external(
            Endpoints::parse(spec)?,
            cli.target_pid,
            !cli.no_load,
        )),
        None => targets.push(server::start_casella(
            &cli.casella,
            users,
            n,
            !cli.no_search_index,
        )?),
    }
    if matches!(cli.peer, Some(Peer::Dovecot)) && !cli.quick() {
        if !server::dovecot_installed() {
            notes.push(format!(
                "Dovecot is not installed ({} missing): casella only. Install dovecot-imapd and dovecot-pop3d to compare.",
                server::DOVECOT
            ));
        } else {
            let entry =
                server::dovecot_password(&users.password, &cli.dovecot_password_scheme, cli.seed)?;
            for m in &cli.dovecot_modes {
                let mode = match m {
                    ModeArg::Default => DovecotMode::Default,
                    ModeArg::Fast => DovecotMode::Fast,
                };
                targets.push(server::start_dovecot(
                    mode,
                    users,
                    n,
                    &entry,
                    w.max_sessions(),
                )?);
            }
        }
    }
    Ok(targets)
}

async fn run_workload(cli: &Cli, w: &Workload, ctx: &Ctx) -> Result<(String, u64)> {
    eprintln!("== {}", w.title());
    let mut notes = Vec::new();
    let targets = {
        let (cli_users, w2) = (ctx.users.clone(), w.clone());
        // Starting servers blocks (process spawns, password hashing).
        tokio::task::block_in_place(|| start_targets(cli, &w2, &cli_users, &mut notes))?
    };
    let boxes = w.mailboxes();
    for t in &targets {
        server::load(t, &ctx.users, ctx.seed, &boxes).await?;
        if let Some(took) = tokio::task::block_in_place(|| server::wait_for_index(t, INDEX_WAIT))? {
            eprintln!(
                "  {}: search index caught up {:.1} s after loading",
                t.name,
                took.as_secs_f64()
            );
        }
        let t0 = std::time::Instant::now();
        w.warm(t, ctx)
            .await
            .map_err(|e| anyhow::anyhow!("warming up {}: {e:#}\n{}", t.name, t.log_tail()))?;
        eprintln!(
            "  {}: warmed up in {:.1} s",
            t.name,
            t0.elapsed().as_secs_f64()
        );
    }
    let rounds = cli.rounds.max(1);
    let mut results: Vec<Vec<Outcome>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        let k = targets.len();
        for j in 0..k {
            let i = (j + round) % k;
            let t = &targets[i];
            eprintln!("  running on {} (round {}/{rounds})", t.name, round + 1);
            let outcome = match w.run(t, ctx).await {
                Ok(o) => o,
                Err(e) => {
                    let mut o = Outcome::default();
                    o.errors.add(format!("{e:#}"));
                    o
                }
            };
            if outcome.errors.count > 0 {
                eprintln!(
                    "  {}: {} protocol errors, first: {:?}",
                    t.name, outcome.errors.count, outcome.errors.first
                );
                let tail = t.log_tail();
                if !tail.is_empty() {
                    eprintln!("  {} log (last lines):\n{tail}", t.name);
                }
            }
            results[i].push(outcome);
        }
    }
    for t in &targets {
        for line in t.log_problems() {
            notes.push(format!("{} logged: `{}`", t.name, line.replace('`', "'")));
        }
    }
    let md = report::render(&w.title(), &targets, &results, &notes);
    let errors = results.iter().flatten().map(|o| o.errors.count).sum();
    if cli.quick() {
        report::check_quick(&w.title(), &results)?;
    }
    drop(targets);
    Ok((md, errors))
}

async fn run(cli: Cli) -> Result<u64> {
    if let Cmd::DovecotConfig { sessions } = cli.cmd {
        for m in &cli.dovecot_modes {
            let mode = match m {
                ModeArg::Default => DovecotMode::Default,
                ModeArg::Fast => DovecotMode::Fast,
            };
            let ports = server::DovecotPorts {
                imap: 10143,
                pop3: 10110,
                lmtp: None,
            };
            println!("# --- mode {mode:?}");
            print!(
                "{}",
                server::dovecot_config(
                    std::path::Path::new("DIR"),
                    mode,
                    &ports,
                    server::dovecot_limit(sessions)
                )
            );
        }
        return Ok(0);
    }
    let nofile = procfs::raise_nofile();
    let ctx = Ctx {
        users: Users {
            format: cli.user_format.clone(),
            password: cli.password.clone(),
        },
        seed: cli.seed,
        timeout: secs(cli.timeout),
    };
    if let Cmd::IdleMemory { sessions, .. } = cli.cmd {
        // Each session: a socket here, and one in a server on this machine.
        if sessions as u64 + 200 > nofile {
            bail!(
                "{sessions} sessions need more open files than the limit here ({nofile}); raise ulimit -n"
            );
        }
    }
    let mut errors = 0;
    let mut all = String::new();
    for w in cli.workloads() {
        let (md, e) = run_workload(&cli, &w, &ctx).await?;
        println!("{md}");
        all.push_str(&md);
        all.push('\n');
        errors += e;
    }
    if let Some(path) = &cli.output {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(
            f,
            "<!-- casella-bench {} -->",
            std::env::args().skip(1).collect::<Vec<_>>().join(" ")
        )?;
        f.write_all(all.as_bytes())?;
    }
    if cli.quick() {
        println!("quick: every workload ran, {errors} protocol errors");
    }
    Ok(errors)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("casella-bench: {e}");
            return ExitCode::from(2);
        }
    };
    // On SIGINT or SIGTERM the run is dropped: the guards stop every server started.
    let result = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = run(cli) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
            _ = term.recv() => Err(anyhow::anyhow!("terminated")),
        }
    });
    // Dropping the runtime ends the client tasks; servers were stopped by their guards.
    rt.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(n) => {
            eprintln!("casella-bench: {n} protocol errors: not a valid result");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("casella-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}
