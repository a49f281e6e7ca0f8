//! Mailbox names for the sessions: the wire forms and pattern matching live in
//! `casella_proto_imap::names` (pure, fuzzed); here only where the matching of
//! a LIST runs.

use casella_proto_imap::names::pattern_matches;
pub use casella_proto_imap::names::{SEPARATOR, from_wire, join_reference, to_wire};

/// Above this much matching work (pattern characters × name characters) a
/// LIST runs its matching on the blocking pool, not on the session's runtime
/// worker: a long pattern against many long names must not hold up other
/// sessions (issue 24). Below it (every real client's LIST) it runs inline.
const INLINE_MATCH_WORK: usize = 1 << 20;

/// Which of `names` match any of `patterns`.
pub async fn matching(patterns: Vec<String>, names: Vec<String>) -> Vec<bool> {
    let work = patterns.iter().map(|p| p.len()).sum::<usize>()
        * names.iter().map(|n| n.len() + 1).sum::<usize>();
    let run = move || {
        names
            .iter()
            .map(|n| patterns.iter().any(|p| pattern_matches(p, n)))
            .collect::<Vec<bool>>()
    };
    if work <= INLINE_MATCH_WORK {
        return run();
    }
    match tokio::task::spawn_blocking(run).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "LIST matching failed");
            Vec::new()
        }
    }
}
