//! Graceful shutdown: listeners stop accepting, sessions are told to finish at their
//! next command boundary, and the server waits (bounded) for them to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

/// Owned by the server: triggers shutdown and waits for connections to drain.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    active: Arc<AtomicUsize>,
    drained: Arc<Notify>,
}

/// Held by every listener and session: tells them when to stop — the server
/// shuts down, or (for a session) an administrator ended it.
#[derive(Clone)]
pub struct ShutdownSignal {
    rx: watch::Receiver<bool>,
    ended: Option<watch::Receiver<Option<crate::EndReason>>>,
}

/// Counts one live connection; dropping it lets shutdown finish.
pub struct ConnectionGuard {
    active: Arc<AtomicUsize>,
    drained: Arc<Notify>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.drained.notify_waiters();
        }
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        let (tx, _) = watch::channel(false);
        Shutdown {
            tx: Arc::new(tx),
            active: Arc::new(AtomicUsize::new(0)),
            drained: Arc::new(Notify::new()),
        }
    }

    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            rx: self.tx.subscribe(),
            ended: None,
        }
    }

    /// Registers a live connection.
    pub fn track(&self) -> ConnectionGuard {
        self.active.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard {
            active: self.active.clone(),
            drained: self.drained.clone(),
        }
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Tells everyone to stop, then waits up to `grace` for connections to end.
    /// Returns the number still open when the grace period ran out.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        let _ = self.tx.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let notified = self.drained.notified();
            if self.active() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.active();
            }
        }
    }
}

impl ShutdownSignal {
    /// This signal, also fired when `ended` gets a reason (an administrator
    /// ended the session, or the account was signed out everywhere; see
    /// `LiveSessions`).
    pub fn with_end(mut self, ended: watch::Receiver<Option<crate::EndReason>>) -> ShutdownSignal {
        self.ended = Some(ended);
        self
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.rx.borrow() || self.ended_by_admin()
    }

    /// The session was ended by an administrator (not a server shutdown).
    pub fn ended_by_admin(&self) -> bool {
        self.end_reason().is_some()
    }

    /// Why the session was ended, when it was ended on its own (not by a
    /// server shutdown).
    pub fn end_reason(&self) -> Option<crate::EndReason> {
        self.ended.as_ref().and_then(|e| *e.borrow())
    }

    /// Completes when shutdown starts or the session is ended.
    pub async fn wait(&mut self) {
        match &mut self.ended {
            None => {
                let _ = self.rx.wait_for(|v| *v).await;
            }
            Some(ended) => {
                let rx = &mut self.rx;
                let end = async {
                    // A closed sender never fires: then only shutdown can.
                    if ended.wait_for(|v| v.is_some()).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    _ = end => {}
                    _ = rx.wait_for(|v| *v) => {}
                }
            }
        }
    }
}
