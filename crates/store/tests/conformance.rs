//! The conformance rules (`casella_store::conformance::RULES`) as tests: each
//! rule against each backend — the embedded store with its text index and
//! without it, and PostgreSQL (a throwaway PostgreSQL 15 cluster started here,
//! a database per rule; skipped with a line when its binaries are missing,
//! unless `CASELLA_REQUIRE_CLIENTS=1`).
//!
//! Its own small harness (`harness = false`) so that one PostgreSQL cluster
//! serves every rule and is stopped at the end: each (backend, rule) is
//! reported as a test of its own, a failing rule does not stop the others, and
//! `cargo test -p casella-store --test conformance -- NAME` runs the tests
//! whose name contains NAME.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use casella_store::Store;
use casella_store::conformance::{RULES, Rule};
use casella_store::postgres::PgStore;
use casella_store::sqlite::SqliteStore;
use casella_testkit::postgres::Cluster;

/// A fresh, empty store of one backend; `held` keeps what it needs alive.
struct Fresh {
    store: Arc<dyn Store>,
    _held: Option<tempfile::TempDir>,
}

async fn embedded(text_index: bool) -> Fresh {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open_with(dir.path(), Some(text_index)).expect("open");
    Fresh {
        store: Arc::new(store),
        _held: Some(dir),
    }
}

async fn shared(cluster: &Cluster, name: &str) -> Fresh {
    let url = cluster.database(name);
    let store = PgStore::connect(&url).await.expect("connect");
    Fresh {
        store: Arc::new(store),
        _held: None,
    }
}

/// Runs one rule in a task of its own (a panic fails that rule only).
async fn run(rule: Rule, fresh: Fresh) -> Result<(), String> {
    let outcome = tokio::spawn(rule(fresh.store.clone())).await;
    drop(fresh);
    outcome.map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let needs_postgres = RULES
        .iter()
        .any(|(rule, _)| wanted(&format!("postgres::{rule}")));
    let cluster = if needs_postgres {
        let c = Cluster::try_start();
        if c.is_none() {
            println!("postgres: skipped, PostgreSQL 15 is not installed");
        }
        c
    } else {
        None
    };
    let mut passed = 0;
    let mut failed = Vec::new();
    let started = Instant::now();
    for backend in ["sqlite", "sqlite_without_text_index", "postgres"] {
        for (rule, check) in RULES {
            let name = format!("{backend}::{rule}");
            if !wanted(&name) {
                continue;
            }
            let outcome = runtime.block_on(async {
                let fresh = match backend {
                    "sqlite" => embedded(true).await,
                    "sqlite_without_text_index" => embedded(false).await,
                    _ => match &cluster {
                        Some(c) => shared(c, rule).await,
                        None => return None,
                    },
                };
                Some(run(*check, fresh).await)
            });
            match outcome {
                None => {}
                Some(Ok(())) => {
                    println!("test {name} ... ok");
                    passed += 1;
                }
                Some(Err(e)) => {
                    println!("test {name} ... FAILED ({e})");
                    failed.push(name);
                }
            }
        }
    }
    drop(runtime);
    drop(cluster);
    println!(
        "\ntest result: {}. {passed} passed; {} failed; finished in {:.2}s",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("failures:\n    {}", failed.join("\n    "));
        ExitCode::FAILURE
    }
}
