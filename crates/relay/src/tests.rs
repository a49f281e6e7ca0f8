//! The runner against real sockets: a scripted sink on 127.0.0.1:0, the embedded
//! SQLite store in a temp dir, the relay's own loop.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use casella_directory::Secret;
use casella_net::Shutdown;
use casella_store::sqlite::SqliteStore;
use casella_store::{
    Account, DirectoryStore, MailStore, NewAccount, NewQueued, QueueStore, Queued, QueuedRecipient,
    RecipientState, now_unix,
};
use tempfile::TempDir;

use crate::route::tests::FakeDns;
use crate::route::{LookupError, Mx};
use crate::sink::{self, Sink, SinkConfig};
use crate::{DkimKey, Relay, RelayConfig, Smarthost, TlsMode};

struct World {
    _dir: TempDir,
    store: Arc<SqliteStore>,
    alice: Account,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let alice = store
        .create_account(NewAccount {
            address: "alice@example.org".into(),
            password_hash: "x".into(),
            is_admin: false,
        })
        .await
        .unwrap();
    World {
        _dir: dir,
        store,
        alice,
    }
}

fn config(sink: &Sink) -> RelayConfig {
    let mut c = RelayConfig {
        hostname: "relay.example.org".into(),
        connect_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(5),
        ..RelayConfig::default()
    };
    c.routes
        .insert("remote.example".into(), sink.addr.to_string());
    c
}

fn rcpt(address: &str) -> QueuedRecipient {
    QueuedRecipient {
        address: address.into(),
        orcpt: None,
        notify: None,
        state: RecipientState::Pending,
        last_reply: None,
    }
}

const MESSAGE: &[u8] = b"From: Alice <alice@example.org>\r\n\
    To: bob@remote.example\r\n\
    Subject: hello\r\n\
    Message-ID: <m1@example.org>\r\n\
    \r\n\
    first line\r\n\
    .a line that starts with a dot\r\n\
    .\r\n\
    last line\r\n";

fn queued(w: &World, recipients: Vec<QueuedRecipient>) -> NewQueued {
    NewQueued {
        sender: "alice@example.org".into(),
        account: Some(w.alice.id),
        recipients,
        message: MESSAGE.to_vec(),
        envid: None,
        ret: None,
        expires: now_unix() + 3600,
    }
}

/// Runs the relay until `done` holds for the queue (or 20 s pass), then stops it.
async fn run_until(w: &World, relay: Relay, done: impl Fn(&[Queued]) -> bool) -> Vec<Queued> {
    let shutdown = Shutdown::new();
    let waker = relay.waker();
    let task = tokio::spawn(relay.run(shutdown.signal()));
    waker.notify_one();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let queue = loop {
        let queue = w.store.queue_list().await.unwrap();
        if done(&queue) {
            break queue;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queue never got there: {queue:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    shutdown.shutdown(Duration::from_secs(1)).await;
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the relay stops on shutdown")
        .unwrap();
    queue
}

async fn inbox(w: &World) -> Vec<String> {
    let inbox = w
        .store
        .mailbox_by_name(w.alice.id, "INBOX")
        .await
        .unwrap()
        .unwrap();
    let mut out = Vec::new();
    for m in w.store.list_messages(inbox.id).await.unwrap() {
        let raw = w.store.read_blob(&m.blob).await.unwrap();
        out.push(String::from_utf8(raw).unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_with_dsn_parameters_and_dot_unstuffed_bytes() {
    let w = world().await;
    let sink = sink::start(SinkConfig::default()).await;
    let relay = Relay::new(w.store.clone(), config(&sink));
    let mut bob = rcpt("bob@remote.example");
    bob.notify = Some("FAILURE,DELAY".into());
    bob.orcpt = Some("rfc822;bob@remote.example".into());
    let mut new = queued(&w, vec![bob, rcpt("carol@Remote.Example")]);
    new.envid = Some("env+2B1".into());
    new.ret = Some("HDRS".into());
    w.store.enqueue(new).await.unwrap();

    run_until(&w, relay, |q| q.is_empty()).await;

    let messages = sink.messages();
    assert_eq!(
        messages.len(),
        1,
        "one connection, one transaction for one hop"
    );
    assert_eq!(messages[0].0, MESSAGE, "bytes arrive as queued");
    let commands = sink.commands();
    let from_ehlo: Vec<&str> = commands
        .iter()
        .map(String::as_str)
        .skip_while(|c| !c.starts_with("EHLO"))
        .collect();
    assert_eq!(
        from_ehlo,
        [
            "EHLO relay.example.org",
            &format!(
                "MAIL FROM:<alice@example.org> SIZE={} RET=HDRS ENVID=env+2B1",
                MESSAGE.len()
            ),
            "RCPT TO:<bob@remote.example> NOTIFY=FAILURE,DELAY ORCPT=rfc822;bob@remote.example",
            "RCPT TO:<carol@Remote.Example>",
            "DATA",
            "QUIT",
        ]
    );
    assert!(inbox(&w).await.is_empty(), "no bounce for a delivery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_extensions_no_parameters() {
    let w = world().await;
    let sink = sink::start(SinkConfig {
        extensions: vec![],
        ..SinkConfig::default()
    })
    .await;
    let relay = Relay::new(w.store.clone(), config(&sink));
    let mut bob = rcpt("bob@remote.example");
    bob.notify = Some("NEVER".into());
    let mut new = queued(&w, vec![bob]);
    new.ret = Some("FULL".into());
    w.store.enqueue(new).await.unwrap();
    run_until(&w, relay, |q| q.is_empty()).await;
    let commands = sink.commands();
    assert!(
        commands.contains(&"MAIL FROM:<alice@example.org>".to_string()),
        "{commands:?}"
    );
    assert!(
        commands.contains(&"RCPT TO:<bob@remote.example>".to_string()),
        "{commands:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failure_schedules_a_retry() {
    let w = world().await;
    let sink = sink::start(SinkConfig {
        rcpt: |_| "451 4.7.1 Greylisted, try again later".into(),
        ..SinkConfig::default()
    })
    .await;
    let relay = Relay::new(w.store.clone(), config(&sink));
    let id = w
        .store
        .enqueue(queued(&w, vec![rcpt("bob@remote.example")]))
        .await
        .unwrap();
    let before = now_unix();
    let queue = run_until(&w, relay, |q| q.first().is_some_and(|e| e.attempts == 1)).await;
    let e = &queue[0];
    assert_eq!(e.id, id, "the entry is kept");
    assert_eq!(e.recipients[0].state, RecipientState::Pending);
    assert_eq!(
        e.recipients[0].last_reply.as_deref(),
        Some("451 4.7.1 Greylisted, try again later")
    );
    // The first wait of the default schedule is one minute.
    assert!(
        e.next_attempt >= before + 60 && e.next_attempt <= now_unix() + 61,
        "next attempt {} not about a minute after {before}",
        e.next_attempt
    );
    assert!(e.last_error.as_deref().unwrap().contains("451 4.7.1"));
    assert!(sink.messages().is_empty());
    assert!(
        !sink.commands().contains(&"DATA".to_string()),
        "no DATA without a recipient"
    );
    assert!(inbox(&w).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failure_of_one_recipient_bounces_it() {
    let w = world().await;
    let sink = sink::start(SinkConfig {
        rcpt: |a| {
            if a.starts_with("gone@") {
                "550 5.1.1 <gone@remote.example>: Recipient address rejected: User unknown".into()
            } else {
                "250 2.1.5 Ok".into()
            }
        },
        ..SinkConfig::default()
    })
    .await;
    let relay = Relay::new(w.store.clone(), config(&sink));
    let mut gone = rcpt("gone@remote.example");
    gone.orcpt = Some("rfc822;gone@remote.example".into());
    w.store
        .enqueue(queued(&w, vec![rcpt("bob@remote.example"), gone]))
        .await
        .unwrap();
    run_until(&w, relay, |q| q.is_empty()).await;

    assert_eq!(sink.messages().len(), 1, "bob got it");
    let inbox = inbox(&w).await;
    assert_eq!(inbox.len(), 1, "one bounce");
    let dsn = &inbox[0];
    for want in [
        "From: Mail Delivery System <MAILER-DAEMON@relay.example.org>",
        "To: <alice@example.org>",
        "Subject: Undelivered Mail Returned to Sender",
        "Auto-Submitted: auto-replied",
        "report-type=delivery-status",
        "Reporting-MTA: dns; relay.example.org",
        "Final-Recipient: rfc822; gone@remote.example",
        "Original-Recipient: rfc822; gone@remote.example",
        "Action: failed",
        "Status: 5.1.1",
        "Diagnostic-Code: smtp; 550 5.1.1 <gone@remote.example>: Recipient address rejected: User unknown",
        "Content-Type: text/rfc822-headers",
        "Subject: hello",
    ] {
        assert!(dsn.contains(want), "missing {want:?} in\n{dsn}");
    }
    assert!(
        !dsn.contains("Final-Recipient: rfc822; bob@"),
        "bob was delivered"
    );
    assert!(!dsn.contains("first line"), "headers only without RET=FULL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_fails_what_is_pending_and_bounces() {
    let w = world().await;
    let sink = sink::start(SinkConfig {
        rcpt: |_| "452 4.2.2 Mailbox full".into(),
        ..SinkConfig::default()
    })
    .await;
    let relay = Relay::new(w.store.clone(), config(&sink));
    let mut new = queued(&w, vec![rcpt("bob@remote.example")]);
    new.expires = now_unix() - 1;
    new.ret = Some("FULL".into());
    w.store.enqueue(new).await.unwrap();
    run_until(&w, relay, |q| q.is_empty()).await;

    let inbox = inbox(&w).await;
    assert_eq!(inbox.len(), 1);
    let dsn = &inbox[0];
    for want in [
        "Final-Recipient: rfc822; bob@remote.example",
        "Status: 5.4.7",
        "Diagnostic-Code: smtp; 452 4.2.2 Mailbox full",
        "delivery time expired",
        "Content-Type: message/rfc822",
        "..a line that starts with a dot",
    ] {
        // The returned message is the original, not dot-stuffed: look for the
        // single-dot line, which the doubled form below must not match.
        if want.starts_with("..") {
            assert!(dsn.contains("\r\n.a line that starts with a dot\r\n"));
            assert!(!dsn.contains(want));
            continue;
        }
        assert!(dsn.contains(want), "missing {want:?} in\n{dsn}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_bounce_for_notify_never_or_an_empty_sender() {
    let w = world().await;
    let sink = sink::start(SinkConfig {
        rcpt: |_| "550 5.1.1 unknown".into(),
        ..SinkConfig::default()
    })
    .await;
    let relay = Relay::new(w.store.clone(), config(&sink));
    let mut never = rcpt("bob@remote.example");
    never.notify = Some("NEVER".into());
    w.store.enqueue(queued(&w, vec![never])).await.unwrap();
    let mut bounce = queued(&w, vec![rcpt("carol@remote.example")]);
    bounce.sender = String::new();
    w.store.enqueue(bounce).await.unwrap();
    run_until(&w, relay, |q| q.is_empty()).await;
    let bounce_mail = format!("MAIL FROM:<> SIZE={}", MESSAGE.len());
    assert!(
        sink.commands().contains(&bounce_mail),
        "{:?}",
        sink.commands()
    );
    assert!(inbox(&w).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opportunistic_starttls() {
    let w = world().await;
    let (acceptor, _) = sink::tls_acceptor();
    let sink = sink::start(SinkConfig {
        starttls: Some(acceptor),
        ..SinkConfig::default()
    })
    .await;
    let relay = Relay::new(w.store.clone(), config(&sink));
    w.store
        .enqueue(queued(&w, vec![rcpt("bob@remote.example")]))
        .await
        .unwrap();
    run_until(&w, relay, |q| q.is_empty()).await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert!(messages[0].1, "the message came over TLS");
    let commands = sink.commands();
    let ehlos = commands.iter().filter(|c| c.starts_with("EHLO")).count();
    assert_eq!(ehlos, 2, "EHLO again after STARTTLS: {commands:?}");
    assert!(commands.contains(&"STARTTLS".to_string()));
}

fn smarthost(sink: &Sink, ca_file: Option<PathBuf>, auth: bool) -> RelayConfig {
    RelayConfig {
        smarthost: Some(Smarthost {
            host: "127.0.0.1".into(),
            port: sink.addr.port(),
            tls: TlsMode::Required,
            auth: auth.then(|| ("relayuser".to_string(), Secret::new("s3cret".to_string()))),
            ca_file,
        }),
        ..config(sink)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smarthost_with_verified_tls_and_auth_plain() {
    let w = world().await;
    let (acceptor, pem) = sink::tls_acceptor();
    let sink = sink::start(SinkConfig {
        starttls: Some(acceptor),
        auth: Some(("relayuser".into(), "s3cret".into())),
        ..SinkConfig::default()
    })
    .await;
    let ca = w._dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let relay = Relay::new(w.store.clone(), smarthost(&sink, Some(ca), true));
    // Any domain goes to the smarthost.
    w.store
        .enqueue(queued(&w, vec![rcpt("dave@anywhere.example")]))
        .await
        .unwrap();
    run_until(&w, relay, |q| q.is_empty()).await;
    let commands = sink.commands();
    let auth = commands
        .iter()
        .position(|c| c.starts_with("AUTH PLAIN "))
        .expect("AUTH PLAIN sent");
    let starttls = commands.iter().position(|c| c == "STARTTLS").unwrap();
    assert!(starttls < auth, "credentials only after TLS: {commands:?}");
    assert_eq!(sink.messages().len(), 1);
    assert!(sink.messages()[0].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smarthost_requiring_tls_defers_without_it() {
    let w = world().await;
    // No STARTTLS offered.
    let sink = sink::start(SinkConfig::default()).await;
    let relay = Relay::new(w.store.clone(), smarthost(&sink, None, true));
    w.store
        .enqueue(queued(&w, vec![rcpt("dave@anywhere.example")]))
        .await
        .unwrap();
    let queue = run_until(&w, relay, |q| q.first().is_some_and(|e| e.attempts == 1)).await;
    let reply = queue[0].recipients[0].last_reply.clone().unwrap();
    assert!(reply.contains("TLS is required"), "{reply}");
    assert_eq!(queue[0].recipients[0].state, RecipientState::Pending);
    assert!(
        !sink
            .commands()
            .iter()
            .any(|c| c.starts_with("MAIL") || c.starts_with("AUTH"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smarthost_with_an_untrusted_certificate_defers() {
    let w = world().await;
    let (acceptor, _) = sink::tls_acceptor();
    let (_, other_ca) = sink::tls_acceptor();
    let sink = sink::start(SinkConfig {
        starttls: Some(acceptor),
        ..SinkConfig::default()
    })
    .await;
    let ca = w._dir.path().join("other-ca.pem");
    std::fs::write(&ca, other_ca).unwrap();
    let relay = Relay::new(w.store.clone(), smarthost(&sink, Some(ca), false));
    w.store
        .enqueue(queued(&w, vec![rcpt("dave@anywhere.example")]))
        .await
        .unwrap();
    let queue = run_until(&w, relay, |q| q.first().is_some_and(|e| e.attempts == 1)).await;
    let reply = queue[0].recipients[0].last_reply.clone().unwrap();
    assert!(reply.contains("TLS handshake failed"), "{reply}");
    assert!(
        !sink.commands().iter().any(|c| c.starts_with("MAIL")),
        "no cleartext fallback"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_mx_bounces_with_556() {
    let w = world().await;
    let mut dns = FakeDns::default();
    dns.mx.insert(
        "nomail.example".into(),
        Ok(vec![Mx {
            preference: 0,
            exchange: String::new(),
        }]),
    );
    dns.mx.insert(
        "broken.example".into(),
        Err(LookupError::Failed("SERVFAIL".into())),
    );
    let relay = Relay::new(w.store.clone(), RelayConfig::default()).with_resolver(Arc::new(dns));
    w.store
        .enqueue(queued(
            &w,
            vec![rcpt("x@nomail.example"), rcpt("y@broken.example")],
        ))
        .await
        .unwrap();
    let queue = run_until(&w, relay, |q| q.first().is_some_and(|e| e.attempts == 1)).await;
    let r = &queue[0].recipients;
    assert_eq!(r[0].state, RecipientState::Failed);
    assert!(
        r[0].last_reply
            .as_deref()
            .unwrap()
            .starts_with("556 5.1.10")
    );
    assert_eq!(
        r[1].state,
        RecipientState::Pending,
        "a DNS failure is temporary"
    );
    let inbox = inbox(&w).await;
    assert_eq!(inbox.len(), 1);
    assert!(inbox[0].contains("Status: 5.1.10"));
    assert!(!inbox[0].contains("Final-Recipient: rfc822; y@broken.example"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkim_signs_on_the_way_out() {
    let w = world().await;
    let sink = sink::start(SinkConfig::default()).await;
    let mut c = config(&sink);
    c.dkim.push(DkimKey {
        domain: "example.org".into(),
        selector: "s1".into(),
        key_file: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/dkim-rsa-pkcs1.pem"),
    });
    let relay = Relay::new(w.store.clone(), c);
    w.store
        .enqueue(queued(&w, vec![rcpt("bob@remote.example")]))
        .await
        .unwrap();
    run_until(&w, relay, |q| q.is_empty()).await;
    let got = &sink.messages()[0].0;
    assert!(got.starts_with(b"DKIM-Signature: v=1; a=rsa-sha256; s=s1; d=example.org;"));
    assert!(got.ends_with(MESSAGE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_hop_is_temporary() {
    let w = world().await;
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut c = RelayConfig::default();
    c.routes
        .insert("remote.example".into(), format!("127.0.0.1:{port}"));
    let relay = Relay::new(w.store.clone(), c);
    w.store
        .enqueue(queued(&w, vec![rcpt("bob@remote.example")]))
        .await
        .unwrap();
    let queue = run_until(&w, relay, |q| q.first().is_some_and(|e| e.attempts == 1)).await;
    let reply = queue[0].recipients[0].last_reply.clone().unwrap();
    assert!(reply.contains(&format!("127.0.0.1:{port}")), "{reply}");
    assert_eq!(queue[0].recipients[0].state, RecipientState::Pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_opportunistic_handshake_falls_back_to_cleartext() {
    let w = world().await;
    let sink = sink::start(SinkConfig {
        broken_starttls: true,
        ..SinkConfig::default()
    })
    .await;
    let relay = Relay::new(w.store.clone(), config(&sink));
    w.store
        .enqueue(queued(&w, vec![rcpt("bob@remote.example")]))
        .await
        .unwrap();
    run_until(&w, relay, |q| q.is_empty()).await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert!(!messages[0].1, "delivered in cleartext");
    let starttls = sink.commands().iter().filter(|c| *c == "STARTTLS").count();
    assert_eq!(starttls, 1, "the second connection does not try TLS again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smarthost_with_implicit_tls() {
    let w = world().await;
    let (acceptor, pem) = sink::tls_acceptor();
    let sink = sink::start(SinkConfig {
        implicit: Some(acceptor),
        auth: Some(("relayuser".into(), "s3cret".into())),
        ..SinkConfig::default()
    })
    .await;
    let ca = w._dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let mut c = smarthost(&sink, Some(ca), true);
    if let Some(s) = c.smarthost.as_mut() {
        s.tls = TlsMode::Implicit;
    }
    let relay = Relay::new(w.store.clone(), c);
    w.store
        .enqueue(queued(&w, vec![rcpt("dave@anywhere.example")]))
        .await
        .unwrap();
    run_until(&w, relay, |q| q.is_empty()).await;
    assert!(!sink.commands().contains(&"STARTTLS".to_string()));
    assert!(sink.commands().iter().any(|c| c.starts_with("AUTH PLAIN ")));
    assert!(sink.messages()[0].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_to_the_next_address() {
    let w = world().await;
    let sink = sink::start(SinkConfig::default()).await;
    // The static route's host name resolves to two loopback addresses; nothing
    // listens on the first.
    let mut dns = FakeDns::default();
    dns.ips.insert(
        "hop.test".into(),
        Ok(vec![
            "127.0.0.2".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
        ]),
    );
    let mut c = config(&sink);
    c.routes.insert(
        "remote.example".into(),
        format!("hop.test:{}", sink.addr.port()),
    );
    let relay = Relay::new(w.store.clone(), c).with_resolver(Arc::new(dns));
    w.store
        .enqueue(queued(&w, vec![rcpt("bob@remote.example")]))
        .await
        .unwrap();
    run_until(&w, relay, |q| q.is_empty()).await;
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waker_wakes_an_idle_runner() {
    let w = world().await;
    let sink = sink::start(SinkConfig::default()).await;
    let relay = Relay::new(w.store.clone(), config(&sink));
    let waker = relay.waker();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(relay.run(shutdown.signal()));
    // Let it find the queue empty and go to sleep (for up to 30 s).
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.store
        .enqueue(queued(&w, vec![rcpt("bob@remote.example")]))
        .await
        .unwrap();
    waker.notify_one();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !w.store.queue_list().await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "not woken");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.shutdown(Duration::from_secs(1)).await;
    task.await.unwrap();
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_recipients_go_in_transactions_of_fifty() {
    let w = world().await;
    let sink = sink::start(SinkConfig::default()).await;
    let relay = Relay::new(w.store.clone(), config(&sink));
    let recipients = (0..120)
        .map(|i| rcpt(&format!("u{i}@remote.example")))
        .collect();
    w.store.enqueue(queued(&w, recipients)).await.unwrap();
    run_until(&w, relay, |q| q.is_empty()).await;
    assert_eq!(sink.messages().len(), 3, "50 + 50 + 20");
    let ehlos = sink
        .commands()
        .iter()
        .filter(|c| c.starts_with("EHLO"))
        .count();
    assert_eq!(ehlos, 1, "one connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_host_does_not_hold_up_the_queue() {
    let w = world().await;
    let sink = sink::start(SinkConfig::default()).await;
    // A host that accepts and then says nothing.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    let mut c = config(&sink);
    c.command_timeout = Duration::from_secs(30);
    c.routes
        .insert("slow.example".into(), silent_addr.to_string());
    let relay = Relay::new(w.store.clone(), c);
    let slow = w
        .store
        .enqueue(queued(&w, vec![rcpt("x@slow.example")]))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    // The runner is already busy with the slow entry when this one arrives.
    let store = w.store.clone();
    let alice = w.alice.id;
    let relay_waker = relay.waker();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let new = NewQueued {
            sender: "alice@example.org".into(),
            account: Some(alice),
            recipients: vec![rcpt("bob@remote.example")],
            message: MESSAGE.to_vec(),
            envid: None,
            ret: None,
            expires: now_unix() + 3600,
        };
        store.enqueue(new).await.unwrap();
        relay_waker.notify_one();
    });
    let queue = run_until(&w, relay, |q| q.len() == 1 && sink.messages().len() == 1).await;
    assert_eq!(queue[0].id, slow, "the slow one is still in flight");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A message with UTF-8 in its body (8-bit content, ASCII header fields).
const EIGHT_BIT: &[u8] = "From: Alice <alice@example.org>\r\n\
    To: bob@remote.example\r\n\
    Subject: 8-bit body\r\n\
    Message-ID: <m8@example.org>\r\n\
    MIME-Version: 1.0\r\n\
    Content-Type: text/plain; charset=utf-8\r\n\
    Content-Transfer-Encoding: 8bit\r\n\
    \r\n\
    Grüße aus Köln = 100 €\r\n\
    .dot line\r\n"
    .as_bytes();

fn dkim_key() -> DkimKey {
    DkimKey {
        domain: "example.org".into(),
        selector: "sel".into(),
        key_file: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/dkim-rsa-pkcs1.pem"),
    }
}

// Issue 23, finding 3: RFC 6152 §3 — 8-bit content for a server without 8BITMIME
// is converted to 7-bit (the DKIM signature made over what is sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_bit_to_a_host_without_8bitmime_goes_as_7bit_and_the_signature_verifies() {
    let w = world().await;
    let sink = sink::start(SinkConfig {
        extensions: vec!["SIZE 10000000".into(), "DSN".into()],
        ..SinkConfig::default()
    })
    .await;
    let mut c = config(&sink);
    c.dkim.push(dkim_key());
    let relay = Relay::new(w.store.clone(), c);
    let mut new = queued(&w, vec![rcpt("bob@remote.example")]);
    new.message = EIGHT_BIT.to_vec();
    w.store.enqueue(new).await.unwrap();
    run_until(&w, relay, |q| q.is_empty()).await;
    let got = &sink.messages()[0].0;
    let text = String::from_utf8_lossy(got);
    assert!(got.iter().all(|&b| b < 0x80), "7-bit only: {text}");
    assert!(
        text.contains("Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe aus K=C3=B6ln =3D 100 =E2=82=AC\r\n.dot line\r\n"),
        "{text}"
    );
    assert!(!text.contains("8bit"), "{text}");
    let mail = sink
        .commands()
        .into_iter()
        .find(|c| c.starts_with("MAIL"))
        .unwrap();
    assert!(!mail.contains("BODY="), "{mail}");
    let record = crate::dkim::dns_record(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/dkim-rsa-pkcs1.pem"),
    )
    .unwrap();
    assert_eq!(
        crate::dkim::tests::verify(got, &record).await,
        [mail_auth::DkimResult::Pass],
        "{text}"
    );
    assert!(inbox(&w).await.is_empty(), "no bounce");
}

// Issue 23, finding 3: 8-bit header fields cannot be made 7-bit without
// rewriting them; to a server with neither 8BITMIME nor SMTPUTF8 that bounces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_bit_headers_to_a_host_without_8bitmime_bounce() {
    let w = world().await;
    let sink = sink::start(SinkConfig {
        extensions: vec!["SIZE 10000000".into()],
        ..SinkConfig::default()
    })
    .await;
    let relay = Relay::new(w.store.clone(), config(&sink));
    let mut new = queued(&w, vec![rcpt("bob@remote.example")]);
    new.message = "From: alice@example.org\r\nSubject: Grüße\r\n\r\nbody\r\n"
        .as_bytes()
        .to_vec();
    w.store.enqueue(new).await.unwrap();
    run_until(&w, relay, |q| q.is_empty()).await;
    assert!(sink.messages().is_empty(), "nothing 8-bit was sent");
    let inbox = inbox(&w).await;
    assert_eq!(inbox.len(), 1, "a bounce");
    assert!(inbox[0].contains("Status: 5.6.3"), "{}", inbox[0]);
    assert!(inbox[0].contains("8BITMIME"), "{}", inbox[0]);
}

// Issue 23, finding 4: RFC 6531 §3.4 — UTF-8 header fields need SMTPUTF8 even
// with ASCII addresses; a next hop that offers it gets MAIL ... SMTPUTF8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utf8_header_fields_go_with_smtputf8() {
    let w = world().await;
    let sink = sink::start(SinkConfig {
        extensions: vec!["8BITMIME".into(), "SMTPUTF8".into()],
        ..SinkConfig::default()
    })
    .await;
    let relay = Relay::new(w.store.clone(), config(&sink));
    let message = "From: Jürgen <alice@example.org>\r\nSubject: Grüße\r\n\r\nHallo\r\n";
    let mut new = queued(&w, vec![rcpt("bob@remote.example")]);
    new.message = message.as_bytes().to_vec();
    w.store.enqueue(new).await.unwrap();
    run_until(&w, relay, |q| q.is_empty()).await;
    assert_eq!(sink.messages()[0].0, message.as_bytes(), "sent as it is");
    let mail = sink
        .commands()
        .into_iter()
        .find(|c| c.starts_with("MAIL"))
        .unwrap();
    assert_eq!(mail, "MAIL FROM:<alice@example.org> BODY=8BITMIME SMTPUTF8");
}

// RFC 6531 §3.4: with UTF-8 header fields and a next hop that offers
// 8BITMIME but not SMTPUTF8, nothing is sent; the sender gets a bounce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utf8_header_fields_are_not_sent_without_smtputf8() {
    let w = world().await;
    let sink = sink::start(SinkConfig {
        extensions: vec!["8BITMIME".into()],
        ..SinkConfig::default()
    })
    .await;
    let relay = Relay::new(w.store.clone(), config(&sink));
    let message = "From: Jürgen <alice@example.org>\r\nSubject: Grüße\r\n\r\nHallo\r\n";
    let mut new = queued(&w, vec![rcpt("bob@remote.example")]);
    new.message = message.as_bytes().to_vec();
    w.store.enqueue(new).await.unwrap();
    run_until(&w, relay, |q| q.is_empty()).await;
    assert!(sink.messages().is_empty(), "nothing was sent");
    let inbox = inbox(&w).await;
    assert_eq!(inbox.len(), 1, "a bounce");
    assert!(inbox[0].contains("5.6.7"), "{}", inbox[0]);
}

// Issue 23, finding 8: MX routing end to end through the real resolver, asking a
// DNS server on loopback (`dns_servers`) — preference order, the next MX when the
// first refuses, the implicit MX (no MX, an address), and the null MX.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mx_routing_against_a_dns_server_on_loopback() {
    use std::net::Ipv4Addr;
    let w = world().await;
    // The good MX on 127.0.0.3; the preferred one on 127.0.0.2, same port,
    // refuses every connection with 554 at the greeting.
    let good = sink::start_on("127.0.0.3:0".parse().unwrap(), SinkConfig::default()).await;
    let port = good.addr.port();
    let refusing = sink::start_on(
        std::net::SocketAddr::new([127, 0, 0, 2].into(), port),
        SinkConfig {
            refuse: Some("554 5.7.1 mx1 takes no mail".into()),
            ..SinkConfig::default()
        },
    )
    .await;
    let (dns, asked) = sink::dns(
        vec![
            // Listed worst first: the order must come from the preference.
            ("remote.example", 20, "mx2.remote.example"),
            ("remote.example", 10, "mx1.remote.example"),
            ("nullmx.example", 0, "."),
        ],
        vec![
            ("mx1.remote.example", Ipv4Addr::new(127, 0, 0, 2)),
            ("mx2.remote.example", Ipv4Addr::new(127, 0, 0, 3)),
            ("implicit.example", Ipv4Addr::new(127, 0, 0, 3)),
        ],
    )
    .await;
    let c = RelayConfig {
        hostname: "relay.example.org".into(),
        connect_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(5),
        dns_servers: vec![dns],
        smtp_port: port,
        ..RelayConfig::default()
    };
    let relay = Relay::new(w.store.clone(), c);
    for to in [
        "bob@remote.example",
        "carol@implicit.example",
        "dave@nullmx.example",
    ] {
        w.store.enqueue(queued(&w, vec![rcpt(to)])).await.unwrap();
    }
    run_until(&w, relay, |q| q.is_empty()).await;
    let rcpts: Vec<String> = good
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("RCPT"))
        .collect();
    assert_eq!(rcpts.len(), 2, "{rcpts:?}");
    assert!(rcpts.iter().any(|c| c.contains("bob@remote.example")));
    assert!(rcpts.iter().any(|c| c.contains("carol@implicit.example")));
    assert_eq!(good.messages().len(), 2);
    assert_eq!(
        refusing.commands(),
        vec!["(refused: 554 5.7.1 mx1 takes no mail)".to_string()],
        "mx1 (preference 10) was tried first, once"
    );
    let inbox = inbox(&w).await;
    assert_eq!(inbox.len(), 1, "one bounce: the null MX");
    assert!(
        inbox[0].contains("Final-Recipient: rfc822; dave@nullmx.example")
            && inbox[0].contains("Status: 5.1.10"),
        "{}",
        inbox[0]
    );
    let asked = asked.lock().unwrap().clone();
    assert!(
        asked.contains(&"MX implicit.example".to_string()),
        "{asked:?}"
    );
    assert!(
        asked.contains(&"A implicit.example".to_string()),
        "{asked:?}"
    );
}

// Issue 23, finding 7: connections are reused per destination (Postfix's
// connection cache): many messages to one host need few connections, each
// message still arrives once, and waiting connections are closed with QUIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_messages_to_one_destination_share_a_few_connections() {
    const N: usize = 200;
    let w = world().await;
    let sink = sink::start(SinkConfig::default()).await;
    let relay = Relay::new(w.store.clone(), config(&sink));
    for i in 0..N {
        let mut new = queued(&w, vec![rcpt("bob@remote.example")]);
        new.message = format!("Subject: n{i}\r\n\r\nmessage {i}\r\n").into_bytes();
        w.store.enqueue(new).await.unwrap();
    }
    run_until(&w, relay, |q| q.is_empty()).await;
    let messages = sink.messages();
    assert_eq!(messages.len(), N);
    let mut seen: Vec<String> = messages
        .iter()
        .map(|(m, _)| String::from_utf8_lossy(m).into_owned())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), N, "each message once");
    let commands = sink.commands();
    let connections = commands.iter().filter(|c| c.starts_with("EHLO")).count();
    eprintln!("{N} messages over {connections} connections");
    assert!(
        connections <= 2 * crate::PARALLEL,
        "{connections} connections for {N} messages"
    );
    let quits = commands.iter().filter(|c| *c == "QUIT").count();
    assert_eq!(quits, connections, "every connection ends with QUIT");
}
