//! SORT and THREAD on a mailbox of 20,000 messages answer from the keys
//! stored at delivery: every message's bytes are removed from the store
//! before the commands run, and the answers are still complete and right. A
//! correctness check, not a timing one.

use std::sync::Arc;
use std::time::Duration;

use casella_directory::{Directory, LoginType, Secret, hash_password};
use casella_imap::{ImapConfig, ImapService};
use casella_net::Live;
use casella_net::memory::{memory_info, memory_pair, running_server};
use casella_store::sqlite::SqliteStore;
use casella_store::{NewAccount, NewMessage, Store};

const USER: &str = "big@example.org";
const PASSWORD: &str = "big-password";
const COUNT: u32 = 20_000;
/// Threads are chains of this many messages.
const CHAIN: u32 = 10;

/// Message `i` (0-based): a subject that sorts as a permutation of the
/// numbers, a reply to the message before it within its chain of ten.
fn message(i: u32) -> NewMessage {
    let key = (i * 7919) % COUNT;
    let mut raw = format!(
        "From: user{i}@example.org\r\nSubject: Re: topic {key:05}\r\nMessage-ID: <{i}@big>\r\n"
    );
    if !i.is_multiple_of(CHAIN) {
        raw.push_str(&format!("References: <{}@big>\r\n", i - 1));
    }
    raw.push_str("\r\nbody\r\n");
    NewMessage {
        raw: raw.into_bytes(),
        internal_date: Some(1_700_000_000 + i64::from(i)),
        flags: Default::default(),
        binary: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_and_thread_on_20000_messages_read_stored_keys_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let hash = hash_password(&Secret::new(PASSWORD.to_string())).expect("hash");
    let account = store
        .create_account(NewAccount {
            address: USER.into(),
            password_hash: hash,
            is_admin: false,
        })
        .await
        .expect("account");
    let inbox = store
        .mailbox_by_name(account.id, "INBOX")
        .await
        .expect("store")
        .expect("INBOX");
    for start in (0..COUNT).step_by(1_000) {
        let batch = (start..start + 1_000).map(message).collect();
        store.append_batch(inbox.id, batch).await.expect("append");
    }
    // Every message's bytes go: those kept in the database and any files.
    let list = store.list_messages(inbox.id).await.expect("list");
    assert_eq!(list.len(), COUNT as usize);
    rusqlite::Connection::open(dir.path().join("store.db"))
        .expect("open store.db")
        .execute_batch("DELETE FROM inline_blobs;")
        .expect("remove the bytes");
    let _ = std::fs::remove_dir_all(dir.path().join("blobs"));
    assert!(
        store.read_blob(&list[0].blob).await.is_err(),
        "the bytes are still there"
    );

    let config = ImapConfig {
        login_type: LoginType::PlaintextLogin,
        auth_failure_delay: Duration::ZERO,
        ..ImapConfig::default()
    };
    let directory = Arc::new(Directory::new(store.clone()));
    let service = Arc::new(ImapService::new(Live::new(config), directory, None));
    let (mut c, server) = memory_pair();
    tokio::spawn(async move {
        service
            .serve_stream(server, memory_info(), running_server())
            .await
    });
    c.expect("* OK").await;
    c.send_line(&format!("a LOGIN {USER} {PASSWORD}")).await;
    c.expect("a OK").await;
    c.send_line("b SELECT INBOX").await;
    c.until("b OK").await;

    // SORT (SUBJECT): by the base subject ("Re: " gone), i.e. by the key.
    let mut by_key: Vec<(u32, u32)> = (0..COUNT).map(|i| ((i * 7919) % COUNT, i + 1)).collect();
    by_key.sort_unstable();
    let want: Vec<String> = by_key.iter().map(|(_, seq)| seq.to_string()).collect();
    c.send_line("s SORT (SUBJECT) UTF-8 ALL").await;
    assert_eq!(c.line().await, format!("* SORT {}", want.join(" ")));
    c.expect("s OK SORT completed").await;

    // REVERSE ARRIVAL on a UID range: INTERNALDATE rises with the UID.
    c.send_line("u UID SORT (REVERSE ARRIVAL) UTF-8 UID 19991:*")
        .await;
    assert_eq!(
        c.line().await,
        "* SORT 20000 19999 19998 19997 19996 19995 19994 19993 19992 19991"
    );
    c.expect("u OK UID SORT completed").await;

    // THREAD REFERENCES: 2,000 chains of ten, in date order.
    let want: String = (0..COUNT / CHAIN)
        .map(|t| {
            let members: Vec<String> = (1..=CHAIN).map(|k| (t * CHAIN + k).to_string()).collect();
            format!("({})", members.join(" "))
        })
        .collect();
    c.send_line("t THREAD REFERENCES UTF-8 ALL").await;
    assert_eq!(c.line().await, format!("* THREAD {want}"));
    c.expect("t OK THREAD completed").await;
}
