//! The admin pages, for administrator accounts signed in on the web: accounts
//! (create, per-protocol switches, remove), protocol settings, live sessions.
//! They call the same operations as the admin API (`admin_ops`, the settings
//! backend, the live-session registry).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use casella_net::LiveSessions;
use serde_json::Value;

use crate::Web;
use crate::admin_ops;
use crate::html::{esc, page};
use crate::pages::{SignedIn, field, refuse_form};
use crate::session::WebSession;

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/admin", get(accounts_page))
        .route("/admin/accounts", post(create_account))
        .route("/admin/accounts/{address}", post(update_account))
        .route("/admin/accounts/{address}/remove", post(remove_account))
        .route(
            "/admin/settings/{protocol}",
            get(settings_page).post(save_settings),
        )
        .route("/admin/sessions", get(sessions_page))
        .route("/admin/sessions/{id}/end", post(end_session))
}

/// The refusal for anyone but an administrator; `None`: go on.
fn refuse_non_admin(s: &WebSession) -> Option<Response> {
    if s.admin {
        None
    } else {
        Some(
            (
                StatusCode::FORBIDDEN,
                Html(page(
                    "Not allowed",
                    Some(&s.address),
                    "<h1>Not allowed</h1><p>These pages are for administrators.</p>",
                )),
            )
                .into_response(),
        )
    }
}

fn csrf(s: &WebSession) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&s.csrf)
    )
}

fn admin_nav() -> &'static str {
    "<nav><a href=\"/settings\">My settings</a><a href=\"/admin\">Accounts</a><a href=\"/admin/settings/pop\">POP settings</a><a href=\"/admin/settings/imap\">IMAP settings</a><a href=\"/admin/settings/submission\">SMTP settings</a><a href=\"/admin/sessions\">Live sessions</a></nav>"
}

fn frame(s: &WebSession, title: &str, message: Option<&str>, body: &str) -> Html<String> {
    let message = message
        .map(|m| format!("<p role=\"status\" id=\"message\">{}</p>", esc(m)))
        .unwrap_or_default();
    Html(page(
        title,
        Some(&s.address),
        &format!("{}<h1>{}</h1>{message}{body}", admin_nav(), esc(title)),
    ))
}

async fn accounts_html(web: &Web, s: &WebSession, message: Option<&str>) -> Response {
    let accounts = match admin_ops::list_accounts(web).await {
        Ok(a) => a,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let mut rows = String::new();
    for a in &accounts {
        let address = a["address"].as_str().unwrap_or("");
        let switch = |key: &str| {
            let on = a[key].as_str() == Some("on");
            format!(
                "<label><input type=\"checkbox\" name=\"{key}\" value=\"on\"{}> {key}</label>",
                if on { " checked" } else { "" }
            )
        };
        let target = esc(&address.replace('@', "%40"));
        rows.push_str(&format!(
            "<tr><td>{addr}{admin}</td><td><form method=\"post\" action=\"/admin/accounts/{target}\">{csrf}{enabled}{pop}{imap}{sub}<button type=\"submit\">Save</button></form></td>\
             <td><form method=\"post\" action=\"/admin/accounts/{target}/remove\">{csrf}<button type=\"submit\">Remove</button></form></td></tr>",
            addr = esc(address),
            admin = if a["admin"] == Value::Bool(true) { " (administrator)" } else { "" },
            csrf = csrf(s),
            enabled = switch("enabled"),
            pop = switch("pop"),
            imap = switch("imap"),
            sub = switch("submission"),
        ));
    }
    let body = format!(
        "<table id=\"accounts\"><thead><tr><th>Account</th><th>Protocols</th><th></th></tr></thead><tbody>{rows}</tbody></table>\
         <h2>New account</h2><form method=\"post\" action=\"/admin/accounts\">{csrf}\
         <label>Email address<br><input type=\"email\" name=\"address\" required></label>\
         <label>Password<br><input type=\"password\" name=\"password\" required autocomplete=\"new-password\"></label>\
         <p><button type=\"submit\">Create</button></p></form>",
        csrf = csrf(s)
    );
    frame(s, "Accounts", message, &body).into_response()
}

async fn accounts_page(State(web): State<Arc<Web>>, SignedIn { session }: SignedIn) -> Response {
    if let Some(r) = refuse_non_admin(&session) {
        return r;
    }
    accounts_html(&web, &session, None).await
}

async fn create_account(
    State(web): State<Arc<Web>>,
    SignedIn { session }: SignedIn,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_non_admin(&session)
        .or_else(|| refuse_form(&headers, Some(&session.csrf), field(&form, "csrf")))
    {
        return r;
    }
    let address = field(&form, "address").unwrap_or("");
    let password = field(&form, "password").unwrap_or("").to_string();
    let message = match admin_ops::create_account(&web, address, password, false).await {
        Ok(_) => format!("Created {address}."),
        Err(e) => e.to_string(),
    };
    accounts_html(&web, &session, Some(&message)).await
}

async fn update_account(
    State(web): State<Arc<Web>>,
    SignedIn { session }: SignedIn,
    Path(address): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_non_admin(&session)
        .or_else(|| refuse_form(&headers, Some(&session.csrf), field(&form, "csrf")))
    {
        return r;
    }
    let pairs: Vec<(String, String)> = ["enabled", "pop", "imap", "submission"]
        .iter()
        .map(|k| {
            let on = field(&form, k).is_some();
            (k.to_string(), if on { "on" } else { "off" }.to_string())
        })
        .collect();
    let message = match admin_ops::update_account(&web, &address, &pairs).await {
        Ok(()) => format!("Saved {address}."),
        Err(e) => e.to_string(),
    };
    accounts_html(&web, &session, Some(&message)).await
}

async fn remove_account(
    State(web): State<Arc<Web>>,
    SignedIn { session }: SignedIn,
    Path(address): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_non_admin(&session)
        .or_else(|| refuse_form(&headers, Some(&session.csrf), field(&form, "csrf")))
    {
        return r;
    }
    if address.eq_ignore_ascii_case(&session.address) {
        return accounts_html(&web, &session, Some("You cannot remove your own account.")).await;
    }
    let message = match admin_ops::delete_account(&web, &address).await {
        Ok(()) => format!("Removed {address}."),
        Err(e) => e.to_string(),
    };
    accounts_html(&web, &session, Some(&message)).await
}

fn settings_html(web: &Web, s: &WebSession, protocol: &str, message: Option<&str>) -> Response {
    let values = match web.settings.get(protocol) {
        Ok(v) => v,
        Err(e) => return (StatusCode::NOT_FOUND, e).into_response(),
    };
    let mut rows = String::new();
    for (k, v) in &values {
        rows.push_str(&format!(
            "<tr><th scope=\"row\"><label for=\"s-{k}\">{k}</label></th><td><input type=\"text\" id=\"s-{k}\" name=\"{k}\" value=\"{v}\"></td></tr>",
            k = esc(k),
            v = esc(v)
        ));
    }
    let body = format!(
        "<p>Changes apply to new connections within a second; nothing restarts.</p><form method=\"post\" action=\"/admin/settings/{p}\">{csrf}<table>{rows}</table><p><button type=\"submit\">Save</button></p></form>",
        p = esc(protocol),
        csrf = csrf(s)
    );
    frame(s, &format!("{protocol} settings"), message, &body).into_response()
}

async fn settings_page(
    State(web): State<Arc<Web>>,
    SignedIn { session }: SignedIn,
    Path(protocol): Path<String>,
) -> Response {
    if let Some(r) = refuse_non_admin(&session) {
        return r;
    }
    settings_html(&web, &session, &protocol, None)
}

async fn save_settings(
    State(web): State<Arc<Web>>,
    SignedIn { session }: SignedIn,
    Path(protocol): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_non_admin(&session)
        .or_else(|| refuse_form(&headers, Some(&session.csrf), field(&form, "csrf")))
    {
        return r;
    }
    let current = web.settings.get(&protocol).unwrap_or_default();
    // Only what changed is written, so defaults stay defaults.
    let changed: Vec<(String, String)> = form
        .into_iter()
        .filter(|(k, v)| k != "csrf" && current.iter().any(|(ck, cv)| ck == k && cv != v))
        .collect();
    let message = if changed.is_empty() {
        "Nothing changed.".to_string()
    } else {
        match web.settings.set(&protocol, &changed) {
            Ok(()) => format!(
                "Saved {}.",
                changed
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Err(e) => e,
        }
    };
    settings_html(&web, &session, &protocol, Some(&message))
}

fn sessions_html(s: &WebSession, message: Option<&str>) -> Response {
    let mut rows = String::new();
    for l in LiveSessions::global().list() {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><form method=\"post\" action=\"/admin/sessions/{}/end\">{}<button type=\"submit\">End</button></form></td></tr>",
            esc(l.user.as_deref().unwrap_or("(not signed in)")),
            esc(&l.protocol),
            l.remote,
            crate::pages::format_time(l.since as i64),
            l.id,
            csrf(s)
        ));
    }
    let body = format!(
        "<table id=\"sessions\"><thead><tr><th>Who</th><th>Protocol</th><th>From</th><th>Since</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
    );
    frame(s, "Live sessions", message, &body).into_response()
}

async fn sessions_page(SignedIn { session }: SignedIn) -> Response {
    if let Some(r) = refuse_non_admin(&session) {
        return r;
    }
    sessions_html(&session, None)
}

async fn end_session(
    SignedIn { session }: SignedIn,
    Path(id): Path<u64>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_non_admin(&session)
        .or_else(|| refuse_form(&headers, Some(&session.csrf), field(&form, "csrf")))
    {
        return r;
    }
    if LiveSessions::global().end(id) {
        // Give the session a moment to go, so the list no longer shows it.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        sessions_html(&session, Some("Session ended."))
    } else {
        Redirect::to("/admin/sessions").into_response()
    }
}
