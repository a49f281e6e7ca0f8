//! The PostgreSQL backend against a throwaway PostgreSQL 15 cluster (the
//! conformance rules run in `tests/conformance.rs`): what only a shared store
//! must get right — several
//! nodes (two `PgStore`s on one database) appending, locking, claiming and
//! notifying at once.
//!
//! The cluster is started here with initdb / pg_ctl (from /usr/lib/postgresql/15/bin
//! or `$CASELLA_PG_BIN`), as the `postgres` user when the test runs as root, on a
//! free loopback port, and stopped (`-m immediate`) and deleted when the test ends,
//! panics included. Each scenario gets its own database.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use casella_store::postgres::{PgOptions, PgStore};
use casella_store::{
    Change, DirectoryStore, Flag, FlagOp, FlagSet, LifecycleStore, MailStore, MessageRef,
    NewAccount, NewMessage, NewQueued, QueueStore, QueuedRecipient, RecipientState, Store,
    StoreError, Uid,
};
use casella_testkit::postgres::Cluster;
use tokio_postgres::NoTls;

/// A plain client for checks behind the store's back.
async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("admin connection");
    tokio::spawn(conn);
    client
}

async fn node(url: &str, name: &str) -> PgStore {
    PgStore::connect_with(
        url,
        PgOptions {
            node_id: Some(name.to_string()),
            ..PgOptions::default()
        },
    )
    .await
    .expect("connect")
}

async fn account(store: &dyn Store, address: &str) -> casella_store::Account {
    store
        .create_account(NewAccount {
            address: address.into(),
            password_hash: "x".into(),
            is_admin: false,
        })
        .await
        .expect("create_account")
}

fn message(subject: &str) -> NewMessage {
    NewMessage {
        raw: format!("From: a@example.org\r\nSubject: {subject}\r\n\r\nHello {subject}\r\n")
            .into_bytes(),
        internal_date: None,
        flags: FlagSet::new(),
        binary: false,
    }
}

async fn inbox(store: &dyn Store, account: casella_store::AccountId) -> casella_store::Mailbox {
    store
        .mailbox_by_name(account, "INBOX")
        .await
        .unwrap()
        .expect("INBOX")
}

// ---- the test ----

#[test]
fn postgres_backend() {
    let cluster = Cluster::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let started = Instant::now();
        let mut failed = Vec::new();
        macro_rules! scenario {
            ($name:ident) => {{
                let url = cluster.database(stringify!($name));
                let t = Instant::now();
                let r = tokio::spawn($name(url)).await;
                eprintln!(
                    "{} {} ({} ms)",
                    if r.is_ok() { "ok  " } else { "FAIL" },
                    stringify!($name),
                    t.elapsed().as_millis()
                );
                if r.is_err() {
                    failed.push(stringify!($name));
                }
            }};
        }
        scenario!(migrations_are_versioned_and_safe_at_once);
        scenario!(concurrent_appends_from_two_nodes);
        scenario!(maildrop_lock_across_nodes);
        scenario!(maildrop_lease_fences_the_old_holder);
        scenario!(changes_reach_the_other_node_quickly);
        scenario!(listener_reconnects_and_resyncs);
        scenario!(queue_claims_across_nodes);
        scenario!(blobs_are_shared_and_freed);
        scenario!(rows_from_before_the_search_column_still_answer);
        scenario!(rows_without_sort_keys_get_them_on_first_use);
        scenario!(crossing_moves_do_not_deadlock);
        scenario!(cancelled_calls_leave_no_open_transaction);
        scenario!(errors_map_to_the_store_vocabulary);
        scenario!(import_keeps_uids_and_modseqs);
        // Over the unix socket (key=value form).
        let url = cluster.database("socket");
        account(
            &PgStore::connect(&url).await.expect("connect"),
            "alice@example.org",
        )
        .await;
        let socket = format!(
            "host={} port={} user=casella dbname=socket",
            cluster.socket_dir().display(),
            cluster.port()
        );
        match PgStore::connect(&socket).await {
            Ok(store) => {
                let a = store.account_by_address("alice@example.org").await;
                assert!(matches!(a, Ok(Some(_))), "{a:?}");
                eprintln!("ok   unix socket");
            }
            Err(e) => {
                eprintln!("FAIL unix socket: {e}");
                failed.push("unix socket");
            }
        }
        eprintln!("all scenarios: {} ms", started.elapsed().as_millis());
        assert!(failed.is_empty(), "failed scenarios: {failed:?}");
    });
    drop(rt);
    drop(cluster);
}

/// The maildrop lease through a database restart (it stays with its holder, which
/// goes on writing) and through an outage longer than the lease (the holder gives
/// it up on its own clock before the database lets another node take it, and its
/// writes are refused afterwards). Its own cluster: it stops and starts it.
#[test]
fn maildrop_lease_through_a_restart_and_an_outage() {
    let Some(cluster) = Cluster::try_start() else {
        return;
    };
    let url = cluster.database("lease");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let lease = Duration::from_secs(3);
        let a = node_with_lease(&url, "a", lease).await;
        let b = node_with_lease(&url, "b", lease).await;
        let acct = account(&a, "restart@example.org").await;
        let mb = inbox(&a, acct.id).await;
        let uid = a.append(mb.id, message("r")).await.unwrap().uid;
        let seen: FlagSet = [Flag::Seen].into_iter().collect();
        let on_a = a.lock_maildrop(acct.id).await.expect("lock on A");
        let a_writes = on_a.fenced_store().expect("a fenced store");

        tokio::task::block_in_place(|| cluster.restart());
        let back = Instant::now();
        // For a lease's length after the restart, B is refused every time.
        let mut tries = 0;
        while back.elapsed() < lease {
            match b.lock_maildrop(acct.id).await {
                Err(StoreError::InUse(_)) => tries += 1,
                Err(StoreError::Temporary(_)) => {}
                Ok(_) => panic!(
                    "B was granted the maildrop {:?} after the restart",
                    back.elapsed()
                ),
                Err(e) => panic!("{e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(tries > 10, "B was refused [IN-USE] only {tries} times");
        on_a.check().expect("A holds it through the restart");
        a_writes
            .store_flags(mb.id, &[uid], FlagOp::Add, &seen)
            .await
            .expect("A writes after the restart");

        // An outage longer than the lease: A gives it up while the database is
        // still down, before anyone could take it.
        tokio::task::block_in_place(|| cluster.stop("fast"));
        let down = Instant::now();
        let mut lost_after = None;
        while down.elapsed() < lease + Duration::from_secs(1) {
            if lost_after.is_none() && on_a.check().is_err() {
                lost_after = Some(down.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let lost_after = lost_after.expect("A gave the lock up during the outage");
        assert!(
            lost_after < lease,
            "A gave it up {lost_after:?} into the outage"
        );
        assert!(matches!(on_a.check(), Err(StoreError::Temporary(_))));
        tokio::task::block_in_place(|| cluster.start_again());
        // B gets it once the database is back (its pool and lock connection
        // reconnect); A's writes are refused.
        let deadline = Instant::now() + Duration::from_secs(10);
        let on_b = loop {
            match b.lock_maildrop(acct.id).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "B never got the lock: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let stale = a_writes
            .store_flags(mb.id, &[uid], FlagOp::Remove, &seen)
            .await;
        assert!(matches!(stale, Err(StoreError::InUse(_))), "{stale:?}");
        let listed = b.list_messages(mb.id).await.unwrap();
        assert!(listed[0].flags.contains(&Flag::Seen));
        eprintln!(
            "restart: B refused {tries} times; outage: A gave the lock up {lost_after:?} \
             into it"
        );
        drop(on_b);
        drop(on_a);
    });
    drop(rt);
    drop(cluster);
}

async fn migrations_are_versioned_and_safe_at_once(url: String) {
    // Several nodes starting together: one migrates, the others wait and find the
    // schema current.
    let mut starts = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        starts.push(tokio::spawn(async move { PgStore::connect(&url).await }));
    }
    for s in starts {
        s.await.unwrap().expect("concurrent start");
    }
    let admin = connect(&url).await;
    let versions: Vec<i32> = admin
        .query("SELECT version FROM schema_version ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let want: Vec<i32> = (1..=casella_store::postgres::MIGRATIONS.len() as i32).collect();
    assert_eq!(versions, want, "each version applied once");
    // Again: nothing to do.
    PgStore::connect(&url).await.expect("restart");
    // A newer schema than this build is refused, not used.
    admin
        .execute("INSERT INTO schema_version(version) VALUES (1000)", &[])
        .await
        .unwrap();
    assert!(matches!(
        PgStore::connect(&url).await,
        Err(StoreError::Internal(_))
    ));
    admin
        .execute("DELETE FROM schema_version WHERE version = 1000", &[])
        .await
        .unwrap();
}

async fn concurrent_appends_from_two_nodes(url: String) {
    let a = Arc::new(node(&url, "a").await);
    let b = Arc::new(node(&url, "b").await);
    let acct = account(&*a, "both@example.org").await;
    let mb = inbox(&*b, acct.id).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store: Arc<PgStore> = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store.append(mb.id, message(&format!("m{i}"))).await
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        let ap = t.await.unwrap().expect("append");
        assert_eq!(ap.uid_validity, mb.uid_validity);
        got.push((ap.modseq, ap.uid));
    }
    let uids: BTreeSet<u32> = got.iter().map(|(_, u)| u.0).collect();
    assert_eq!(
        uids.iter().copied().collect::<Vec<_>>(),
        (1..=40).collect::<Vec<_>>(),
        "distinct UIDs, no gaps"
    );
    let modseqs: HashSet<_> = got.iter().map(|(m, _)| *m).collect();
    assert_eq!(modseqs.len(), 40, "MODSEQs are unique");
    // Commit order: a later MODSEQ always has a later UID.
    got.sort();
    assert!(got.windows(2).all(|w| w[0].1 < w[1].1), "{got:?}");
    let listed = a.list_messages(mb.id).await.unwrap();
    assert_eq!(listed.len(), 40);
    let after = b.mailbox(mb.id).await.unwrap();
    assert_eq!(after.uid_next, Uid(41));
    assert_eq!(after.highest_modseq, got.last().unwrap().0);

    // Flag changes from both nodes on the same messages are atomic: every add lands.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store: Arc<PgStore> = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let kw: FlagSet = [Flag::Keyword(format!("$k{i}"))].into_iter().collect();
            store
                .store_flags(mb.id, &[Uid(1), Uid(2)], FlagOp::Add, &kw)
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("store_flags");
    }
    let listed = a.list_messages(mb.id).await.unwrap();
    assert_eq!(listed[0].flags.len(), 10, "{:?}", listed[0].flags);
    assert_eq!(listed[1].flags.len(), 10);
}

async fn leases_held(url: &str) -> i64 {
    let admin = connect(url).await;
    admin
        .query_one("SELECT count(*) FROM maildrop_leases", &[])
        .await
        .unwrap()
        .get(0)
}

async fn maildrop_lock_across_nodes(url: String) {
    let a = node(&url, "a").await;
    let b = node(&url, "b").await;
    let acct = account(&a, "pop@example.org").await;
    let held = a.lock_maildrop(acct.id).await.expect("lock on A");
    assert!(matches!(
        b.lock_maildrop(acct.id).await,
        Err(StoreError::InUse(_))
    ));
    assert!(matches!(
        a.lock_maildrop(acct.id).await,
        Err(StoreError::InUse(_))
    ));
    assert_eq!(leases_held(&url).await, 1);
    drop(held);
    // The unlock is queued on drop: the same node sees it at once, another node a
    // moment later.
    let on_b = lock_soon(&b, acct.id).await;
    assert!(matches!(
        a.lock_maildrop(acct.id).await,
        Err(StoreError::InUse(_))
    ));
    drop(on_b);
    drop(lock_soon(&a, acct.id).await);
    // Many sessions on one node lock and unlock; none stays held afterwards.
    for _ in 0..20 {
        let l = a.lock_maildrop(acct.id).await.expect("relock on A");
        drop(l);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while leases_held(&url).await != 0 {
        assert!(Instant::now() < deadline, "leases left behind");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The lock is a lease row, not a connection's state: when the holder's
    // connection is cut (as by a database restart), the lock stays its own — no
    // other node gets it — and its release still lands.
    let held = b.lock_maildrop(acct.id).await.expect("lock on B");
    let admin = connect(&url).await;
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE application_name = 'casella-maildrop'",
            &[],
        )
        .await
        .unwrap();
    assert!(matches!(
        a.lock_maildrop(acct.id).await,
        Err(StoreError::InUse(_))
    ));
    held.check()
        .expect("still held after its connection was cut");
    drop(held);
    drop(lock_soon(&a, acct.id).await);
}

/// One node's store whose maildrop leases last `lease`.
async fn node_with_lease(url: &str, name: &str, lease: Duration) -> PgStore {
    PgStore::connect_with(
        url,
        PgOptions {
            node_id: Some(name.to_string()),
            maildrop_lease: lease,
            ..PgOptions::default()
        },
    )
    .await
    .expect("connect")
}

/// A lease that lapsed (here: its expiry moved into the past behind the store's
/// back, as when its node stalled for longer than the lease) is taken over with a
/// new, larger token; from then on every write of the old holder is refused, and
/// its next renewal tells it the lock is gone.
async fn maildrop_lease_fences_the_old_holder(url: String) {
    let lease = Duration::from_millis(900);
    let a = node_with_lease(&url, "a", lease).await;
    let b = node_with_lease(&url, "b", lease).await;
    let acct = account(&a, "fence@example.org").await;
    let mb = inbox(&a, acct.id).await;
    let uid = a.append(mb.id, message("f")).await.unwrap().uid;
    let seen: FlagSet = [Flag::Seen].into_iter().collect();

    let on_a = a.lock_maildrop(acct.id).await.expect("lock on A");
    let a_writes = on_a.fenced_store().expect("a fenced store");
    // Renewed: held well past its length.
    tokio::time::sleep(lease * 3).await;
    on_a.check().expect("renewed");
    assert!(matches!(
        b.lock_maildrop(acct.id).await,
        Err(StoreError::InUse(_))
    ));
    a_writes
        .store_flags(mb.id, &[uid], FlagOp::Add, &seen)
        .await
        .expect("the holder writes");

    let admin = connect(&url).await;
    let old: i64 = admin
        .query_one(
            "UPDATE maildrop_leases SET expires_at = clock_timestamp() - interval '1 second'
              WHERE account_id = $1 RETURNING token",
            &[&acct.id.0],
        )
        .await
        .unwrap()
        .get(0);
    let on_b = b.lock_maildrop(acct.id).await.expect("taken over on B");
    let new: i64 = admin
        .query_one(
            "SELECT token FROM maildrop_leases WHERE account_id = $1",
            &[&acct.id.0],
        )
        .await
        .unwrap()
        .get(0);
    assert!(new > old, "tokens grow: {old} then {new}");
    assert!(matches!(
        a_writes
            .store_flags(mb.id, &[uid], FlagOp::Remove, &seen)
            .await,
        Err(StoreError::InUse(_))
    ));
    let gone = [MessageRef {
        mailbox: mb.id,
        uid,
    }];
    assert!(matches!(
        a_writes.expunge(acct.id, &gone).await,
        Err(StoreError::InUse(_))
    ));
    let listed = b.list_messages(mb.id).await.unwrap();
    assert_eq!(listed.len(), 1, "A's refused expunge removed nothing");
    assert!(
        listed[0].flags.contains(&Flag::Seen),
        "A's refused write left no trace"
    );
    // A's node learns at its next renewal (every lease / 3).
    let deadline = Instant::now() + lease;
    while on_a.check().is_ok() {
        assert!(Instant::now() < deadline, "A was not told it lost the lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(on_a.check(), Err(StoreError::InUse(_))));
    on_b.fenced_store()
        .unwrap()
        .expunge(acct.id, &gone)
        .await
        .expect("the new holder writes");
    // A's release (its guard dropped) leaves B's lease alone.
    drop(on_a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    on_b.check().expect("B still holds it");
    assert_eq!(leases_held(&url).await, 1);
    drop(on_b);

    // A takeover waits for a write of the old holder already past its check (it
    // holds the lease row FOR KEY SHARE until commit), and fails rather than
    // waiting long when that write hangs.
    // B's release reaches the database a moment after its guard is dropped.
    let on_a = lock_soon(&a, acct.id).await;
    let mut writer = connect(&url).await;
    let in_flight = writer.transaction().await.unwrap();
    in_flight
        .query_one(
            "SELECT 1 FROM maildrop_leases WHERE account_id = $1 FOR KEY SHARE",
            &[&acct.id.0],
        )
        .await
        .unwrap();
    admin
        .execute(
            "UPDATE maildrop_leases SET expires_at = clock_timestamp() - interval '1 second'
              WHERE account_id = $1",
            &[&acct.id.0],
        )
        .await
        .expect("a renewal-like update does not wait for the write");
    let b2 = b.clone();
    let id = acct.id;
    let takeover = tokio::spawn(async move { b2.lock_maildrop(id).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!takeover.is_finished(), "the takeover waits for the write");
    in_flight.commit().await.unwrap();
    let on_b = takeover.await.unwrap().expect("taken over after the write");
    drop(on_b);
    drop(on_a);
}

/// Takes the lock, waiting up to 2 s for another node's release to land.
async fn lock_soon(
    store: &PgStore,
    account: casella_store::AccountId,
) -> casella_store::MaildropLock {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match store.lock_maildrop(account).await {
            Ok(l) => return l,
            Err(StoreError::InUse(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(e) => panic!("lock after release: {e}"),
        }
    }
}

/// Waits up to `wait` for a change that `want` accepts (skipping others).
async fn next_about(
    rx: &mut tokio::sync::broadcast::Receiver<Change>,
    wait: Duration,
    want: impl Fn(&Change) -> bool,
) -> Option<Change> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(c)) if want(&c) => return Some(c),
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => panic!("feed: {e}"),
            Err(_) => return None,
        }
    }
}

async fn changes_reach_the_other_node_quickly(url: String) {
    let a = node(&url, "a").await;
    let b = node(&url, "b").await;
    let acct = account(&a, "idle@example.org").await;
    let mb = inbox(&a, acct.id).await;
    let mut rx = b.subscribe(acct.id);
    for i in 0..5 {
        let ap = a.append(mb.id, message(&format!("n{i}"))).await.unwrap();
        let t = Instant::now();
        let c = next_about(&mut rx, Duration::from_secs(2), |c| {
            *c == Change::MailboxChanged { mailbox: mb.id }
        })
        .await;
        let took = t.elapsed();
        assert!(
            c.is_some(),
            "append {i} (UID {}) never reached node B",
            ap.uid.0
        );
        assert!(
            took < Duration::from_millis(200),
            "append on A reached B after {took:?}"
        );
    }
    // Flags and expunges too.
    let seen: FlagSet = [Flag::Seen].into_iter().collect();
    a.store_flags(mb.id, &[Uid(1)], FlagOp::Add, &seen)
        .await
        .unwrap();
    assert!(
        next_about(&mut rx, Duration::from_millis(200), |c| *c
            == Change::MailboxChanged { mailbox: mb.id })
        .await
        .is_some(),
        "flag change"
    );
    a.expunge(
        acct.id,
        &[MessageRef {
            mailbox: mb.id,
            uid: Uid(2),
        }],
    )
    .await
    .unwrap();
    assert!(
        next_about(&mut rx, Duration::from_millis(200), |c| *c
            == Change::MailboxChanged { mailbox: mb.id })
        .await
        .is_some(),
        "expunge"
    );
    // A mailbox created on A shows in B's list.
    a.create_mailbox(acct.id, "Projects", None).await.unwrap();
    assert!(
        next_about(&mut rx, Duration::from_millis(200), |c| *c
            == Change::MailboxList)
        .await
        .is_some(),
        "mailbox list"
    );
    // B's own commits come once, as exact changes: its NOTIFY is not echoed back.
    let own = b.append(mb.id, message("own")).await.unwrap();
    let c = next_about(&mut rx, Duration::from_secs(1), |_| true)
        .await
        .expect("own append");
    assert_eq!(
        c,
        Change::Appended {
            mailbox: mb.id,
            uid: own.uid,
            modseq: own.modseq
        }
    );
    assert_eq!(
        next_about(&mut rx, Duration::from_millis(300), |_| true).await,
        None,
        "no echo of B's own change"
    );
    // An account nobody on B watches costs B nothing (and sends nothing).
    let other = account(&a, "quiet@example.org").await;
    a.deliver(other.id, message("q").raw).await.unwrap();
    assert_eq!(
        next_about(&mut rx, Duration::from_millis(100), |_| true).await,
        None
    );
}

async fn listener_reconnects_and_resyncs(url: String) {
    let a = node(&url, "a").await;
    let b = node(&url, "b").await;
    let acct = account(&a, "reconnect@example.org").await;
    let mb = inbox(&a, acct.id).await;
    let mut rx = b.subscribe(acct.id);
    let admin = connect(&url).await;
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = 'casella-listener' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 2, "both nodes' listeners");
    // While B is not listening, A appends: B learns of it when it reconnects.
    a.append(mb.id, message("during the outage")).await.unwrap();
    assert!(
        next_about(&mut rx, Duration::from_secs(5), |c| *c
            == Change::MailboxChanged { mailbox: mb.id })
        .await
        .is_some(),
        "resync hint after reconnect"
    );
    // And live notifications work again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = 'casella-listener' AND datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "listeners did not come back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while next_about(&mut rx, Duration::from_millis(50), |_| true)
        .await
        .is_some()
    {}
    a.append(mb.id, message("after")).await.unwrap();
    assert!(
        next_about(&mut rx, Duration::from_millis(200), |c| *c
            == Change::MailboxChanged { mailbox: mb.id })
        .await
        .is_some(),
        "live again"
    );
}

async fn queue_claims_across_nodes(url: String) {
    let a = Arc::new(node(&url, "node-a").await);
    let b = Arc::new(node(&url, "node-b").await);
    let now = casella_store::now_unix();
    let mut ids = BTreeSet::new();
    for i in 0..30 {
        let id = a
            .enqueue(NewQueued {
                sender: "s@example.org".into(),
                account: None,
                recipients: vec![QueuedRecipient {
                    address: format!("r{i}@remote.example"),
                    orcpt: None,
                    notify: None,
                    state: RecipientState::Pending,
                    last_reply: None,
                }],
                message: b"Subject: q\r\n\r\nx\r\n".to_vec(),
                envid: None,
                ret: None,
                expires: now + 3600,
            })
            .await
            .unwrap();
        ids.insert(id);
    }
    // Entries are due when they were queued.
    let next = b.queue_next_attempt().await.unwrap();
    assert!(
        matches!(next, Some(t) if (now..=now + 2).contains(&t)),
        "{next:?}"
    );
    let mut runners = Vec::new();
    for store in [a.clone(), b.clone(), a.clone(), b.clone()] {
        runners.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store.queue_claim(now + 5, 600, 3).await.expect("claim");
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|q| q.id));
            }
        }));
    }
    let mut claimed = Vec::new();
    let mut by_b = BTreeSet::new();
    for (i, r) in runners.into_iter().enumerate() {
        let got = r.await.unwrap();
        if i % 2 == 1 {
            by_b.extend(got.iter().copied());
        }
        claimed.extend(got);
    }
    let distinct: BTreeSet<_> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), distinct.len(), "no entry claimed twice");
    assert_eq!(distinct, ids, "every due entry claimed");
    assert_eq!(
        a.queue_next_attempt().await.unwrap(),
        None,
        "nothing unclaimed"
    );
    // B restarts: it takes back its own claims only.
    b.queue_release_claims().await.unwrap();
    let again: BTreeSet<_> = a
        .queue_claim(now + 5, 600, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.id)
        .collect();
    assert_eq!(again, by_b, "only node B's claims were released");
    // An expired lease makes an entry due again for anyone.
    let later: BTreeSet<_> = b
        .queue_claim(now + 700, 600, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.id)
        .collect();
    assert_eq!(later, ids);
}

async fn blob_rows(admin: &tokio_postgres::Client) -> (i64, i64) {
    let r = admin
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE refcount <>
                 (SELECT count(*) FROM messages m WHERE m.blob = b.hash)
                 + (SELECT count(*) FROM recoverable r WHERE r.blob = b.hash))
             FROM blobs b",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

/// Blobs stored before schema version 4 hold the search fields inside
/// `parsed` and NULL in `search`.
async fn rows_from_before_the_search_column_still_answer(url: String) {
    let a = node(&url, "a").await;
    let admin = connect(&url).await;
    let x = account(&a, "old@example.org").await;
    let raw = message("from an older casella").raw;
    a.deliver(x.id, raw.clone()).await.unwrap();
    let (structure, search) = casella_mime::parse(&raw).split();
    let whole = serde_json::to_string(&casella_store::ParsedMessage {
        envelope: structure.envelope.clone(),
        body: structure.body.clone(),
        search: search.clone(),
    })
    .unwrap();
    admin
        .execute("UPDATE blobs SET parsed = $1, search = NULL", &[&whole])
        .await
        .unwrap();
    // A fresh node: nothing in its memory.
    let fresh = node(&url, "fresh").await;
    let inbox = fresh.mailbox_by_name(x.id, "INBOX").await.unwrap().unwrap();
    let blobs = [fresh.list_messages(inbox.id).await.unwrap()[0].blob.clone()];
    let got = fresh.structures(&blobs).await.unwrap().remove(0).unwrap();
    assert_eq!(*got, structure);
    let got = fresh
        .search_fields(&blobs, true)
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(*got, search);
    let got = fresh
        .search_fields(&blobs, false)
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(got.from, search.from);
    assert!(got.body_text.is_empty());
}

/// Rows stored before casella kept SORT/THREAD keys: the first `sort_fields`
/// parses their header once and writes the keys back to the row.
async fn rows_without_sort_keys_get_them_on_first_use(url: String) {
    let a = node(&url, "a").await;
    let admin = connect(&url).await;
    let x = account(&a, "sorter@example.org").await;
    let raw = b"From: Ann <ann@example.org>\r\nSubject: Re: old keys\r\n\
                Message-ID: <k@x>\r\n\r\nbody\r\n"
        .to_vec();
    a.deliver(x.id, raw.clone()).await.unwrap();
    let strip = "UPDATE blobs SET search = (search::jsonb - 'sort')::text";
    admin.execute(strip, &[]).await.unwrap();
    let fresh = node(&url, "fresh").await;
    let inbox = fresh.mailbox_by_name(x.id, "INBOX").await.unwrap().unwrap();
    let blobs = [fresh.list_messages(inbox.id).await.unwrap()[0].blob.clone()];
    let stale = fresh
        .search_fields(&blobs, false)
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(stale.sort, None, "the row lost its keys");
    let got = fresh.sort_fields(&blobs).await.unwrap().remove(0).unwrap();
    let want = casella_mime::parse(&raw).search.sort.unwrap();
    assert_eq!(got.sort.as_ref(), Some(&want));
    assert_eq!(want.base_subject, "old keys");
    // Written back: another fresh node reads them without parsing.
    let row: String = admin
        .query_one("SELECT search FROM blobs", &[])
        .await
        .unwrap()
        .get(0);
    assert!(row.contains("\"base_subject\":\"old keys\""), "{row}");
    let other = node(&url, "other").await;
    let read = other
        .search_fields(&blobs, false)
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(read.sort.as_ref(), Some(&want));
    // The text columns are untouched.
    let text = other
        .search_fields(&blobs, true)
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert!(text.body_text.contains("body"), "{text:?}");
}

async fn blobs_are_shared_and_freed(url: String) {
    let a = node(&url, "a").await;
    let b = node(&url, "b").await;
    let admin = connect(&url).await;
    let x = account(&a, "x@example.org").await;
    let y = account(&b, "y@example.org").await;
    let raw = message("shared").raw;
    let (r1, r2) = tokio::join!(a.deliver(x.id, raw.clone()), b.deliver(y.id, raw.clone()));
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    assert_eq!(
        blob_rows(&admin).await,
        (1, 0),
        "one row for both, counted twice"
    );
    let archive = a.mailbox_by_name(x.id, "Archive").await.unwrap().unwrap();
    a.copy(r1.mailbox, &[r1.uid], archive.id).await.unwrap();
    a.expunge(
        x.id,
        &[MessageRef {
            mailbox: r1.mailbox,
            uid: r1.uid,
        }],
    )
    .await
    .unwrap();
    b.expunge(
        y.id,
        &[MessageRef {
            mailbox: r2.mailbox,
            uid: r2.uid,
        }],
    )
    .await
    .unwrap();
    assert_eq!(blob_rows(&admin).await, (1, 0), "the copy keeps it");
    let list = b.list_messages(archive.id).await.unwrap();
    assert_eq!(b.read_blob(&list[0].blob).await.unwrap(), raw);
    // The two expunged copies stay recoverable (references) until purged.
    assert_eq!(b.purge_recoverable(i64::MAX, 100).await.unwrap(), 2);
    assert_eq!(
        blob_rows(&admin).await,
        (1, 0),
        "x's archived copy keeps it"
    );
    a.delete_account(x.id).await.unwrap();
    assert_eq!(
        blob_rows(&admin).await,
        (0, 0),
        "freed with its last message"
    );
    assert!(matches!(
        b.read_blob(&list[0].blob).await,
        Err(StoreError::NotFound(_))
    ));
    // Content seen again after being freed is stored again.
    let again = b.deliver(y.id, raw.clone()).await.unwrap();
    let list = b.list_messages(again.mailbox).await.unwrap();
    assert_eq!(b.read_blob(&list[0].blob).await.unwrap(), raw);
}

async fn crossing_moves_do_not_deadlock(url: String) {
    let a = Arc::new(node(&url, "a").await);
    let b = Arc::new(node(&url, "b").await);
    let acct = account(&*a, "mover@example.org").await;
    let inbox_id = inbox(&*a, acct.id).await.id;
    let archive_id = a
        .mailbox_by_name(acct.id, "Archive")
        .await
        .unwrap()
        .unwrap()
        .id;
    // The same few contents everywhere, so blob rows are shared and contended.
    for i in 0..10 {
        a.append(inbox_id, message(&format!("c{}", i % 3)))
            .await
            .unwrap();
        a.append(archive_id, message(&format!("c{}", i % 3)))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for (i, store) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        let (from, to) = if i % 2 == 0 {
            (inbox_id, archive_id)
        } else {
            (archive_id, inbox_id)
        };
        let account = acct.id;
        tasks.push(tokio::spawn(async move {
            for round in 0..8 {
                let list = store.list_messages(from).await?;
                let uids: Vec<Uid> = list.iter().take(3).map(|m| m.uid).collect();
                match round % 4 {
                    0 => {
                        store.move_messages(from, &uids, to).await?;
                    }
                    1 => {
                        store.copy(from, &uids, to).await?;
                    }
                    2 => {
                        let refs: Vec<MessageRef> = uids
                            .iter()
                            .map(|&uid| MessageRef { mailbox: from, uid })
                            .collect();
                        store.expunge(account, &refs).await?;
                    }
                    _ => {
                        store
                            .append_batch(to, vec![message("c1"), message("c2")])
                            .await?;
                    }
                }
            }
            Ok::<_, StoreError>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("no deadlock or conflict");
    }
    let admin = connect(&url).await;
    assert_eq!(blob_rows(&admin).await.1, 0, "reference counts match");
    for mb in [inbox_id, archive_id] {
        let list = a.list_messages(mb).await.unwrap();
        let info = a.mailbox(mb).await.unwrap();
        assert!(list.iter().all(|m| m.uid < info.uid_next));
        assert!(list.iter().all(|m| m.modseq <= info.highest_modseq));
    }
}

async fn cancelled_calls_leave_no_open_transaction(url: String) {
    let store = Arc::new(node(&url, "a").await);
    let acct = account(&*store, "cancel@example.org").await;
    let mb = inbox(&*store, acct.id).await;
    // Give up on appends at every stage of their transactions.
    for i in 0..60u64 {
        let _ = tokio::time::timeout(
            Duration::from_micros(50 * i),
            store.append(mb.id, message(&format!("x{i}"))),
        )
        .await;
    }
    let ap = store
        .append(mb.id, message("last"))
        .await
        .expect("still works");
    let list = store.list_messages(mb.id).await.unwrap();
    assert_eq!(list.last().map(|m| m.uid), Some(ap.uid));
    let info = store.mailbox(mb.id).await.unwrap();
    assert_eq!(info.uid_next.0, ap.uid.0 + 1);
    let admin = connect(&url).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let open: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{open} transactions left open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn errors_map_to_the_store_vocabulary(url: String) {
    assert!(matches!(
        PgStore::connect("postgres://casella@127.0.0.1:1/none").await,
        Err(StoreError::Temporary(_))
    ));
    assert!(matches!(
        PgStore::connect("postgres://[not a url").await,
        Err(StoreError::Invalid(_))
    ));
    let store = node(&url, "a").await;
    let acct = account(&store, "err@example.org").await;
    let mb = inbox(&store, acct.id).await;
    assert!(matches!(
        store.mailbox(casella_store::MailboxId(987_654)).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .append(casella_store::MailboxId(987_654), message("m"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .read_blob(&casella_store::BlobId("../etc".into()))
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store
            .add_alias(casella_store::AccountId(987_654), "z@example.org")
            .await,
        Err(StoreError::NotFound(_))
    ));
    // A NUL in text is refused by PostgreSQL: bad input, not a broken store.
    assert!(matches!(
        store.add_alias(acct.id, "nul\0@example.org").await,
        Err(StoreError::Invalid(_))
    ));
    // The connection survives the failed transaction.
    store.append(mb.id, message("fine")).await.unwrap();
}

async fn import_keeps_uids_and_modseqs(url: String) {
    use casella_store::{ImportMailbox, ImportMessage, ImportStore};
    use casella_store::{ModSeq, UidValidity};
    let store = node(&url, "a").await;
    let acct = account(&store, "moved@example.org").await;
    let spec = |name: &str| ImportMailbox {
        name: name.into(),
        special_use: None,
        uid_validity: UidValidity(12345),
        uid_next: Uid(100),
        highest_modseq: ModSeq(500),
    };
    // The default INBOX is still empty: it takes the source's counters.
    let mb = store.import_mailbox(acct.id, spec("inbox")).await.unwrap();
    assert_eq!(mb.name, "INBOX");
    assert_eq!(mb.uid_validity, UidValidity(12345));
    let flagged: FlagSet = [Flag::Flagged].into_iter().collect();
    let imported = |uid: u32, modseq: u64| ImportMessage {
        uid: Uid(uid),
        modseq: ModSeq(modseq),
        internal_date: 1_600_000_000,
        flags: flagged.clone(),
        raw: message(&format!("old {uid}")).raw,
    };
    store
        .import_messages(mb.id, vec![imported(5, 300), imported(7, 450)])
        .await
        .unwrap();
    store
        .import_expunged(mb.id, &[(Uid(6), ModSeq(400))])
        .await
        .unwrap();
    let info = store.mailbox(mb.id).await.unwrap();
    assert_eq!(
        (info.uid_next, info.highest_modseq),
        (Uid(100), ModSeq(500))
    );
    let list = store.list_messages(mb.id).await.unwrap();
    assert_eq!(
        list.iter()
            .map(|m| (m.uid, m.modseq, m.internal_date))
            .collect::<Vec<_>>(),
        vec![
            (Uid(5), ModSeq(300), 1_600_000_000),
            (Uid(7), ModSeq(450), 1_600_000_000)
        ]
    );
    assert_eq!(list[0].flags, flagged);
    assert_eq!(
        store.expunged_since(mb.id, ModSeq(350)).await.unwrap(),
        vec![Uid(6)]
    );
    assert!(matches!(
        store.import_messages(mb.id, vec![imported(7, 460)]).await,
        Err(StoreError::Exists(_))
    ));
    assert!(matches!(
        store.import_mailbox(acct.id, spec("INBOX")).await,
        Err(StoreError::Exists(_))
    ));
    // New mail continues after the imported counters.
    let ap = store.append(mb.id, message("new")).await.unwrap();
    assert_eq!((ap.uid, ap.modseq), (Uid(100), ModSeq(501)));
    let other = store
        .import_mailbox(acct.id, spec("Old/2019"))
        .await
        .unwrap();
    assert_eq!(other.uid_validity, UidValidity(12345));
    let fresh = store.create_mailbox(acct.id, "Fresh", None).await.unwrap();
    assert!(fresh.uid_validity > UidValidity(12345));
}
