//! An IMAP session driven in memory over `tokio::io::duplex`: no socket and no
//! server process; the handler runs on the session driver as it does behind a
//! listener. Literals (and their pre-login bound), LOGIN, APPEND, IDLE with a
//! change pushed, and LOGOUT.

use std::sync::Arc;
use std::time::Duration;

use casella_directory::{Directory, LoginType, Secret, hash_password};
use casella_imap::{ImapConfig, ImapService};
use casella_net::Live;
use casella_net::memory::{MemoryClient, memory_info, memory_pair, running_server};
use casella_store::sqlite::SqliteStore;
use casella_store::{NewAccount, NewMessage, Store};

const ALICE: &str = "alice@example.org";
const PASSWORD: &str = "alice-password";

struct World {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    service: Arc<ImapService>,
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let hash = hash_password(&Secret::new(PASSWORD.to_string())).expect("hash");
    store
        .create_account(NewAccount {
            address: ALICE.into(),
            password_hash: hash,
            is_admin: false,
        })
        .await
        .expect("account");
    // No TLS in memory: passwords are allowed in cleartext here.
    let config = ImapConfig {
        login_type: LoginType::PlaintextLogin,
        auth_failure_delay: Duration::ZERO,
        ..ImapConfig::default()
    };
    let directory = Arc::new(Directory::new(store.clone()));
    let service = Arc::new(ImapService::new(Live::new(config), directory, None));
    World {
        _dir: dir,
        store,
        service,
    }
}

fn connect(service: &Arc<ImapService>) -> MemoryClient {
    let (client, server) = memory_pair();
    let service = service.clone();
    tokio::spawn(async move {
        service
            .serve_stream(server, memory_info(), running_server())
            .await
    });
    client
}

#[tokio::test]
async fn a_session_in_memory_logs_in_appends_and_idles() {
    let w = world().await;
    let mut c = connect(&w.service);
    let greeting = c.expect("* OK [CAPABILITY IMAP4rev1 IMAP4rev2").await;
    assert!(
        !greeting.contains("STARTTLS"),
        "an in-memory stream cannot start TLS: {greeting}"
    );

    // Before login, a literal over 8 KiB is refused before it is sent.
    c.send_line("a LOGIN {9000}").await;
    c.expect("a NO [TOOBIG] Literals before login are limited to 8192 bytes")
        .await;
    // LOGIN with two synchronising literals.
    c.send_line(&format!("b LOGIN {{{}}}", ALICE.len())).await;
    c.expect("+ Ready for literal data").await;
    c.send(format!("{ALICE} {{{}}}\r\n", PASSWORD.len()).as_bytes())
        .await;
    c.expect("+ Ready for literal data").await;
    c.send_line(PASSWORD).await;
    c.expect("b OK [CAPABILITY").await;

    // APPEND with a non-synchronising literal (LITERAL+).
    let message = "Subject: one\r\n\r\nfirst\r\n";
    c.send(format!("c APPEND INBOX {{{}+}}\r\n{message}\r\n", message.len()).as_bytes())
        .await;
    c.expect("c OK [APPENDUID").await;
    c.send_line("d SELECT INBOX").await;
    let lines = c.until("d OK").await;
    assert!(lines.contains(&"* 1 EXISTS".to_string()), "{lines:?}");

    // IDLE: a message delivered meanwhile is pushed; DONE ends it.
    c.send_line("e IDLE").await;
    c.expect("+ idling").await;
    let account = w
        .store
        .account_by_address(ALICE)
        .await
        .expect("store")
        .expect("account");
    let inbox = w
        .store
        .mailbox_by_name(account.id, "INBOX")
        .await
        .expect("store")
        .expect("INBOX");
    w.store
        .append(
            inbox.id,
            NewMessage {
                raw: b"Subject: two\r\n\r\nsecond\r\n".to_vec(),
                internal_date: None,
                flags: Default::default(),
                binary: false,
            },
        )
        .await
        .expect("delivered");
    c.expect("* 2 EXISTS").await;
    c.send_line("DONE").await;
    c.until("e OK IDLE terminated").await;

    c.send_line("f LOGOUT").await;
    c.expect("* BYE").await;
    c.expect("f OK LOGOUT completed").await;
    assert!(c.is_closed().await);
}
