//! `casella queue list|retry|delete` — Postfix's mailq/postqueue for casella.

use std::path::Path;

use anyhow::bail;
use casella_store::{QueueId, RecipientState, StoreError, now_unix};

use crate::cli::QueueCommand;
use crate::config;

pub async fn run(data: &Path, command: QueueCommand) -> anyhow::Result<()> {
    let store = config::open_store(data).await?;
    match command {
        QueueCommand::List => {
            let entries = store.queue_list().await?;
            if entries.is_empty() {
                println!("The outbound queue is empty.");
            }
            let now = now_unix();
            for q in entries {
                let sender = if q.sender.is_empty() { "<>" } else { &q.sender };
                // A claim whose lease ran out is no attempt any more: the entry
                // waits for the next runner to claim it.
                let when = match q.claimed_until {
                    Some(until) if until > now => "being delivered now".to_string(),
                    _ => format!("next in {}s", (q.next_attempt - now).max(0)),
                };
                println!(
                    "{}\t{} bytes\tfrom {sender}\tattempts {}\t{when}",
                    q.id.0, q.size, q.attempts
                );
                for r in &q.recipients {
                    let state = match r.state {
                        RecipientState::Pending => "pending",
                        RecipientState::Delivered => "delivered",
                        RecipientState::Failed => "failed",
                    };
                    let reply = r.last_reply.as_deref().unwrap_or("");
                    println!("\t{}\t{state}\t{reply}", r.address);
                }
            }
        }
        // Only the next attempt of entries no runner holds changes (one
        // conditional update in the store): rewriting an entry under a delivery
        // in progress would end its claim, and the message would go out twice.
        // A running server looks at the queue every second.
        QueueCommand::Retry { id } => match store.queue_retry(id.map(QueueId), now_unix()).await {
            Ok(r) => {
                if let (Some(id), 0) = (id, r.due) {
                    println!("queue entry {id} is being delivered now; left as it is");
                } else {
                    println!("{} entries will be tried again at once", r.due);
                    if r.in_delivery > 0 {
                        println!(
                            "{} entries are being delivered now; left as they are",
                            r.in_delivery
                        );
                    }
                }
            }
            Err(StoreError::NotFound(_)) => bail!("no queue entry {}", id.unwrap_or_default()),
            Err(e) => return Err(e.into()),
        },
        QueueCommand::Delete { id } => match store.queue_remove(QueueId(id)).await {
            Ok(()) => println!("deleted queue entry {id}"),
            Err(StoreError::NotFound(_)) => bail!("no queue entry {id}"),
            Err(e) => return Err(e.into()),
        },
    }
    Ok(())
}
