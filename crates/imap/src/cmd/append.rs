//! APPEND — RFC 9051 §6.3.12; MULTIAPPEND (RFC 3502), APPENDUID (RFC 4315 §3),
//! literal8 (RFC 3516 §4.4), APPENDLIMIT (RFC 7889), CATENATE (RFC 4469, put
//! together in `catenate`).

use casella_proto_imap::AppendMessage;
use casella_store::{Flag, FlagSet, NewMessage};

use crate::cmd::{store_error, uid_set};
use crate::session::Session;

impl Session {
    pub(crate) async fn cmd_append(&mut self, tag: &str, name: &str, messages: Vec<AppendMessage>) {
        let Some(name) = self.mailbox_arg(tag, name) else {
            return;
        };
        let Some(mb) = self.destination(tag, &name).await else {
            return;
        };
        let limit = self.config.append_limit as usize;
        let mut new = Vec::with_capacity(messages.len());
        for mut m in messages {
            if let Some(parts) = m.catenate.take() {
                match self.catenate(parts, limit).await {
                    Ok(data) => m.data = data,
                    Err(failure) => {
                        self.tagged(tag, &failure.0);
                        return;
                    }
                }
            }
            if m.data.is_empty() {
                self.tagged(tag, "NO [CANNOT] An empty message cannot be appended");
                return;
            }
            if m.data.len() > limit {
                self.tagged(
                    tag,
                    &format!("NO [TOOBIG] The message is larger than the limit of {limit} bytes"),
                );
                return;
            }
            let mut flags = FlagSet::new();
            for f in &m.flags {
                if f.eq_ignore_ascii_case("\\Recent") {
                    continue;
                }
                match Flag::parse(f) {
                    Some(flag) => {
                        flags.insert(flag);
                    }
                    None => {
                        self.tagged(tag, &format!("BAD Invalid flag {f}"));
                        return;
                    }
                }
            }
            new.push(NewMessage {
                raw: m.data,
                internal_date: m.internal_date,
                flags,
                // RFC 3516 §4.4: a literal8 is binary content, kept octet
                // for octet (bare LFs are not line ends there).
                binary: m.binary,
            });
        }
        let bytes: u64 = new.iter().map(|m| m.raw.len() as u64).sum();
        let Ok(limited) = self.check_quota(tag, bytes, new.len() as u64).await else {
            return;
        };
        match self.store().append_batch(mb.id, new).await {
            Ok(appended) => {
                if limited {
                    self.warn_if_over().await;
                }
                let uids: Vec<_> = appended.iter().map(|a| a.uid).collect();
                let status = format!(
                    "OK [APPENDUID {} {}] APPEND completed",
                    mb.uid_validity.0,
                    uid_set(&uids)
                );
                self.finish(tag, &status, true).await;
            }
            Err(e) => {
                let reply = store_error(&e);
                self.tagged(tag, &reply)
            }
        }
    }
}
