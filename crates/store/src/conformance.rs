//! The conformance suite every backend must pass: [`RULES`], one check per
//! rule of the store's API. `tests/conformance.rs` runs each rule as a test of
//! its own against every backend (the embedded store with and without its text
//! index; PostgreSQL). Compiled only for tests and with the `conformance`
//! feature, so it is not in the release binary.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::{
    Change, DEFAULT_MAILBOXES, Flag, FlagOp, FlagSet, MailStore, MessageRef, ModSeq, NewAccount,
    NewMessage, RecoverFilter, RetentionRun, SpecialUse, Store, StoreError, Uid,
};

/// A rule: a check run against a fresh store; it panics naming what broke.
pub type Rule = fn(Arc<dyn Store>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! rules {
    ($($name:ident),* $(,)?) => {
        /// Every rule with its name. Each uses its own accounts, so they do not
        /// depend on one another and may share a store.
        pub const RULES: &[(&str, Rule)] = &[$((
            stringify!($name),
            |store: Arc<dyn Store>| -> Pin<Box<dyn Future<Output = ()> + Send>> {
                Box::pin(async move { $name(store).await })
            },
        )),*];
    };
}

rules!(
    accounts,
    default_mailboxes,
    append_assigns_ascending_uids_and_modseqs,
    bytes_round_trip_and_line_ends,
    parsed_metadata_is_stored,
    flags,
    expunge_is_atomic_and_remembered,
    identical_messages_share_a_blob,
    copy_keeps_flags_and_dates,
    mailbox_lifecycle,
    default_folders_are_kept,
    maildrop_lock_is_exclusive,
    change_feed_reports_committed_changes,
    concurrent_appends_get_distinct_uids,
    batches_changes_recent_and_move,
    aliases_resolve_and_make_domains_local,
    queue_claims_updates_and_removes,
    login_history_keeps_the_newest,
    login_blocks_are_shared_and_lifted,
    signouts_are_numbered_and_listed_by_time,
    text_candidates_cover_every_match,
    delivery_to_several_accounts_is_all_or_nothing,
    local_copies_and_the_queue_entry_commit_together,
    conditional_store_leaves_changed_messages_alone,
    subscriptions_are_a_list_of_names,
    expunged_messages_are_recoverable_and_restored,
    a_deleted_mailbox_is_recoverable,
    savedate_finds_old_messages_and_purge_frees_bytes,
    usage_follows_every_change,
);

/// RFC 9051 §6.3.7: subscriptions are names, not marks on mailboxes. CREATE
/// does not subscribe; a name without a mailbox may be subscribed; DELETE
/// leaves the name subscribed; RENAME carries it to the new name; deleting
/// the account removes its list.
async fn subscriptions_are_a_list_of_names(store: Arc<dyn Store>) {
    let store = &*store;
    let a = new_account(store, "subscriber@example.org").await;
    let other = new_account(store, "subscriber2@example.org").await;
    let defaults = store.subscriptions(a.id).await.unwrap();
    let with = |extra: &[&str]| {
        let mut v = defaults.clone();
        v.extend(extra.iter().map(|s| s.to_string()));
        v.sort();
        v
    };
    let lists = store.create_mailbox(a.id, "Lists", None).await.unwrap();
    assert_eq!(store.subscriptions(a.id).await.unwrap(), defaults);
    store.set_subscribed(a.id, "Lists", true).await.unwrap();
    store.set_subscribed(a.id, "Lists", true).await.unwrap();
    store
        .set_subscribed(a.id, "Nowhere/yet", true)
        .await
        .unwrap();
    assert_eq!(
        store.subscriptions(a.id).await.unwrap(),
        with(&["Lists", "Nowhere/yet"])
    );
    // Another account's list is its own.
    assert!(
        !store
            .subscriptions(other.id)
            .await
            .unwrap()
            .contains(&"Lists".to_string())
    );
    store.rename_mailbox(lists.id, "Groups").await.unwrap();
    assert_eq!(
        store.subscriptions(a.id).await.unwrap(),
        with(&["Groups", "Nowhere/yet"])
    );
    let groups = store
        .mailbox_by_name(a.id, "Groups")
        .await
        .unwrap()
        .unwrap();
    store.delete_mailbox(groups.id).await.unwrap();
    assert_eq!(
        store.subscriptions(a.id).await.unwrap(),
        with(&["Groups", "Nowhere/yet"])
    );
    store.set_subscribed(a.id, "Groups", false).await.unwrap();
    store.set_subscribed(a.id, "Groups", false).await.unwrap();
    // INBOX in any case is INBOX.
    store.set_subscribed(a.id, "inbox", false).await.unwrap();
    let mut left = with(&["Nowhere/yet"]);
    left.retain(|n| n != "INBOX");
    assert_eq!(store.subscriptions(a.id).await.unwrap(), left);
    assert!(matches!(
        store.set_subscribed(a.id, "", true).await,
        Err(StoreError::Invalid(_))
    ));
    store.delete_account(a.id).await.unwrap();
    assert!(store.subscriptions(a.id).await.unwrap().is_empty());
}

/// A store's text index may answer or not; when it answers, the messages it
/// says match are exactly the indexed ones containing the text, and every
/// message containing it is among them or among those it has not indexed yet.
/// A text index's answer as the UIDs of `mailbox`: (matched, unindexed),
/// ascending.
pub async fn candidate_uids(
    store: &dyn Store,
    mailbox: crate::MailboxId,
    found: &crate::TextCandidates,
) -> (Vec<u32>, Vec<u32>) {
    let messages = store.list_messages(mailbox).await.unwrap();
    let uids = |blobs: &[crate::BlobId]| -> Vec<u32> {
        messages
            .iter()
            .filter(|m| blobs.contains(&m.blob))
            .map(|m| m.uid.0)
            .collect()
    };
    (uids(&found.matched), uids(&found.unindexed))
}

async fn text_candidates_cover_every_match(store: Arc<dyn Store>) {
    let store = &*store;
    use crate::{NewMessage, TextField};
    let a = new_account(store, "fts@example.org").await;
    let inbox = inbox(store, a.id).await;
    let messages: [&[u8]; 3] = [
        b"From: Quick Sender <quick@example.org>\r\nSubject: Weekly Report\r\n\r\nThe QUICK brown fox\r\n",
        b"From: other@example.org\r\nSubject: lunch\r\nContent-Type: text/html\r\n\r\n<p>brown <b>bread</b></p>\r\n",
        b"From: third@example.org\r\nSubject: =?utf-8?q?caf=C3=A9_report?=\r\n\r\nnothing here\r\n",
    ];
    for raw in messages {
        store
            .append(
                inbox.id,
                NewMessage {
                    raw: raw.to_vec(),
                    internal_date: None,
                    flags: Default::default(),
                    binary: false,
                },
            )
            .await
            .unwrap();
    }
    let cases: [(TextField, &str, &[u32]); 7] = [
        (TextField::Body, "quick brown", &[1]),
        (TextField::Body, "bread", &[2]),
        (TextField::Text, "weekly", &[1]),
        (TextField::From, "QUICK@example", &[1]),
        (TextField::Subject, "report", &[1, 3]),
        (TextField::Text, "here", &[3]),
        (TextField::Body, "zzz-nowhere", &[]),
    ];
    for (field, needle, expected) in cases {
        if let Some(found) = store
            .text_candidates(inbox.id, field, needle)
            .await
            .unwrap()
        {
            let (matched, unindexed) = candidate_uids(store, inbox.id, &found).await;
            let matched: Vec<u32> = matched
                .into_iter()
                .filter(|u| !unindexed.contains(u))
                .collect();
            let expected_indexed: Vec<u32> = expected
                .iter()
                .copied()
                .filter(|u| !unindexed.contains(u))
                .collect();
            assert_eq!(matched, expected_indexed, "{field:?} {needle}");
        }
    }
    // Too short, or not ASCII: no answer (the caller reads every message).
    assert_eq!(
        store
            .text_candidates(inbox.id, TextField::Body, "ab")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .text_candidates(inbox.id, TextField::Subject, "café")
            .await
            .unwrap(),
        None
    );
}

async fn login_blocks_are_shared_and_lifted(store: Arc<dyn Store>) {
    let store = &*store;
    let block = |key: &str, until: i64| crate::StoredBlock {
        key: key.into(),
        until,
        reason: "test".into(),
    };
    store
        .save_block(block("source 192.0.2.1", 2_000))
        .await
        .unwrap();
    store
        .save_block(block("account a@example.org", 1_500))
        .await
        .unwrap();
    store
        .save_block(block("source 192.0.2.1", 1_800))
        .await
        .unwrap();
    let now = store.blocks(1_000).await.unwrap();
    assert_eq!(now.len(), 2);
    assert_eq!(now[1].key, "source 192.0.2.1");
    assert_eq!(now[1].until, 2_000, "a block is only ever extended");
    assert_eq!(
        store.blocks(1_600).await.unwrap().len(),
        1,
        "ended blocks are not listed"
    );
    assert!(store.delete_block("source 192.0.2.1").await.unwrap());
    assert!(!store.delete_block("source 192.0.2.1").await.unwrap());
    assert!(
        store
            .blocks(1_000)
            .await
            .unwrap()
            .iter()
            .all(|b| b.key != "source 192.0.2.1")
    );
    store.delete_block("account a@example.org").await.unwrap();
}

async fn signouts_are_numbered_and_listed_by_time(store: Arc<dyn Store>) {
    let store = &*store;
    let base = 1_900_000_000;
    let a = store.record_signout("Out@Example.org", base).await.unwrap();
    let b = store
        .record_signout("out2@example.org", base + 5)
        .await
        .unwrap();
    assert!(b > a, "sequence numbers increase");
    let all = store.signouts_since(base).await.unwrap();
    let mine: Vec<_> = all.iter().filter(|s| s.seq >= a).collect();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[0].address, "out@example.org", "stored lower-case");
    assert_eq!(mine[0].at, base);
    assert_eq!(mine[1].seq, b);
    let later = store.signouts_since(base + 1).await.unwrap();
    assert!(later.iter().all(|s| s.seq != a) && later.iter().any(|s| s.seq == b));
    // A day later the old records are dropped, and numbers are not reused.
    let c = store
        .record_signout("out3@example.org", base + crate::SIGNOUT_KEPT_SECS + 10)
        .await
        .unwrap();
    assert!(c > b);
    let left = store.signouts_since(0).await.unwrap();
    assert!(left.iter().all(|s| s.seq != a && s.seq != b), "{left:?}");
    assert!(left.iter().any(|s| s.seq == c));
}

async fn login_history_keeps_the_newest(store: Arc<dyn Store>) {
    let store = &*store;
    let a = new_account(store, "history@example.org").await;
    let b = new_account(store, "other-history@example.org").await;
    let mut batch = Vec::new();
    for i in 0..(crate::LOGIN_HISTORY as i64 + 5) {
        let record = crate::LoginRecord {
            at: 1_700_000_000 + i,
            protocol: "IMAP".into(),
            remote: "192.0.2.1".into(),
            success: i % 2 == 0,
            client: (i == 54).then(|| "Thunderbird 128".to_string()),
        };
        // Some one at a time, the rest in one batch with another account's.
        batch.push((a.id, record));
        if i < 10 {
            store
                .record_logins(std::mem::take(&mut batch))
                .await
                .unwrap();
        }
    }
    batch.push((
        b.id,
        crate::LoginRecord {
            at: 1,
            protocol: "POP3".into(),
            remote: "2001:db8::1".into(),
            success: false,
            client: None,
        },
    ));
    store.record_logins(batch).await.unwrap();
    let list = store.recent_logins(a.id).await.unwrap();
    assert_eq!(list.len(), crate::LOGIN_HISTORY);
    assert_eq!(list[0].at, 1_700_000_054, "newest first");
    assert_eq!(list[0].client.as_deref(), Some("Thunderbird 128"));
    assert_eq!(list.last().unwrap().at, 1_700_000_005);
    let other = store.recent_logins(b.id).await.unwrap();
    assert_eq!(other.len(), 1);
    assert!(!other[0].success);
    store.delete_account(b.id).await.unwrap();
    assert!(store.recent_logins(b.id).await.unwrap().is_empty());
}

async fn aliases_resolve_and_make_domains_local(store: Arc<dyn Store>) {
    let store = &*store;
    let a = new_account(store, "owner@example.org").await;
    store.add_alias(a.id, "Sales@Shop.example").await.unwrap();
    assert!(store.is_local_domain("shop.example").await.unwrap());
    let found = store
        .account_for_address("sales@shop.example")
        .await
        .unwrap();
    assert_eq!(found.map(|f| f.id), Some(a.id));
    let direct = store
        .account_for_address("OWNER@example.org")
        .await
        .unwrap();
    assert_eq!(direct.map(|f| f.id), Some(a.id));
    assert_eq!(
        store.aliases(a.id).await.unwrap(),
        vec!["sales@shop.example".to_string()]
    );
    assert!(matches!(
        store.add_alias(a.id, "sales@shop.example").await,
        Err(StoreError::Exists(_))
    ));
    assert!(matches!(
        store.add_alias(a.id, "owner@example.org").await,
        Err(StoreError::Exists(_))
    ));
    let clash = store
        .create_account(NewAccount {
            address: "sales@shop.example".into(),
            password_hash: "x".into(),
            is_admin: false,
        })
        .await;
    assert!(
        matches!(clash, Err(StoreError::Exists(_))),
        "an alias is taken: {clash:?}"
    );
    store.remove_alias("sales@shop.example").await.unwrap();
    assert!(
        store
            .account_for_address("sales@shop.example")
            .await
            .unwrap()
            .is_none()
    );
    assert!(!store.is_local_domain("shop.example").await.unwrap());
    assert!(matches!(
        store.remove_alias("sales@shop.example").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn queue_claims_updates_and_removes(store: Arc<dyn Store>) {
    let store = &*store;
    use crate::{NewQueued, QueuedRecipient, RecipientState};
    let a = new_account(store, "sender@example.org").await;
    let rcpt = |addr: &str| QueuedRecipient {
        address: addr.into(),
        orcpt: None,
        notify: Some("FAILURE".into()),
        state: RecipientState::Pending,
        last_reply: None,
    };
    let now = crate::now_unix();
    let id = store
        .enqueue(NewQueued {
            sender: "sender@example.org".into(),
            account: Some(a.id),
            recipients: vec![rcpt("x@remote.example"), rcpt("y@remote.example")],
            message: b"Subject: q\r\n\r\nbody\r\n".to_vec(),
            envid: Some("env1".into()),
            ret: Some("HDRS".into()),
            expires: now + 3600,
        })
        .await
        .unwrap();
    assert_eq!(
        store.queue_message(id).await.unwrap(),
        b"Subject: q\r\n\r\nbody\r\n"
    );
    let claimed = store.queue_claim(now + 1, 600, 10).await.unwrap();
    let mine: Vec<_> = claimed.into_iter().filter(|q| q.id == id).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].recipients.len(), 2);
    assert_eq!(mine[0].envid.as_deref(), Some("env1"));
    assert!(
        !store
            .queue_claim(now + 1, 600, 10)
            .await
            .unwrap()
            .iter()
            .any(|q| q.id == id),
        "a claimed entry is not handed out twice"
    );
    store.queue_release_claims().await.unwrap();
    assert!(
        store
            .queue_claim(now + 1, 600, 10)
            .await
            .unwrap()
            .iter()
            .any(|q| q.id == id),
        "released claims are due again"
    );
    let mut entry = mine[0].clone();
    entry.recipients[0].state = RecipientState::Delivered;
    entry.attempts = 1;
    entry.next_attempt = now + 60;
    entry.last_error = Some("451 try later".into());
    store.queue_update(&entry).await.unwrap();
    let listed: Vec<_> = store
        .queue_list()
        .await
        .unwrap()
        .into_iter()
        .filter(|q| q.id == id)
        .collect();
    assert_eq!(listed[0].recipients[0].state, RecipientState::Delivered);
    assert_eq!(listed[0].attempts, 1);
    assert_eq!(listed[0].size, 20);
    assert!(
        store
            .queue_claim(now + 61, 600, 10)
            .await
            .unwrap()
            .iter()
            .any(|q| q.id == id)
    );
    store.queue_remove(id).await.unwrap();
    assert!(store.queue_message(id).await.is_err());
    queue_retry_leaves_claims_and_ids_stay_unique(store, a.id).await;
}

/// `queue retry` touches only what no runner holds, and queue ids are never
/// given twice, even once the queue is empty (issue 23, findings 1 and 6).
async fn queue_retry_leaves_claims_and_ids_stay_unique(store: &dyn Store, a: crate::AccountId) {
    use crate::{NewQueued, QueueRetried, QueuedRecipient, RecipientState};
    let now = crate::now_unix();
    // Later than any enqueue below (each is due when it is made).
    let t = now + 2;
    let new = |to: &str| NewQueued {
        sender: "sender@example.org".into(),
        account: Some(a),
        recipients: vec![QueuedRecipient {
            address: to.into(),
            orcpt: None,
            notify: None,
            state: RecipientState::Pending,
            last_reply: None,
        }],
        message: b"Subject: r\r\n\r\nbody\r\n".to_vec(),
        envid: None,
        ret: None,
        expires: now + 3600,
    };
    // Every entry of earlier checks is gone: these two are the whole queue.
    let busy = store.enqueue(new("busy@remote.example")).await.unwrap();
    let claimed = store.queue_claim(t, 600, 10).await.unwrap();
    assert!(claimed.iter().any(|q| q.id == busy));
    assert!(claimed.iter().all(|q| q.claimed_until == Some(t + 600)));
    let idle = store.enqueue(new("idle@remote.example")).await.unwrap();
    assert!(idle > busy, "ids ascend: {idle:?} after {busy:?}");
    // The idle one waits an hour, as after a failed attempt.
    let mut entry = store
        .queue_list()
        .await
        .unwrap()
        .into_iter()
        .find(|q| q.id == idle)
        .unwrap();
    assert_eq!(entry.claimed_until, None);
    entry.next_attempt = t + 3600;
    entry.attempts = 1;
    store.queue_update(&entry).await.unwrap();

    // A retry of the claimed entry leaves it exactly as it was, claim and all.
    let before = store.queue_list().await.unwrap();
    assert_eq!(
        store.queue_retry(Some(busy), t).await.unwrap(),
        QueueRetried {
            due: 0,
            in_delivery: 1
        }
    );
    assert_eq!(store.queue_list().await.unwrap(), before);
    assert!(
        store.queue_claim(t, 600, 10).await.unwrap().is_empty(),
        "the claim holds after a retry; the idle entry is not due yet"
    );
    // A retry of everything makes the idle one due and still skips the busy one.
    assert_eq!(
        store.queue_retry(None, t).await.unwrap(),
        QueueRetried {
            due: 1,
            in_delivery: 1
        }
    );
    assert_eq!(store.queue_next_attempt().await.unwrap(), Some(t));
    let again = store.queue_claim(t, 600, 10).await.unwrap();
    assert_eq!(
        again.iter().map(|q| q.id).collect::<Vec<_>>(),
        vec![idle],
        "only the retried entry is handed out"
    );
    assert_eq!(
        again[0].attempts, 1,
        "a retry changes only the next attempt"
    );
    // The runner's attempt ends normally: nothing was rewritten under it.
    store.queue_remove(busy).await.unwrap();
    store.queue_remove(idle).await.unwrap();
    assert!(matches!(
        store.queue_retry(Some(idle), t).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.queue_retry(None, t).await.unwrap(),
        QueueRetried::default()
    );
    assert_eq!(store.queue_next_attempt().await.unwrap(), None);
    // The queue is empty now: the next id is still a new one.
    let next = store.enqueue(new("later@remote.example")).await.unwrap();
    assert!(next > idle, "id {next:?} given again (last was {idle:?})");
    store.queue_remove(next).await.unwrap();
}

async fn batches_changes_recent_and_move(store: Arc<dyn Store>) {
    let store = &*store;
    let a = new_account(store, "batch@example.org").await;
    let mb = inbox(store, a.id).await;
    let start = store.mailbox(mb.id).await.unwrap().highest_modseq;
    let batch = store
        .append_batch(mb.id, vec![message("b1"), message("b2"), message("b3")])
        .await
        .unwrap();
    assert_eq!(
        batch.iter().map(|b| b.uid.0).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(store.append_batch(mb.id, vec![]).await.unwrap().is_empty());

    // changed_since sees new messages and flag changes, nothing older.
    let changed = store.changed_since(mb.id, start).await.unwrap();
    assert_eq!(changed.len(), 3);
    let mid = store.mailbox(mb.id).await.unwrap().highest_modseq;
    assert!(store.changed_since(mb.id, mid).await.unwrap().is_empty());
    let seen: FlagSet = [Flag::Seen].into_iter().collect();
    store
        .store_flags(mb.id, &[Uid(2)], FlagOp::Add, &seen)
        .await
        .unwrap();
    let changed = store.changed_since(mb.id, mid).await.unwrap();
    assert_eq!(
        changed.iter().map(|m| m.uid).collect::<Vec<_>>(),
        vec![Uid(2)]
    );
    assert_eq!(changed[0].flags, seen);

    // \Recent is handed out once.
    assert_eq!(store.claim_recent(mb.id, Uid(3)).await.unwrap(), Uid(0));
    assert_eq!(store.claim_recent(mb.id, Uid(3)).await.unwrap(), Uid(3));
    assert_eq!(
        store.claim_recent(mb.id, Uid(2)).await.unwrap(),
        Uid(3),
        "never lowered"
    );

    // MOVE: copied and expunged in one step; the expunge is remembered.
    let archive = store
        .mailbox_by_name(a.id, "Archive")
        .await
        .unwrap()
        .unwrap();
    let before = store.mailbox(mb.id).await.unwrap().highest_modseq;
    let pairs = store
        .move_messages(mb.id, &[Uid(1), Uid(3), Uid(99)], archive.id)
        .await
        .unwrap();
    assert_eq!(pairs, vec![(Uid(1), Uid(1)), (Uid(3), Uid(2))]);
    let left: Vec<_> = store
        .list_messages(mb.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(left, vec![Uid(2)]);
    assert_eq!(store.list_messages(archive.id).await.unwrap().len(), 2);
    assert_eq!(
        store.expunged_since(mb.id, before).await.unwrap(),
        vec![Uid(1), Uid(3)]
    );
    assert!(store.move_messages(mb.id, &[Uid(2)], mb.id).await.is_err());
}

async fn new_account(store: &dyn Store, address: &str) -> crate::Account {
    store
        .create_account(NewAccount {
            address: address.to_string(),
            password_hash: "$argon2id$test".to_string(),
            is_admin: false,
        })
        .await
        .expect("create_account")
}

fn message(subject: &str) -> NewMessage {
    NewMessage {
        raw: format!("From: a@example.org\r\nSubject: {subject}\r\n\r\nHello {subject}\r\n")
            .into_bytes(),
        internal_date: Some(1_700_000_000),
        flags: FlagSet::new(),
        binary: false,
    }
}

async fn inbox(store: &dyn Store, account: crate::AccountId) -> crate::Mailbox {
    store
        .mailbox_by_name(account, "INBOX")
        .await
        .expect("mailbox_by_name")
        .expect("INBOX exists")
}

async fn accounts(store: Arc<dyn Store>) {
    let store = &*store;
    let a = new_account(store, "Alice@Example.ORG").await;
    assert_eq!(
        a.address, "alice@example.org",
        "addresses are stored lower-case"
    );
    assert!(a.pop_enabled && a.imap_enabled && a.submission_enabled);
    let dup = store
        .create_account(NewAccount {
            address: "alice@example.org".into(),
            password_hash: "x".into(),
            is_admin: false,
        })
        .await;
    assert!(
        matches!(dup, Err(StoreError::Exists(_))),
        "duplicate account: {dup:?}"
    );
    let found = store.account_by_address("ALICE@example.org").await.unwrap();
    assert_eq!(
        found.as_ref().map(|f| f.id),
        Some(a.id),
        "lookup is case-insensitive"
    );
    assert!(store.is_local_domain("example.org").await.unwrap());
    assert!(store.is_local_domain("EXAMPLE.org").await.unwrap());
    assert!(!store.is_local_domain("elsewhere.test").await.unwrap());

    let mut changed = a.clone();
    changed.password_hash = "$argon2id$new".into();
    changed.pop_enabled = false;
    changed.settings.pop.mark_read = true;
    changed.settings.pop.folders.push("Junk Email".into());
    store.update_account(&changed).await.unwrap();
    let mut saved = changed.clone();
    saved.settings.revision += 1;
    assert_eq!(
        store.account(a.id).await.unwrap(),
        saved,
        "update_account persists"
    );
    // A stale copy (read before that update) cannot write over it: the
    // password, a disable, a session generation would come back.
    let mut stale = changed.clone();
    stale.password_hash = "$argon2id$stale".into();
    assert!(matches!(
        store.update_account(&stale).await,
        Err(StoreError::Temporary(_))
    ));
    assert_eq!(store.account(a.id).await.unwrap(), saved, "nothing written");

    let b = new_account(store, "bob@other.test").await;
    let listed: Vec<_> = store
        .list_accounts()
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.id)
        .collect();
    assert!(listed.contains(&a.id) && listed.contains(&b.id));
    store.deliver(b.id, message("bye").raw).await.unwrap();
    store.delete_account(b.id).await.unwrap();
    assert!(
        store
            .account_by_address("bob@other.test")
            .await
            .unwrap()
            .is_none()
    );
    assert!(!store.is_local_domain("other.test").await.unwrap());
    assert!(matches!(
        store.account(b.id).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn default_mailboxes(store: Arc<dyn Store>) {
    let store = &*store;
    let a = new_account(store, "folders@example.org").await;
    let boxes = store.list_mailboxes(a.id).await.unwrap();
    for (name, role) in DEFAULT_MAILBOXES {
        let mb = boxes
            .iter()
            .find(|m| m.name == *name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(mb.special_use, *role, "{name} role");
        assert_eq!(mb.uid_next, Uid(1));
    }
    // The default folders start subscribed.
    let names: Vec<&str> = DEFAULT_MAILBOXES.iter().map(|(n, _)| *n).collect();
    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    expected.sort();
    assert_eq!(store.subscriptions(a.id).await.unwrap(), expected);
    let validities: HashSet<_> = boxes.iter().map(|m| m.uid_validity).collect();
    assert_eq!(
        validities.len(),
        boxes.len(),
        "UIDVALIDITY differs between mailboxes"
    );
    assert_eq!(inbox(store, a.id).await.name, "INBOX");
    assert!(
        store
            .mailbox_by_name(a.id, "iNbOx")
            .await
            .unwrap()
            .is_some()
    );
    let trash = boxes
        .iter()
        .find(|m| m.special_use == Some(SpecialUse::Trash))
        .unwrap();
    assert_eq!(trash.name, "Deleted Items");
}

async fn append_assigns_ascending_uids_and_modseqs(store: Arc<dyn Store>) {
    let store = &*store;
    let a = new_account(store, "uids@example.org").await;
    let mb = inbox(store, a.id).await;
    let mut last_uid = 0;
    let mut last_modseq = mb.highest_modseq;
    for i in 0..5 {
        let ap = store
            .append(mb.id, message(&format!("m{i}")))
            .await
            .unwrap();
        assert!(ap.uid.0 > last_uid, "UIDs ascend");
        assert!(ap.modseq > last_modseq, "MODSEQ ascends");
        assert_eq!(ap.uid_validity, mb.uid_validity);
        last_uid = ap.uid.0;
        last_modseq = ap.modseq;
    }
    let after = store.mailbox(mb.id).await.unwrap();
    assert_eq!(after.uid_next, Uid(last_uid + 1));
    assert_eq!(after.highest_modseq, last_modseq);
    let list = store.list_messages(mb.id).await.unwrap();
    assert_eq!(
        list.iter().map(|m| m.uid.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert!(list.iter().all(|m| m.internal_date == 1_700_000_000));

    // Expunging the highest UID never lets it be handed out again.
    store
        .expunge(
            a.id,
            &[MessageRef {
                mailbox: mb.id,
                uid: Uid(5),
            }],
        )
        .await
        .unwrap();
    let ap = store.append(mb.id, message("after")).await.unwrap();
    assert_eq!(ap.uid, Uid(6), "UIDs are not reused");
}

async fn bytes_round_trip_and_line_ends(store: Arc<dyn Store>) {
    let store = &*store;
    let a = new_account(store, "bytes@example.org").await;
    let mb = inbox(store, a.id).await;
    let exact =
        b"Subject: exact\r\n\r\n.leading dot\r\n\xff\xfe 8-bit\r\nno final newline".to_vec();
    let ap = store
        .append(
            mb.id,
            NewMessage {
                raw: exact.clone(),
                internal_date: None,
                flags: FlagSet::new(),
                binary: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(ap.size as usize, exact.len());
    let lf = b"Subject: lf\n\nline\n".to_vec();
    store
        .append(
            mb.id,
            NewMessage {
                raw: lf,
                internal_date: None,
                flags: FlagSet::new(),
                binary: false,
            },
        )
        .await
        .unwrap();
    let list = store.list_messages(mb.id).await.unwrap();
    assert_eq!(
        store.read_blob(&list[0].blob).await.unwrap(),
        exact,
        "bytes kept exactly"
    );
    assert_eq!(list[0].size as usize, exact.len());
    assert_eq!(
        store.read_blob(&list[1].blob).await.unwrap(),
        b"Subject: lf\r\n\r\nline\r\n",
        "bare LF stored as CRLF"
    );
    assert_eq!(list[1].size, 21);
    let now = crate::now_unix();
    assert!(
        (list[1].internal_date - now).abs() < 300,
        "INTERNALDATE defaults to now"
    );
}

async fn parsed_metadata_is_stored(store: Arc<dyn Store>) {
    let store = &*store;
    let a = new_account(store, "parsed@example.org").await;
    let mb = inbox(store, a.id).await;
    let raw = b"From: Ann <ann@example.org>\r\nTo: b@example.org\r\nSubject: Parsed once\r\n\
Message-ID: <1@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBody text\r\n";
    store
        .append(
            mb.id,
            NewMessage {
                raw: raw.to_vec(),
                internal_date: None,
                flags: FlagSet::new(),
                binary: false,
            },
        )
        .await
        .unwrap();
    let list = store.list_messages(mb.id).await.unwrap();
    let missing = crate::BlobId("0".repeat(64));
    let both = [missing.clone(), list[0].blob.clone(), missing.clone()];
    // Twice: from the database, then from the store's memory.
    for _ in 0..2 {
        let structures = store.structures(&both).await.unwrap();
        assert_eq!(structures.len(), 3);
        assert!(structures[0].is_none() && structures[2].is_none());
        let parsed = structures[1].as_ref().expect("stored structure");
        assert_eq!(parsed.envelope.subject.as_deref(), Some("Parsed once"));
        assert_eq!(
            parsed.envelope.message_id.as_deref(),
            Some("<1@example.org>")
        );
        assert_eq!(parsed.envelope.from[0].mailbox.as_deref(), Some("ann"));
        assert_eq!(parsed.body.media_type, "text");
    }
    for _ in 0..2 {
        let headers = store.read_headers(&both).await.unwrap();
        assert!(headers[0].is_none() && headers[2].is_none());
        let header = headers[1].as_deref().expect("stored header");
        assert!(header.starts_with(b"From: Ann"));
        assert!(header.ends_with(b"charset=utf-8\r\n\r\n"), "{header:?}");
    }
    let whole = store.read_blobs(&both).await.unwrap();
    assert!(whole[0].is_none() && whole[2].is_none());
    assert_eq!(whole[1].as_deref(), Some(&raw[..]));
    // The SORT/THREAD keys (RFC 5256) are stored at delivery.
    for _ in 0..2 {
        let fields = store.sort_fields(&both).await.unwrap();
        assert!(fields[0].is_none() && fields[2].is_none());
        let keys = fields[1]
            .as_ref()
            .and_then(|f| f.sort.clone())
            .expect("stored sort keys");
        assert_eq!(keys.base_subject, "Parsed once");
        assert_eq!(keys.from.mailbox, "ann");
        assert_eq!(keys.from.display, "Ann");
        assert_eq!(keys.to.display, "b@example.org");
        assert_eq!(keys.message_id.as_deref(), Some("1@example.org"));
    }
    for text in [false, true, false] {
        let fields = store.search_fields(&both, text).await.unwrap();
        assert_eq!(fields.len(), 3);
        assert!(fields[0].is_none() && fields[2].is_none());
        let fields = fields[1].as_ref().expect("stored search fields");
        assert_eq!(fields.subject, "Parsed once");
        assert!(fields.from.contains("ann@example.org"), "{fields:?}");
        assert_eq!(fields.body_text.contains("Body text"), text, "{fields:?}");
        assert_eq!(
            fields.header_text.contains("Parsed once"),
            text,
            "{fields:?}"
        );
    }
}

async fn flags(store: Arc<dyn Store>) {
    let store = &*store;
    let a = new_account(store, "flags@example.org").await;
    let mb = inbox(store, a.id).await;
    let mut initial = FlagSet::new();
    initial.insert(Flag::Draft);
    let ap = store
        .append(
            mb.id,
            NewMessage {
                flags: initial,
                ..message("f")
            },
        )
        .await
        .unwrap();
    let seen: FlagSet = [Flag::Seen, Flag::Keyword("$Forwarded".into())]
        .into_iter()
        .collect();
    let up = store
        .store_flags(mb.id, &[ap.uid, Uid(999)], FlagOp::Add, &seen)
        .await
        .unwrap();
    assert_eq!(up.len(), 1, "missing UIDs are skipped");
    assert!(up[0].modseq > ap.modseq);
    assert_eq!(up[0].flags.len(), 3);
    let again = store
        .store_flags(mb.id, &[ap.uid], FlagOp::Add, &seen)
        .await
        .unwrap();
    assert!(again.is_empty(), "no change, no MODSEQ");
    let rm: FlagSet = [Flag::Draft].into_iter().collect();
    let up2 = store
        .store_flags(mb.id, &[ap.uid], FlagOp::Remove, &rm)
        .await
        .unwrap();
    assert!(up2[0].modseq > up[0].modseq);
    let list = store.list_messages(mb.id).await.unwrap();
    assert_eq!(list[0].flags, seen);
    assert_eq!(list[0].modseq, up2[0].modseq);
    let up3 = store
        .store_flags(mb.id, &[ap.uid], FlagOp::Replace, &FlagSet::new())
        .await
        .unwrap();
    assert!(up3[0].flags.is_empty());
}

async fn expunge_is_atomic_and_remembered(store: Arc<dyn Store>) {
    let store = &*store;
    let a = new_account(store, "expunge@example.org").await;
    let mb = inbox(store, a.id).await;
    let junk = store
        .mailbox_by_name(a.id, "Junk Email")
        .await
        .unwrap()
        .unwrap();
    let x = store.append(mb.id, message("x")).await.unwrap();
    let y = store.append(mb.id, message("y")).await.unwrap();
    let z = store.append(junk.id, message("z")).await.unwrap();
    let before = store.mailbox(mb.id).await.unwrap().highest_modseq;
    let removed = store
        .expunge(
            a.id,
            &[
                MessageRef {
                    mailbox: mb.id,
                    uid: x.uid,
                },
                MessageRef {
                    mailbox: junk.id,
                    uid: z.uid,
                },
                MessageRef {
                    mailbox: mb.id,
                    uid: Uid(77),
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(removed.len(), 2);
    let left: Vec<_> = store
        .list_messages(mb.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(left, vec![y.uid]);
    assert!(store.list_messages(junk.id).await.unwrap().is_empty());
    let after = store.mailbox(mb.id).await.unwrap().highest_modseq;
    assert!(after > before, "expunge takes a MODSEQ");
    assert_eq!(
        store.expunged_since(mb.id, after).await.unwrap(),
        Vec::<Uid>::new()
    );
    assert_eq!(
        store.expunged_since(mb.id, before).await.unwrap(),
        vec![x.uid]
    );
    assert_eq!(
        store.expunged_since(mb.id, ModSeq(0)).await.unwrap(),
        vec![x.uid]
    );

    // Another account's mailbox in the list fails the whole call and removes nothing.
    let other = new_account(store, "expunge2@example.org").await;
    let oi = inbox(store, other.id).await;
    let o = store.append(oi.id, message("o")).await.unwrap();
    let err = store
        .expunge(
            a.id,
            &[
                MessageRef {
                    mailbox: mb.id,
                    uid: y.uid,
                },
                MessageRef {
                    mailbox: oi.id,
                    uid: o.uid,
                },
            ],
        )
        .await;
    assert!(err.is_err(), "cross-account expunge refused");
    assert_eq!(
        store.list_messages(mb.id).await.unwrap().len(),
        1,
        "all or nothing"
    );
    assert_eq!(store.list_messages(oi.id).await.unwrap().len(), 1);
}

async fn identical_messages_share_a_blob(store: Arc<dyn Store>) {
    let store = &*store;
    let a = new_account(store, "dedup@example.org").await;
    let b = new_account(store, "dedup2@example.org").await;
    let x = store.deliver(a.id, message("same").raw).await.unwrap();
    store.deliver(b.id, message("same").raw).await.unwrap();
    let la = store
        .list_messages(inbox(store, a.id).await.id)
        .await
        .unwrap();
    let lb = store
        .list_messages(inbox(store, b.id).await.id)
        .await
        .unwrap();
    assert_eq!(la[0].blob, lb[0].blob, "content-addressed");
    store
        .expunge(
            a.id,
            &[MessageRef {
                mailbox: x.mailbox,
                uid: x.uid,
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        store.read_blob(&lb[0].blob).await.unwrap(),
        message("same").raw,
        "a shared blob outlives one of its messages"
    );
}

async fn copy_keeps_flags_and_dates(store: Arc<dyn Store>) {
    let store = &*store;
    let a = new_account(store, "copy@example.org").await;
    let mb = inbox(store, a.id).await;
    let archive = store
        .mailbox_by_name(a.id, "Archive")
        .await
        .unwrap()
        .unwrap();
    let flags: FlagSet = [Flag::Flagged].into_iter().collect();
    let x = store
        .append(
            mb.id,
            NewMessage {
                flags: flags.clone(),
                ..message("c")
            },
        )
        .await
        .unwrap();
    let pairs = store
        .copy(mb.id, &[x.uid, Uid(500)], archive.id)
        .await
        .unwrap();
    assert_eq!(pairs, vec![(x.uid, Uid(1))]);
    let copied = store.list_messages(archive.id).await.unwrap();
    assert_eq!(copied[0].flags, flags);
    assert_eq!(copied[0].internal_date, 1_700_000_000);
    assert_eq!(store.mailbox(archive.id).await.unwrap().uid_next, Uid(2));
}

/// INBOX and the folders every account is made with cannot be deleted or
/// renamed; a folder of the client's own with a special-use role can.
async fn default_folders_are_kept(store: Arc<dyn Store>) {
    let store = &*store;
    let a = new_account(store, "kept@example.org").await;
    for mb in store.list_mailboxes(a.id).await.unwrap() {
        assert!(
            matches!(
                store.delete_mailbox(mb.id).await,
                Err(StoreError::Invalid(_))
            ),
            "DELETE {}",
            mb.name
        );
        if mb.name != "INBOX" {
            assert!(
                matches!(
                    store.rename_mailbox(mb.id, "Elsewhere").await,
                    Err(StoreError::Invalid(_))
                ),
                "RENAME {}",
                mb.name
            );
        }
    }
    assert_eq!(
        store.list_mailboxes(a.id).await.unwrap().len(),
        DEFAULT_MAILBOXES.len()
    );
    let own = store
        .create_mailbox(a.id, "Old Trash", Some(SpecialUse::Trash))
        .await
        .unwrap();
    store.rename_mailbox(own.id, "Older Trash").await.unwrap();
    store.delete_mailbox(own.id).await.unwrap();
}

async fn mailbox_lifecycle(store: Arc<dyn Store>) {
    let store = &*store;
    let a = new_account(store, "boxes@example.org").await;
    let projects = store
        .create_mailbox(a.id, "Projects/2026", None)
        .await
        .unwrap();
    assert!(matches!(
        store.create_mailbox(a.id, "Projects/2026", None).await,
        Err(StoreError::Exists(_))
    ));
    assert!(matches!(
        store.create_mailbox(a.id, "inbox", None).await,
        Err(StoreError::Exists(_))
    ));
    assert!(matches!(
        store.create_mailbox(a.id, "", None).await,
        Err(StoreError::Invalid(_))
    ));
    store.append(projects.id, message("p")).await.unwrap();
    store.rename_mailbox(projects.id, "Old/2026").await.unwrap();
    let renamed = store
        .mailbox_by_name(a.id, "Old/2026")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.id, projects.id);
    assert_eq!(renamed.uid_validity, projects.uid_validity);
    assert_eq!(store.list_messages(renamed.id).await.unwrap().len(), 1);
    store.delete_mailbox(renamed.id).await.unwrap();
    assert!(
        store
            .mailbox_by_name(a.id, "Old/2026")
            .await
            .unwrap()
            .is_none()
    );
    let again = store.create_mailbox(a.id, "Old/2026", None).await.unwrap();
    assert_ne!(
        again.uid_validity, projects.uid_validity,
        "a new mailbox gets a new UIDVALIDITY"
    );
    let inbox = inbox(store, a.id).await;
    assert!(
        store.delete_mailbox(inbox.id).await.is_err(),
        "INBOX cannot be deleted"
    );
}

async fn maildrop_lock_is_exclusive(store: Arc<dyn Store>) {
    let store = &*store;
    let a = new_account(store, "lock@example.org").await;
    let b = new_account(store, "lock2@example.org").await;
    let held = store.lock_maildrop(a.id).await.expect("first lock");
    assert!(matches!(
        store.lock_maildrop(a.id).await,
        Err(StoreError::InUse(_))
    ));
    let other = store
        .lock_maildrop(b.id)
        .await
        .expect("other account unaffected");
    // A held lock says so, and the session's writes through it land.
    held.check().expect("held");
    let mb = inbox(store, a.id).await;
    let ap = store.append(mb.id, message("x")).await.expect("append");
    let seen: FlagSet = [Flag::Seen].into_iter().collect();
    let fenced = held.fenced_store();
    let writer: &dyn MailStore = fenced.as_deref().unwrap_or(store);
    writer
        .store_flags(mb.id, &[ap.uid], FlagOp::Add, &seen)
        .await
        .expect("a write under the held lock");
    drop(held);
    // Queued behind the release on this node: taken again, with a new token.
    let again = store.lock_maildrop(a.id).await.expect("released on drop");
    // A lock that can be lost fences its writes: the released one's are refused.
    if let Some(stale) = fenced {
        assert!(matches!(
            stale
                .store_flags(mb.id, &[ap.uid], FlagOp::Remove, &seen)
                .await,
            Err(StoreError::InUse(_))
        ));
        let gone = [crate::MessageRef {
            mailbox: mb.id,
            uid: ap.uid,
        }];
        assert!(matches!(
            stale.expunge(a.id, &gone).await,
            Err(StoreError::InUse(_))
        ));
        let current = again.fenced_store().expect("a fenced store again");
        current
            .store_flags(mb.id, &[ap.uid], FlagOp::Remove, &seen)
            .await
            .expect("the current holder writes");
    }
    drop(again);
    drop(other);
}

async fn change_feed_reports_committed_changes(store: Arc<dyn Store>) {
    let store = &*store;
    let a = new_account(store, "feed@example.org").await;
    let mb = inbox(store, a.id).await;
    let mut rx = store.subscribe(a.id);
    let ap = store.append(mb.id, message("feed")).await.unwrap();
    let seen: FlagSet = [Flag::Seen].into_iter().collect();
    store
        .store_flags(mb.id, &[ap.uid], FlagOp::Add, &seen)
        .await
        .unwrap();
    store
        .expunge(
            a.id,
            &[MessageRef {
                mailbox: mb.id,
                uid: ap.uid,
            }],
        )
        .await
        .unwrap();
    let wait = std::time::Duration::from_secs(5);
    let c1 = next_specific(&mut rx, wait, "append change").await;
    assert!(
        matches!(c1, Change::Appended { uid, .. } if uid == ap.uid),
        "{c1:?}"
    );
    let c2 = next_specific(&mut rx, wait, "flag change").await;
    assert!(
        matches!(c2, Change::Flags { uid, .. } if uid == ap.uid),
        "{c2:?}"
    );
    let c3 = next_specific(&mut rx, wait, "expunge change").await;
    assert!(
        matches!(c3, Change::Expunged { ref uids, .. } if uids == &vec![ap.uid]),
        "{c3:?}"
    );
}

/// The next change that is not a `MailboxChanged` (which a backend may send at any
/// time when it cannot tell its own commits from others').
async fn next_specific(
    rx: &mut tokio::sync::broadcast::Receiver<Change>,
    wait: std::time::Duration,
    what: &str,
) -> Change {
    loop {
        let c = tokio::time::timeout(wait, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{what}: nothing received"))
            .expect("feed open");
        if !matches!(c, Change::MailboxChanged { .. }) {
            return c;
        }
    }
}

async fn concurrent_appends_get_distinct_uids(store: Arc<dyn Store>) {
    let a = new_account(&*store, "concurrent@example.org").await;
    let mb = inbox(&*store, a.id).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append(mb.id, message(&format!("c{i}")))
                .await
                .unwrap()
        }));
    }
    let mut uids = Vec::new();
    let mut modseqs = HashSet::new();
    for t in tasks {
        let ap = t.await.unwrap();
        uids.push(ap.uid.0);
        assert!(modseqs.insert(ap.modseq), "MODSEQs are unique");
    }
    uids.sort();
    assert_eq!(uids, (1..=20).collect::<Vec<_>>(), "no gaps, no duplicates");
}

/// A submission with local and remote recipients stores the local copies
/// and the queue entry in one transaction: when a local copy cannot be
/// stored, nothing is queued either, and the client's retry stores one copy
/// each and one queue entry.
async fn local_copies_and_the_queue_entry_commit_together(store: Arc<dyn Store>) {
    use crate::{NewQueued, QueuedRecipient, RecipientState};
    let store = &*store;
    let a = new_account(store, "both-a@example.org").await;
    let gone = new_account(store, "both-gone@example.org").await;
    store.delete_account(gone.id).await.unwrap();
    let raw = b"Subject: near and far\r\n\r\nhello\r\n".to_vec();
    let queued = || NewQueued {
        sender: "both-a@example.org".into(),
        account: Some(a.id),
        recipients: vec![QueuedRecipient {
            address: "far@remote.example".into(),
            orcpt: None,
            notify: None,
            state: RecipientState::Pending,
            last_reply: None,
        }],
        message: raw.clone(),
        envid: None,
        ret: None,
        expires: crate::now_unix() + 3600,
    };
    let ours = |list: Vec<crate::Queued>| -> usize {
        list.iter()
            .filter(|q| q.sender == "both-a@example.org")
            .count()
    };
    assert!(
        store
            .deliver_and_queue(&[a.id, gone.id], raw.clone(), Some(queued()))
            .await
            .is_err()
    );
    assert_eq!(ours(store.queue_list().await.unwrap()), 0, "nothing queued");
    let mb = inbox(store, a.id).await;
    assert!(
        store.list_messages(mb.id).await.unwrap().is_empty(),
        "nothing stored"
    );
    let done = store
        .deliver_and_queue(&[a.id], raw.clone(), Some(queued()))
        .await
        .unwrap();
    assert_eq!(done.appended.len(), 1);
    let queue = store.queue_list().await.unwrap();
    assert_eq!(ours(queue.clone()), 1, "one queue entry");
    let id = done.queued.expect("a queue entry");
    assert!(queue.iter().any(|q| q.id == id));
    assert_eq!(store.queue_message(id).await.unwrap(), raw);
    assert_eq!(
        store.list_messages(mb.id).await.unwrap().len(),
        1,
        "one copy"
    );
    // Only remote recipients: the entry alone.
    let only = store
        .deliver_and_queue(&[], raw.clone(), Some(queued()))
        .await
        .unwrap();
    assert!(only.appended.is_empty());
    assert!(only.queued.is_some());
    assert_eq!(ours(store.queue_list().await.unwrap()), 2);
}

/// Local delivery to several accounts is one transaction: when one recipient
/// cannot be stored, none is, so a retry stores exactly one copy each; the
/// copies share one blob; an account named twice gets one copy.
async fn delivery_to_several_accounts_is_all_or_nothing(store: Arc<dyn Store>) {
    let store = &*store;
    let a = new_account(store, "many-a@example.org").await;
    let b = new_account(store, "many-b@example.org").await;
    let gone = new_account(store, "many-gone@example.org").await;
    store.delete_account(gone.id).await.unwrap();
    let raw = b"Subject: to three\r\n\r\nhello\r\n".to_vec();
    assert!(
        store
            .deliver_to_all(&[a.id, b.id, gone.id], raw.clone())
            .await
            .is_err(),
        "the third recipient cannot be stored"
    );
    for account in [a.id, b.id] {
        let mb = inbox(store, account).await;
        assert!(
            store.list_messages(mb.id).await.unwrap().is_empty(),
            "none stored"
        );
        assert_eq!(mb.uid_next, Uid(1), "no UID used");
    }
    let stored = store
        .deliver_to_all(&[a.id, b.id], raw.clone())
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    let mut blobs = HashSet::new();
    for (account, ap) in [a.id, b.id].into_iter().zip(&stored) {
        let mb = inbox(store, account).await;
        assert_eq!(ap.mailbox, mb.id);
        let list = store.list_messages(mb.id).await.unwrap();
        assert_eq!(list.len(), 1, "exactly one copy");
        assert_eq!(list[0].uid, ap.uid);
        assert_eq!(store.read_blob(&list[0].blob).await.unwrap(), raw);
        blobs.insert(list[0].blob.clone());
    }
    assert_eq!(blobs.len(), 1, "the bytes are stored once");
    let twice = store
        .deliver_to_all(&[a.id, a.id], b"Subject: twice\r\n\r\nx\r\n".to_vec())
        .await
        .unwrap();
    assert_eq!(twice.len(), 2);
    assert_eq!(twice[0], twice[1], "one copy for an account named twice");
    assert_eq!(
        store
            .list_messages(inbox(store, a.id).await.id)
            .await
            .unwrap()
            .len(),
        2
    );
}

/// STORE UNCHANGEDSINCE (RFC 7162 §3.1.3): messages changed after the
/// client's MODSEQ are left alone and reported; the others change under one
/// new MODSEQ; UNCHANGEDSINCE 0 changes nothing.
async fn conditional_store_leaves_changed_messages_alone(store: Arc<dyn Store>) {
    let store = &*store;
    let a = new_account(store, "conditional@example.org").await;
    let mb = inbox(store, a.id).await;
    let mut appended = Vec::new();
    for i in 0..3 {
        appended.push(
            store
                .append(mb.id, message(&format!("c{i}")))
                .await
                .unwrap(),
        );
    }
    let known = appended[2].modseq;
    let seen: FlagSet = [Flag::Seen].into_iter().collect();
    let flagged: FlagSet = [Flag::Flagged].into_iter().collect();
    // Another client changes message 2 after `known`.
    let other = store
        .store_flags(mb.id, &[appended[1].uid], FlagOp::Add, &flagged)
        .await
        .unwrap();
    assert!(other[0].modseq > known);
    let uids: Vec<Uid> = appended.iter().map(|ap| ap.uid).collect();
    let r = store
        .store_flags_if(mb.id, &uids, FlagOp::Add, &seen, Some(known))
        .await
        .unwrap();
    assert_eq!(r.modified, vec![appended[1].uid]);
    let changed: Vec<Uid> = r.updates.iter().map(|u| u.uid).collect();
    assert_eq!(changed, vec![appended[0].uid, appended[2].uid]);
    assert!(r.updates.iter().all(|u| u.modseq > other[0].modseq));
    let list = store.list_messages(mb.id).await.unwrap();
    assert!(!list[1].flags.contains(&Flag::Seen), "left alone");
    assert!(list[0].flags.contains(&Flag::Seen) && list[2].flags.contains(&Flag::Seen));
    let none = store
        .store_flags_if(mb.id, &uids, FlagOp::Remove, &seen, Some(ModSeq(0)))
        .await
        .unwrap();
    assert!(none.updates.is_empty());
    assert_eq!(none.modified, uids);
}

const DAY: i64 = 86_400;

/// Expunged messages leave IMAP's and POP3's view but stay recoverable (with
/// their folder, flags and INTERNALDATE), listed per account and filtered by
/// time and folder; a restore puts them back with new UIDs and a new MODSEQ,
/// once.
async fn expunged_messages_are_recoverable_and_restored(store: Arc<dyn Store>) {
    let store = &*store;
    store.time_source().set(1_800_000_000);
    let a = new_account(store, "recover@example.org").await;
    let other = new_account(store, "recover2@example.org").await;
    let projects = store.create_mailbox(a.id, "Projects", None).await.unwrap();
    let mut flagged = message("kept flags");
    flagged.flags = [Flag::Seen, Flag::Keyword("$Work".into())]
        .into_iter()
        .collect();
    let x = store.append(projects.id, flagged).await.unwrap();
    let y = store.append(projects.id, message("stays")).await.unwrap();
    let listed = store.list_messages(projects.id).await.unwrap();
    assert!(
        listed.iter().all(|m| m.save_date == 1_800_000_000),
        "SAVEDATE is when the message was saved"
    );
    store.time_source().advance(DAY);
    let removed = store
        .expunge(
            a.id,
            &[MessageRef {
                mailbox: projects.id,
                uid: x.uid,
            }],
        )
        .await
        .unwrap();
    assert_eq!(removed.len(), 1);
    let left: Vec<Uid> = store
        .list_messages(projects.id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(left, vec![y.uid], "expunged messages are not listed");
    let items = store
        .recoverable(a.id, &RecoverFilter::default())
        .await
        .unwrap();
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item.folder, "Projects");
    assert_eq!(item.deleted_at, 1_800_000_000 + DAY);
    assert_eq!(item.internal_date, 1_700_000_000);
    assert!(item.flags.contains(&Flag::Seen));
    assert!(
        store
            .recoverable(other.id, &RecoverFilter::default())
            .await
            .unwrap()
            .is_empty(),
        "another account sees none of them"
    );
    let later = RecoverFilter {
        since: Some(1_800_000_000 + 2 * DAY),
        folder: None,
    };
    assert!(store.recoverable(a.id, &later).await.unwrap().is_empty());
    let elsewhere = RecoverFilter {
        since: None,
        folder: Some("INBOX".into()),
    };
    assert!(
        store
            .recoverable(a.id, &elsewhere)
            .await
            .unwrap()
            .is_empty()
    );
    // Another account cannot restore it.
    assert!(
        store
            .restore_recoverable(other.id, &[item.id])
            .await
            .unwrap()
            .is_empty()
    );
    let before = store.mailbox(projects.id).await.unwrap();
    let mut feed = store.subscribe(a.id);
    let restored = store
        .restore_recoverable(a.id, &[item.id, item.id])
        .await
        .unwrap();
    assert_eq!(restored.len(), 1, "restored once");
    assert_eq!(restored[0].mailbox, projects.id);
    assert!(restored[0].uid > y.uid, "a new UID, above every other");
    let back = store.list_messages(projects.id).await.unwrap();
    let m = back
        .iter()
        .find(|m| m.uid == restored[0].uid)
        .expect("restored message listed");
    assert_eq!(m.flags, item.flags, "flags kept");
    assert_eq!(m.internal_date, 1_700_000_000, "INTERNALDATE kept");
    assert_eq!(m.blob, item.blob);
    assert!(m.modseq > before.highest_modseq);
    assert!(matches!(
        feed.try_recv(),
        Ok(Change::Appended { uid, .. }) if uid == restored[0].uid
    ));
    assert!(
        store
            .recoverable(a.id, &RecoverFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .restore_recoverable(a.id, &[item.id])
            .await
            .unwrap()
            .is_empty(),
        "a second restore finds nothing"
    );
    // The bytes are still there: the restored message reads back.
    assert!(store.read_blob(&m.blob).await.is_ok());
}

/// A deleted mailbox's messages stay recoverable under its name; restoring
/// makes the mailbox again (a new UIDVALIDITY).
async fn a_deleted_mailbox_is_recoverable(store: Arc<dyn Store>) {
    let store = &*store;
    let a = new_account(store, "recover-box@example.org").await;
    let old = store.create_mailbox(a.id, "Old/Trips", None).await.unwrap();
    store.append(old.id, message("trip 1")).await.unwrap();
    store.append(old.id, message("trip 2")).await.unwrap();
    store.delete_mailbox(old.id).await.unwrap();
    let items = store
        .recoverable(
            a.id,
            &RecoverFilter {
                since: None,
                folder: Some("Old/Trips".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(items.len(), 2);
    let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
    let restored = store.restore_recoverable(a.id, &ids).await.unwrap();
    assert_eq!(restored.len(), 2);
    let again = store
        .mailbox_by_name(a.id, "Old/Trips")
        .await
        .unwrap()
        .expect("the mailbox is made again");
    assert_ne!(
        again.uid_validity, old.uid_validity,
        "a new mailbox: a new UIDVALIDITY"
    );
    assert_eq!(store.list_messages(again.id).await.unwrap().len(), 2);
    // Deleting the account removes its recoverable items with it.
    let b = new_account(store, "recover-gone@example.org").await;
    let binbox = inbox(store, b.id).await;
    let gone = store
        .append(binbox.id, message("unique to b"))
        .await
        .unwrap();
    let blob = store.list_messages(binbox.id).await.unwrap()[0]
        .blob
        .clone();
    store
        .expunge(
            b.id,
            &[MessageRef {
                mailbox: binbox.id,
                uid: gone.uid,
            }],
        )
        .await
        .unwrap();
    store.delete_account(b.id).await.unwrap();
    assert!(
        store
            .recoverable(b.id, &RecoverFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store.read_blob(&blob).await.is_err(),
        "the account's last reference to the bytes is gone"
    );
}

/// Retention finds messages by when they were saved to their mailbox (a
/// MOVE saves them anew); purging recoverable items older than the window
/// frees their bytes, younger ones stay; runs are recorded newest first.
async fn savedate_finds_old_messages_and_purge_frees_bytes(store: Arc<dyn Store>) {
    let store = &*store;
    let t0 = 1_900_000_000;
    store.time_source().set(t0);
    let a = new_account(store, "retention@example.org").await;
    let inbox = inbox(store, a.id).await;
    let trash = store
        .mailbox_by_name(a.id, "Deleted Items")
        .await
        .unwrap()
        .unwrap();
    let old = store.append(inbox.id, message("old")).await.unwrap();
    store.time_source().advance(DAY);
    // Moved on day 1: its SAVEDATE in Deleted Items is day 1.
    let moved = store
        .move_messages(inbox.id, &[old.uid], trash.id)
        .await
        .unwrap();
    store.time_source().advance(25 * DAY);
    let young = store.append(trash.id, message("young")).await.unwrap();
    store.time_source().advance(6 * DAY);
    let now = store.time_source().now();
    let due = store
        .saved_before(trash.id, now - 30 * DAY, 100)
        .await
        .unwrap();
    assert_eq!(due, vec![moved[0].1], "only the one saved 31 days ago");
    assert!(
        store
            .saved_before(trash.id, now - 40 * DAY, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.saved_before(trash.id, now, 1).await.unwrap().len(),
        1,
        "limited"
    );
    let blob = store.list_messages(trash.id).await.unwrap()[0].blob.clone();
    store
        .expunge(
            a.id,
            &[MessageRef {
                mailbox: trash.id,
                uid: due[0],
            }],
        )
        .await
        .unwrap();
    assert!(
        store.read_blob(&blob).await.is_ok(),
        "recoverable: bytes kept"
    );
    store.time_source().advance(13 * DAY);
    let window = |s: &dyn Store| s.time_source().now() - 14 * DAY;
    assert_eq!(
        store.purge_recoverable(window(store), 100).await.unwrap(),
        0
    );
    store.time_source().advance(2 * DAY);
    assert_eq!(
        store.purge_recoverable(window(store), 100).await.unwrap(),
        1
    );
    assert!(
        store.read_blob(&blob).await.is_err(),
        "after the recovery window the bytes are freed"
    );
    let left: Vec<Uid> = store
        .list_messages(trash.id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(left, vec![young.uid]);
    for (i, node) in ["one", "two"].into_iter().enumerate() {
        store
            .record_retention_run(&RetentionRun {
                node: node.into(),
                started: t0 + i as i64,
                finished: t0 + i as i64 + 1,
                expired: 3,
                purged: i as u64,
                error: None,
            })
            .await
            .unwrap();
    }
    let runs = store.retention_runs(1).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].node, "two");
    assert_eq!(runs[0].purged, 1);
}

/// An account's usage is the sum of its messages' sizes and their number,
/// after appends, deliveries, copies, moves, expunges, restores and a
/// deleted mailbox (recoverable items not counted).
async fn usage_follows_every_change(store: Arc<dyn Store>) {
    let store = &*store;
    let a = new_account(store, "usage@example.org").await;
    let inbox = inbox(store, a.id).await;
    let work = store.create_mailbox(a.id, "Work", None).await.unwrap();
    let sum = || async {
        let mut u = crate::Usage::default();
        for mb in store.list_mailboxes(a.id).await.unwrap() {
            for m in store.list_messages(mb.id).await.unwrap() {
                u.bytes += u64::from(m.size);
                u.messages += 1;
            }
        }
        u
    };
    assert_eq!(store.usage(a.id).await.unwrap(), crate::Usage::default());
    let x = store.append(inbox.id, message("usage x")).await.unwrap();
    store
        .append_batch(work.id, vec![message("usage y"), message("usage zz")])
        .await
        .unwrap();
    store.deliver(a.id, message("usage d").raw).await.unwrap();
    assert_eq!(store.usage(a.id).await.unwrap(), sum().await);
    assert_eq!(store.usage(a.id).await.unwrap().messages, 4);
    store.copy(inbox.id, &[x.uid], work.id).await.unwrap();
    store
        .move_messages(inbox.id, &[x.uid], work.id)
        .await
        .unwrap();
    assert_eq!(store.usage(a.id).await.unwrap(), sum().await);
    assert_eq!(store.usage(a.id).await.unwrap().messages, 5);
    let w = store.list_messages(work.id).await.unwrap();
    store
        .expunge(
            a.id,
            &[MessageRef {
                mailbox: work.id,
                uid: w[0].uid,
            }],
        )
        .await
        .unwrap();
    assert_eq!(store.usage(a.id).await.unwrap(), sum().await);
    let items = store
        .recoverable(a.id, &RecoverFilter::default())
        .await
        .unwrap();
    store
        .restore_recoverable(a.id, &[items[0].id])
        .await
        .unwrap();
    assert_eq!(store.usage(a.id).await.unwrap(), sum().await);
    store.delete_mailbox(work.id).await.unwrap();
    let left = store.usage(a.id).await.unwrap();
    assert_eq!(left, sum().await);
    assert_eq!(left.messages, 1, "the delivery in INBOX");
    let other = new_account(store, "usage2@example.org").await;
    assert_eq!(store.usage(other.id).await.unwrap().messages, 0);
}
