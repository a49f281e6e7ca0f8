//! A submission session driven in memory over `tokio::io::duplex`: no socket
//! and no server process; the handler runs on the session driver as it does
//! behind a listener. EHLO, AUTH PLAIN, a message by DATA and one by BDAT,
//! both delivered to a local mailbox.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use casella_directory::{Directory, LoginType, Secret, hash_password};
use casella_net::Live;
use casella_net::memory::{memory_info, memory_pair, running_server};
use casella_smtp::{Mode, SmtpConfig, SmtpService};
use casella_store::sqlite::SqliteStore;
use casella_store::{NewAccount, Store};

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";
const PASSWORD: &str = "alice-password";

#[tokio::test]
async fn a_submission_in_memory_sends_by_data_and_bdat() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    for address in [ALICE, BOB] {
        let hash = hash_password(&Secret::new(PASSWORD.to_string())).expect("hash");
        store
            .create_account(NewAccount {
                address: address.into(),
                password_hash: hash,
                is_admin: false,
            })
            .await
            .expect("account");
    }
    // No TLS in memory: passwords are allowed in cleartext here.
    let config = SmtpConfig {
        hostname: "mail.example.org".into(),
        login_type: LoginType::PlaintextLogin,
        auth_failure_delay: Duration::ZERO,
        ..SmtpConfig::default()
    };
    let directory = Arc::new(Directory::new(store.clone()));
    let service = SmtpService::new(Mode::Submission, Live::new(config), directory, None);
    let (mut c, server) = memory_pair();
    tokio::spawn(async move {
        service
            .serve_stream(server, memory_info(), running_server())
            .await
    });

    c.expect("220 mail.example.org").await;
    c.send_line("EHLO client.example").await;
    let ehlo = c.until("250 ").await;
    assert!(
        ehlo.iter().any(|l| l.starts_with("250 AUTH PLAIN")),
        "{ehlo:?}"
    );
    assert!(
        !ehlo.iter().any(|l| l.contains("STARTTLS")),
        "an in-memory stream cannot start TLS: {ehlo:?}"
    );
    let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{ALICE}\0{PASSWORD}"));
    c.send_line(&format!("AUTH PLAIN {token}")).await;
    c.expect("235 2.7.0").await;

    // DATA: dot-stuffed lines come back unstuffed in the stored message.
    c.send(format!("MAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n").as_bytes())
        .await;
    c.expect("250").await;
    c.expect("250").await;
    c.expect("354").await;
    c.send(b"Subject: by DATA\r\n\r\n..a dot\r\n.\r\n").await;
    c.expect("250").await;

    // BDAT: the chunk is read by its size, with no end marker.
    let body = b"Subject: by BDAT\r\n\r\nchunked\r\n";
    c.send(
        format!(
            "MAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\nBDAT {} LAST\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    c.send(body).await;
    c.expect("250").await;
    c.expect("250").await;
    c.expect("250").await;

    c.send_line("QUIT").await;
    c.expect("221").await;
    assert!(c.is_closed().await);

    let bob = store
        .account_by_address(BOB)
        .await
        .expect("store")
        .expect("bob");
    let inbox = store
        .mailbox_by_name(bob.id, "INBOX")
        .await
        .expect("store")
        .expect("INBOX");
    let messages = store.list_messages(inbox.id).await.expect("store");
    assert_eq!(messages.len(), 2);
    let first = store.read_blob(&messages[0].blob).await.expect("blob");
    assert!(
        String::from_utf8_lossy(&first).contains("\r\n.a dot\r\n"),
        "{}",
        String::from_utf8_lossy(&first)
    );
}
