//! The admin pages, for administrator accounts signed in on the web: accounts
//! (create, per-protocol switches, password reset, sign out of all devices,
//! remove — after a confirmation page), protocol settings, live sessions.
//! They call the same operations as the admin API (`admin_ops`, the settings
//! backend, the live-session registry).
//!
//! Answered only to clients in `[web] admin-networks`, only to a session whose
//! account is an administrator now (`SignedIn` reads the account again at every
//! request), and like every password form only over HTTPS or from a trusted
//! network. Addresses in links are percent-encoded (`urls`), so any address
//! the CLI accepts — `#`, `?`, `/`, `+` in the local part — can be managed here.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use casella_net::LiveSessions;
use serde_json::Value;

use crate::admin_ops;
use crate::html::{esc, page};
use crate::pages::{SignedIn, field, refuse_form};
use crate::session::WebSession;
use crate::{Web, urls};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/admin", get(accounts_page))
        .route("/admin/accounts", post(create_account))
        .route(
            "/admin/accounts/{address}",
            get(account_page).post(update_account),
        )
        .route("/admin/accounts/{address}/password", post(reset_password))
        .route("/admin/accounts/{address}/signout", post(sign_out))
        .route(
            "/admin/accounts/{address}/remove",
            get(confirm_remove).post(remove_account),
        )
        .route(
            "/admin/settings/{protocol}",
            get(settings_page).post(save_settings),
        )
        .route("/admin/sessions", get(sessions_page))
        .route("/admin/sessions/{id}/end", post(end_session))
}

/// A signed-in administrator, from an admin network.
pub struct SignedInAdmin {
    pub session: WebSession,
}

impl FromRequestParts<Arc<Web>> for SignedInAdmin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Response> {
        if !web.admin_request_allowed(parts) {
            return Err(not_allowed(
                None,
                "The administration pages are not open to your network.",
            ));
        }
        let SignedIn { session, .. } = SignedIn::from_request_parts(parts, web).await?;
        if !session.admin {
            return Err(not_allowed(
                Some(&session.address),
                "These pages are for administrators.",
            ));
        }
        Ok(SignedInAdmin { session })
    }
}

fn not_allowed(user: Option<&str>, why: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(page(
            "Not allowed",
            user,
            &format!("<h1>Not allowed</h1><p>{}</p>", esc(why)),
        )),
    )
        .into_response()
}

fn csrf(s: &WebSession) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&s.csrf)
    )
}

fn admin_nav() -> &'static str {
    "<nav><a href=\"/settings\">My settings</a><a href=\"/admin\">Accounts</a><a href=\"/admin/settings/pop\">POP settings</a><a href=\"/admin/settings/imap\">IMAP settings</a><a href=\"/admin/settings/submission\">SMTP settings</a><a href=\"/admin/settings/security\">Security settings</a><a href=\"/admin/settings/retention\">Retention</a><a href=\"/admin/sessions\">Live sessions</a></nav>"
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
        let target = esc(&urls::component(address));
        rows.push_str(&format!(
            "<tr><td><a href=\"/admin/accounts/{target}\">{addr}</a>{admin}</td><td><form method=\"post\" action=\"/admin/accounts/{target}\">{csrf}{enabled}{pop}{imap}{sub}<button type=\"submit\">Save</button></form></td>\
             <td><a class=\"remove\" href=\"/admin/accounts/{target}/remove\">Remove…</a></td></tr>",
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
         <label>Password (at least {min} characters)<br><input type=\"password\" name=\"password\" required minlength=\"{min}\" autocomplete=\"new-password\"></label>\
         <p><button type=\"submit\">Create</button></p></form>",
        csrf = csrf(s),
        min = casella_directory::password_rules::MIN_LENGTH,
    );
    frame(s, "Accounts", message, &body).into_response()
}

async fn accounts_page(
    State(web): State<Arc<Web>>,
    SignedInAdmin { session }: SignedInAdmin,
) -> Response {
    accounts_html(&web, &session, None).await
}

async fn create_account(
    State(web): State<Arc<Web>>,
    SignedInAdmin { session }: SignedInAdmin,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_form(&headers, Some(&session.csrf), field(&form, "csrf")) {
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
    SignedInAdmin { session }: SignedInAdmin,
    Path(address): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_form(&headers, Some(&session.csrf), field(&form, "csrf")) {
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

/// The confirmation page of "Remove": what will be lost, and a POST button.
fn confirm_html(s: &WebSession, address: &str) -> Response {
    let body = format!(
        "<p id=\"confirm\">Remove <strong>{a}</strong> and <strong>all its mail</strong>? This cannot be undone. \
         Its open sessions end; mail to the address is refused from now on.</p>\
         <form method=\"post\" action=\"/admin/accounts/{t}/remove\">{csrf}<input type=\"hidden\" name=\"confirm\" value=\"yes\">\
         <p><button type=\"submit\" id=\"confirm-remove\">Remove {a}</button> <a href=\"/admin\">Cancel</a></p></form>",
        a = esc(address),
        t = esc(&urls::component(address)),
        csrf = csrf(s),
    );
    frame(s, "Remove an account", None, &body).into_response()
}

async fn confirm_remove(
    SignedInAdmin { session }: SignedInAdmin,
    Path(address): Path<String>,
) -> Response {
    confirm_html(&session, &address)
}

async fn remove_account(
    State(web): State<Arc<Web>>,
    SignedInAdmin { session }: SignedInAdmin,
    Path(address): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_form(&headers, Some(&session.csrf), field(&form, "csrf")) {
        return r;
    }
    if address.trim().eq_ignore_ascii_case(&session.address) {
        return accounts_html(&web, &session, Some("You cannot remove your own account.")).await;
    }
    // Without the confirmation (an old form, a crafted one): ask first.
    if field(&form, "confirm") != Some("yes") {
        return confirm_html(&session, &address);
    }
    let message = match admin_ops::delete_account(&web, &address).await {
        Ok(()) => format!("Removed {address}."),
        Err(e) => e.to_string(),
    };
    accounts_html(&web, &session, Some(&message)).await
}

/// One account: its switches, a password reset, sign out of all devices, and
/// the way to remove it.
async fn account_html(web: &Web, s: &WebSession, address: &str, message: Option<&str>) -> Response {
    let a = match admin_ops::show_account(web, address).await {
        Ok(a) => a,
        Err(e @ admin_ops::OpError::NotFound(_)) => {
            return (
                StatusCode::NOT_FOUND,
                frame(s, "No such account", Some(&e.to_string()), ""),
            )
                .into_response();
        }
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let address = a["address"].as_str().unwrap_or(address).to_string();
    let t = esc(&urls::component(&address));
    let mut rows = String::new();
    if let Some(o) = a.as_object() {
        for (k, v) in o {
            let v = match v {
                Value::String(x) => x.clone(),
                other => other.to_string(),
            };
            rows.push_str(&format!(
                "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
                esc(k),
                esc(&v)
            ));
        }
    }
    let own = address.eq_ignore_ascii_case(&s.address);
    let reset = if own {
        "<p>To change your own password, use the <a href=\"/security\">Security</a> page.</p>"
            .to_string()
    } else {
        format!(
            "<form method=\"post\" action=\"/admin/accounts/{t}/password\">{csrf}\
             <label>New password (at least {min} characters)<br><input type=\"password\" name=\"password\" id=\"reset-password\" required minlength=\"{min}\" autocomplete=\"new-password\"></label>\
             <p><button type=\"submit\" id=\"reset\">Reset password</button></p></form>",
            csrf = csrf(s),
            min = casella_directory::password_rules::MIN_LENGTH,
        )
    };
    let body = format!(
        "<table id=\"account\">{rows}</table>\
         <h2>Password</h2>{reset}<p>A new password ends the account's sessions on these pages.</p>\
         <h2>Sign out of all devices</h2><p>Ends the account's sessions on these pages and its open IMAP, POP and SMTP connections on every server.</p>\
         <form method=\"post\" action=\"/admin/accounts/{t}/signout\">{csrf}<p><button type=\"submit\" id=\"signout\">Sign out of all devices</button></p></form>\
         <h2>Remove</h2><p><a href=\"/admin/accounts/{t}/remove\">Remove this account and its mail…</a></p>",
        csrf = csrf(s),
    );
    frame(s, &address, message, &body).into_response()
}

async fn account_page(
    State(web): State<Arc<Web>>,
    SignedInAdmin { session }: SignedInAdmin,
    Path(address): Path<String>,
) -> Response {
    account_html(&web, &session, &address, None).await
}

async fn reset_password(
    State(web): State<Arc<Web>>,
    SignedInAdmin { session }: SignedInAdmin,
    Path(address): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_form(&headers, Some(&session.csrf), field(&form, "csrf")) {
        return r;
    }
    if address.trim().eq_ignore_ascii_case(&session.address) {
        return account_html(
            &web,
            &session,
            &address,
            Some("Change your own password on the Security page."),
        )
        .await;
    }
    let password = field(&form, "password").unwrap_or("").to_string();
    let pairs = [("password".to_string(), password)];
    let message = match admin_ops::update_account(&web, &address, &pairs).await {
        Ok(()) => "The password was reset.".to_string(),
        Err(e) => e.to_string(),
    };
    account_html(&web, &session, &address, Some(&message)).await
}

async fn sign_out(
    State(web): State<Arc<Web>>,
    SignedInAdmin { session }: SignedInAdmin,
    Path(address): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_form(&headers, Some(&session.csrf), field(&form, "csrf")) {
        return r;
    }
    let message = match admin_ops::sign_out(&web, &address).await {
        Ok(n) => format!(
            "Signed out of all devices ({n} open mail session{} ended here).",
            if n == 1 { "" } else { "s" }
        ),
        Err(e) => e.to_string(),
    };
    if address.trim().eq_ignore_ascii_case(&session.address) {
        // That ended this session too.
        return Redirect::to("/login").into_response();
    }
    account_html(&web, &session, &address, Some(&message)).await
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
    SignedInAdmin { session }: SignedInAdmin,
    Path(protocol): Path<String>,
) -> Response {
    settings_html(&web, &session, &protocol, None)
}

async fn save_settings(
    State(web): State<Arc<Web>>,
    SignedInAdmin { session }: SignedInAdmin,
    Path(protocol): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_form(&headers, Some(&session.csrf), field(&form, "csrf")) {
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

async fn sessions_page(SignedInAdmin { session }: SignedInAdmin) -> Response {
    sessions_html(&session, None)
}

async fn end_session(
    SignedInAdmin { session }: SignedInAdmin,
    Path(id): Path<u64>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_form(&headers, Some(&session.csrf), field(&form, "csrf")) {
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
