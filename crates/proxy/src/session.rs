//! A session on the driver that may become a relay: what IMAP, POP3 and
//! submission do alike on a front end.

use casella_net::{Connection, Ended, SessionHandler, SessionStream, drive};

use crate::Upstream;

/// Runs `handler`'s session on the driver. When it hands the connection over
/// (its login went to a back end, which `upstream` then gives), the front end
/// only relays from then on.
pub async fn drive_then_relay<H, S>(
    handler: &mut H,
    conn: Connection<S>,
    upstream: impl FnOnce(&mut H) -> Option<Upstream>,
) where
    H: SessionHandler,
    S: SessionStream,
{
    let signal = conn.signal().clone();
    if let Ended::HandedOver(conn) = drive(handler, conn).await
        && let Some(upstream) = upstream(handler)
    {
        crate::relay(conn.into_reader(), upstream, signal).await;
    }
}
