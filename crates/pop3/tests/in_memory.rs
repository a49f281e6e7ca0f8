//! A POP3 session driven in memory over `tokio::io::duplex`: no socket and no
//! server process; the handler runs on the session driver as it does behind a
//! listener. CAPA, USER/PASS, multi-line replies with byte-stuffing, a line
//! over the limit, and QUIT.

use std::sync::Arc;
use std::time::Duration;

use casella_directory::{Directory, LoginType, Secret, hash_password};
use casella_net::Live;
use casella_net::memory::{memory_info, memory_pair, running_server};
use casella_pop3::{Pop3Config, Pop3Service};
use casella_store::sqlite::SqliteStore;
use casella_store::{NewAccount, NewMessage, Store};

const ALICE: &str = "alice@example.org";
const PASSWORD: &str = "alice-password";
const MESSAGE: &[u8] = b"Subject: dots\r\n\r\n.starts with a dot\r\nend\r\n";

#[tokio::test]
async fn a_session_in_memory_lists_retrieves_and_quits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let hash = hash_password(&Secret::new(PASSWORD.to_string())).expect("hash");
    let account = store
        .create_account(NewAccount {
            address: ALICE.into(),
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
    store
        .append(
            inbox.id,
            NewMessage {
                raw: MESSAGE.to_vec(),
                internal_date: None,
                flags: Default::default(),
                binary: false,
            },
        )
        .await
        .expect("delivered");
    // No TLS in memory: passwords are allowed in cleartext here.
    let config = Pop3Config {
        login_type: LoginType::PlaintextLogin,
        auth_failure_delay: Duration::ZERO,
        ..Pop3Config::default()
    };
    let service = Pop3Service::new(Live::new(config), Arc::new(Directory::new(store)), None);
    let (mut c, server) = memory_pair();
    tokio::spawn(async move {
        service
            .serve_stream(server, memory_info(), running_server())
            .await
    });

    c.expect("+OK The casella POP3 service is ready.").await;
    c.send_line("CAPA").await;
    let capa = c.until_line(".").await;
    assert!(capa.contains(&"USER".to_string()), "{capa:?}");
    assert!(
        !capa.contains(&"STLS".to_string()),
        "an in-memory stream cannot start TLS: {capa:?}"
    );
    // A line over the limit is answered, and the session goes on.
    c.send_line(&format!("NOOP {}", "x".repeat(600))).await;
    c.expect("-ERR Command line too long (the limit is 512 bytes)")
        .await;
    // Pipelined: both answered, in order.
    c.send(format!("USER {ALICE}\r\nPASS {PASSWORD}\r\n").as_bytes())
        .await;
    c.expect("+OK Send your password").await;
    let size = MESSAGE.len();
    c.expect(&format!(
        "+OK Logged in; maildrop has 1 messages ({size} octets)"
    ))
    .await;
    c.send_line("LIST").await;
    assert_eq!(
        c.until_line(".").await,
        [
            format!("+OK 1 messages ({size} octets)"),
            format!("1 {size}"),
            ".".into()
        ]
    );
    c.send_line("RETR 1").await;
    assert_eq!(
        c.until_line(".").await,
        [
            format!("+OK {size} octets"),
            "Subject: dots".into(),
            "".into(),
            "..starts with a dot".into(),
            "end".into(),
            ".".into(),
        ]
    );
    c.send_line("QUIT").await;
    c.expect("+OK casella POP3 server signing off").await;
    assert!(c.is_closed().await);
}
