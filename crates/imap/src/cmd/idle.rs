//! IDLE — RFC 9051 §6.3.13 (RFC 2177): changes are pushed as they are committed,
//! until the client sends DONE.

use casella_net::{Connection, Next, SessionStream, Stop, Waited};
use casella_store::Change;
use tokio::sync::broadcast;

use crate::session::Session;

impl Session {
    pub(crate) async fn cmd_idle<S: SessionStream>(
        &mut self,
        tag: &str,
        io: &mut Connection<S>,
    ) -> Next {
        // Report what is pending before idling.
        self.sync_selected(true).await;
        if self.gone {
            return Next::Close;
        }
        self.line("+ idling");
        if self.flush(io).await.is_err() {
            return Next::Close;
        }
        let selected_id = self.selected.as_ref().map(|s| s.id());
        let Some(mut changes) = self.auth.as_ref().map(|a| a.changes.resubscribe()) else {
            return Next::Close;
        };
        let mut line = Vec::new();
        let timeout = self.config.auth_timeout;
        loop {
            tokio::select! {
                // Waiting reads nothing, so losing this race to a change loses
                // no input; the line is read only once bytes are there.
                waited = io.wait_for_input(timeout) => {
                    match waited {
                        Waited::Input => {}
                        Waited::Closed => return Next::Close,
                        Waited::Idle => return Next::Stop(Stop::Idle),
                        Waited::Shutdown => return Next::Stop(Stop::Shutdown),
                    }
                    let read = tokio::time::timeout(
                        std::time::Duration::from_secs(60),
                        casella_net::read_line(io.reader(), &mut line, 1024),
                    )
                    .await;
                    if !matches!(read, Ok(Ok(()))) {
                        return Next::Close;
                    }
                    // The feed we watched is newer than the session's.
                    if let Some(auth) = self.auth.as_mut() {
                        auth.changes = changes;
                    }
                    if line.eq_ignore_ascii_case(b"DONE") {
                        self.finish(tag, "OK IDLE terminated", true).await;
                    } else {
                        self.tagged(tag, "BAD Expected DONE to end IDLE");
                    }
                    return if self.gone { Next::Close } else { Next::Continue };
                }
                c = changes.recv() => {
                    let relevant = match c {
                        Ok(Change::MailboxList) => false,
                        Ok(c) => selected_id.is_some() && c.mailbox() == selected_id,
                        Err(broadcast::error::RecvError::Lagged(_)) => true,
                        Err(broadcast::error::RecvError::Closed) => false,
                    };
                    if relevant {
                        // Take everything else that is queued, then push.
                        while changes.try_recv().is_ok() {}
                        self.resync(true).await;
                        if self.gone {
                            return Next::Close;
                        }
                        if self.flush(io).await.is_err() {
                            return Next::Close;
                        }
                    }
                }
            }
        }
    }
}
