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

/// Which of `names` match any of `patterns`. Inline (no copies) for the
/// usual small LIST; copied to the blocking pool only when the work is large.
pub async fn matching(patterns: &[String], names: &[&str]) -> Vec<bool> {
    let work = patterns.iter().map(|p| p.len()).sum::<usize>()
        * names.iter().map(|n| n.len() + 1).sum::<usize>();
    fn run<N: AsRef<str>>(patterns: &[String], names: &[N]) -> Vec<bool> {
        names
            .iter()
            .map(|n| patterns.iter().any(|p| pattern_matches(p, n.as_ref())))
            .collect()
    }
    if work <= INLINE_MATCH_WORK {
        return run(patterns, names);
    }
    let patterns = patterns.to_vec();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    match tokio::task::spawn_blocking(move || run(&patterns, &names)).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "LIST matching failed");
            Vec::new()
        }
    }
}
