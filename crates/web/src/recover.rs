//! "Recover deleted items" (Exchange's Recover Deleted Items): the signed-in
//! user's messages expunged in the last days (from any folder, or taken out
//! of Deleted Items and Junk by retention), newest first, with a box each;
//! restoring puts the chosen ones back in their folders.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use casella_store::{Account, RecoverFilter, RecoverableItem};

use crate::Web;
use crate::html::{esc, outcome, page};
use crate::pages::{SignedIn, csrf_input, field, format_time, nav, refuse_form};
use crate::session::WebSession;

/// At most this many items on the page (the oldest beyond it wait).
const SHOWN: usize = 500;

pub fn routes() -> Router<Arc<Web>> {
    Router::new().route("/recover", get(recover_page).post(restore))
}

async fn recover_page(
    State(web): State<Arc<Web>>,
    SignedIn { session, account }: SignedIn,
) -> Response {
    recover_html(&web, &session, &account, None).await
}

async fn restore(
    State(web): State<Arc<Web>>,
    SignedIn { session, account }: SignedIn,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_form(&headers, Some(&session.csrf), field(&form, "csrf")) {
        return r;
    }
    let ids: Vec<i64> = form
        .iter()
        .filter(|(k, _)| k == "item")
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    if ids.is_empty() {
        return recover_html(
            &web,
            &session,
            &account,
            Some(Err("Choose what to restore.")),
        )
        .await;
    }
    match web
        .directory
        .store()
        .restore_recoverable(account.id, &ids)
        .await
    {
        Ok(done) => {
            tracing::info!(user = %account.address, count = done.len(), "recoverable items restored");
            let text = match done.len() {
                0 => "Nothing was restored: those items are gone.".to_string(),
                1 => format!("1 message restored to {}.", done[0].folder),
                n => format!("{n} messages restored to their folders."),
            };
            recover_html(&web, &session, &account, Some(Ok(&text))).await
        }
        Err(e) => {
            tracing::error!(error = %e, "restoring recoverable items failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "Restoring failed; try again.",
            )
                .into_response()
        }
    }
}

/// The page, with the outcome of a restore when there was one.
async fn recover_html(
    web: &Web,
    session: &WebSession,
    account: &Account,
    message: Option<Result<&str, &str>>,
) -> Response {
    let store = web.directory.store();
    let mut items: Vec<RecoverableItem> = match store
        .recoverable(account.id, &RecoverFilter::default())
        .await
    {
        Ok(items) => items,
        Err(e) => {
            tracing::error!(error = %e, "listing recoverable items failed");
            return (StatusCode::SERVICE_UNAVAILABLE, "Try again.").into_response();
        }
    };
    items.reverse();
    items.truncate(SHOWN);
    let blobs: Vec<_> = items.iter().map(|i| i.blob.clone()).collect();
    let fields = store.search_fields(&blobs, false).await.unwrap_or_default();
    let mut rows = String::new();
    for (n, item) in items.iter().enumerate() {
        let (from, subject) = fields
            .get(n)
            .and_then(|f| f.as_deref())
            .map(|f| (f.from.as_str(), f.subject.as_str()))
            .unwrap_or(("", ""));
        rows.push_str(&format!(
            "<tr><td><input type=\"checkbox\" name=\"item\" value=\"{id}\" id=\"item-{id}\" aria-label=\"Restore\"></td>\
             <td>{subject}</td><td>{from}</td><td>{folder}</td><td>{deleted}</td></tr>",
            id = item.id,
            subject = esc(if subject.is_empty() { "(no subject)" } else { subject }),
            from = esc(from),
            folder = esc(&item.folder),
            deleted = format_time(item.deleted_at),
        ));
    }
    let message = outcome(message, "outcome", "outcome");
    let list = if items.is_empty() {
        "<p id=\"none\">There is nothing to recover.</p>".to_string()
    } else {
        format!(
            "<form method=\"post\" action=\"/recover\">{csrf}<table id=\"recoverable\"><thead><tr><th></th><th>Subject</th><th>From</th>\
             <th>Deleted from</th><th>Deleted</th></tr></thead><tbody>{rows}</tbody></table>\
             <p><button type=\"submit\" id=\"restore\">Restore</button></p></form>",
            csrf = csrf_input(session)
        )
    };
    let body = format!(
        "{nav}<h1>Recover deleted items</h1><p>Messages you deleted for good — emptied from Deleted Items, deleted \
         with a mail program, or removed when they had been in Deleted Items or Junk for too long — can be restored \
         for a few days more. Restored messages go back to the folder they were deleted from.</p>{message}{list}",
        nav = nav(session)
    );
    Html(page("Recover deleted items", Some(&account.address), &body)).into_response()
}
