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
                let next = (q.next_attempt - now).max(0);
                println!(
                    "{}\t{} bytes\tfrom {sender}\tattempts {}\tnext in {next}s",
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
        QueueCommand::Retry { id } => {
            let mut n = 0;
            for mut q in store.queue_list().await? {
                if id.is_some_and(|i| i != q.id.0) {
                    continue;
                }
                q.next_attempt = now_unix();
                store.queue_update(&q).await?;
                n += 1;
            }
            if n == 0 && id.is_some() {
                bail!("no queue entry {}", id.unwrap_or_default());
            }
            println!("{n} entries will be tried again at once");
        }
        QueueCommand::Delete { id } => match store.queue_remove(QueueId(id)).await {
            Ok(()) => println!("deleted queue entry {id}"),
            Err(StoreError::NotFound(_)) => bail!("no queue entry {id}"),
            Err(e) => return Err(e.into()),
        },
    }
    Ok(())
}
