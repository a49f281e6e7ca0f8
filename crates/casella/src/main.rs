//! The `casella` binary: command line, configuration, and wiring of the layers.

mod account;
mod cli;
mod cluster;
mod config;
mod connectivity;
mod dates;
mod deliver;
mod doctor;
mod listeners;
mod localserve;
mod maildir;
mod mbox;
mod migrate;
mod oauth;
mod queue;
mod retention;
mod security;
mod serve;
mod settings;
mod web;

use std::process::ExitCode;

use clap::Parser;

/// glibc raises its mmap threshold after large blocks are freed, after which
/// argon2's 19 MiB working sets come from (and stay in) the heap arenas. A fixed
/// threshold keeps large blocks mmapped and returned to the system when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; called before any thread
    // exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> ExitCode {
    tune_allocator();
    let cli = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        cli::LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // One JSON object per line: timestamp, level, target, the event's
        // fields (with its message) and the spans it happened in.
        cli::LogFormat::Json => logs.json().with_current_span(false).init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("casella: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("casella: {e:#}");
            ExitCode::FAILURE
        }
    }
}
