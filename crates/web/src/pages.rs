//! The users' pages: sign in, "POP and IMAP" settings (what to type into a mail
//! program), POP options, and security (recent logins, app passwords, change
//! password, sign out of all devices). Server-rendered HTML, no script needed
//! but for the copy buttons.
//!
//! Passwords and session cookies travel only over HTTPS, or over plain HTTP
//! from loopback and `[web] trusted-networks` (a reverse proxy on the same
//! host, a lab network): elsewhere the password forms are not even shown, and a
//! page says which https address to use instead.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use casella_directory::{
    AuthFailure, LoginContext, LoginSource, LoginType, Protocol, SaslConnection, Secret,
    app_passwords, options,
};
use casella_store::{Account, PopDeleteAction};

use crate::autoconfig::{Auth, Offer};
use crate::html::{esc, page};
use crate::server::Transport;
use crate::session::{self, WebSession};
use crate::{Endpoint, Web, urls};

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/settings", get(settings_page))
        .route(
            "/settings/pop",
            get(pop_options_page).post(save_pop_options),
        )
        .route("/security", get(security_page))
        .route("/security/app-passwords", post(create_app_password))
        .route(
            "/security/app-passwords/{id}/revoke",
            post(revoke_app_password),
        )
        .route("/security/password", post(change_password))
        .route("/security/signout", post(sign_out_everywhere))
        .merge(crate::recover::routes())
        .merge(crate::admin_pages::routes())
}

/// Whether this request's connection may carry a password or a session
/// cookie (see the module doc).
fn connection_secure(parts: &Parts, web: &Web) -> bool {
    let tls = parts.extensions.get::<Transport>().is_some_and(|t| t.tls);
    let remote = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    remote.is_some_and(|ip| web.passwords_allowed(tls, ip))
}

/// The session id in the request's cookies.
fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session::from_cookie_header)
}

/// A signed-in user (the session cookie), with their account as it is now;
/// otherwise a redirect to /login.
///
/// The account is read again at every request: the session ends when the
/// account was removed (or made again under the same address), disabled,
/// signed out everywhere, given a new password, or made or unmade an
/// administrator since the session started (`WebSession::still_valid_for`).
pub struct SignedIn {
    pub session: WebSession,
    pub account: Account,
}

impl FromRequestParts<Arc<Web>> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Response> {
        if !connection_secure(parts, web) {
            return Err(cleartext_refusal(web));
        }
        let Some(id) = session_id(&parts.headers).map(str::to_string) else {
            return Err(Redirect::to("/login").into_response());
        };
        let Some(session) = web.sessions.get(&id) else {
            return Err(Redirect::to("/login").into_response());
        };
        match web
            .directory
            .store()
            .account_by_address(&session.address)
            .await
        {
            Ok(Some(account)) if session.still_valid_for(&account) => {
                Ok(SignedIn { session, account })
            }
            Ok(_) => {
                web.sessions.end(&id);
                tracing::info!(user = %session.address, "web session ended: the account changed, was disabled or removed, or was signed out everywhere");
                let tls = parts.extensions.get::<Transport>().is_some_and(|t| t.tls);
                let mut resp = Redirect::to("/login").into_response();
                if let Ok(v) = HeaderValue::from_str(&session::cookie("", tls)) {
                    resp.headers_mut().insert(header::SET_COOKIE, v);
                }
                Err(resp)
            }
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed");
                Err(busy())
            }
        }
    }
}

fn busy() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "The server is busy; try again.",
    )
        .into_response()
}

/// The page plain HTTP gets instead of a password form: where to go instead.
pub(crate) fn cleartext_refusal(web: &Web) -> Response {
    let whereto = match web.https_base() {
        Some(base) => {
            let url = format!("{base}/login");
            format!(
                "<p>Sign in at <a id=\"https-link\" href=\"{u}\">{u}</a> instead.</p>",
                u = esc(&url)
            )
        }
        None => "<p>This server has no HTTPS address yet; ask your administrator.</p>".to_string(),
    };
    (
        StatusCode::FORBIDDEN,
        Html(page(
            "Use HTTPS",
            None,
            &format!(
                "<h1>Use the secure address</h1><p class=\"err\" id=\"cleartext\">This connection is not encrypted, \
                 so this page does not take passwords here: anyone on the network could read them.</p>{whereto}"
            ),
        )),
    )
        .into_response()
}

/// The refusal of a form post whose CSRF token is wrong or that comes from
/// another site (Origin header), made before anything changes; `None`: go on.
pub fn refuse_form(
    headers: &HeaderMap,
    session_csrf: Option<&str>,
    sent: Option<&str>,
) -> Option<Response> {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
        if origin != "null" && origin_host != host {
            return Some(forbidden("The form came from another site."));
        }
    }
    if let Some(expected) = session_csrf
        && !sent.is_some_and(|s| session::same_token(s, expected))
    {
        return Some(forbidden(
            "The form expired or came from another site; reload the page and try again.",
        ));
    }
    None
}

fn forbidden(why: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(page(
            "Not allowed",
            None,
            &format!("<h1>Not allowed</h1><p class=\"err\">{}</p>", esc(why)),
        )),
    )
        .into_response()
}

/// The first value of a form field.
pub fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub fn csrf_input(s: &WebSession) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&s.csrf)
    )
}

pub fn nav(s: &WebSession) -> String {
    let admin = if s.admin {
        "<a href=\"/admin\">Administration</a>"
    } else {
        ""
    };
    format!(
        "<nav><a href=\"/settings\">POP and IMAP</a><a href=\"/settings/pop\">POP options</a><a href=\"/security\">Security</a><a href=\"/recover\">Recover deleted items</a>{admin}</nav>"
    )
}

async fn home(signed_in: Result<SignedIn, Response>) -> Redirect {
    match signed_in {
        Ok(_) => Redirect::to("/settings"),
        Err(_) => Redirect::to("/login"),
    }
}

fn login_page(error: Option<&str>, address: &str) -> Html<String> {
    let error = error
        .map(|e| {
            format!(
                "<p class=\"err\" role=\"alert\" id=\"error\">{}</p>",
                esc(e)
            )
        })
        .unwrap_or_default();
    Html(page(
        "Sign in",
        None,
        &format!(
            "<h1>Sign in</h1>{error}<form method=\"post\" action=\"/login\">\
             <label>Email address<br><input type=\"email\" name=\"address\" id=\"address\" autocomplete=\"username\" required value=\"{}\"></label>\
             <label>Password (or an app password)<br><input type=\"password\" name=\"password\" id=\"password\" autocomplete=\"current-password\" required></label>\
             <p><button type=\"submit\" id=\"signin\">Sign in</button></p></form>",
            esc(address)
        ),
    ))
}

async fn login_form(
    State(web): State<Arc<Web>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Extension(transport): Extension<Transport>,
) -> Response {
    if !web.passwords_allowed(transport.tls, remote.ip()) {
        return cleartext_refusal(&web);
    }
    login_page(None, "").into_response()
}

/// A web login as the login pipeline sees it. The web's policy is
/// secure-login; the caller has refused password forms on plain HTTP from
/// untrusted networks already, so what reaches here counts as secure.
fn login_context(remote: SocketAddr, headers: &HeaderMap) -> LoginContext {
    let conn = SaslConnection::new(LoginType::SecureLogin, true, None, None);
    let mut ctx = LoginContext::new(Protocol::Web, conn, login_source(remote, headers));
    // A wrong password costs time, as on the mail protocols.
    ctx.failure_delay = std::time::Duration::from_millis(500);
    ctx
}

/// Where a login comes from, for the account's history.
fn login_source(remote: SocketAddr, headers: &HeaderMap) -> LoginSource {
    LoginSource {
        remote: remote.ip(),
        client: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(60).collect()),
    }
}

/// The response that starts a new session for `account` and goes to `to`.
fn start_session(web: &Web, account: &Account, tls: bool, to: Response) -> Response {
    let id = web.sessions.start(account);
    let mut resp = to;
    if let Ok(v) = HeaderValue::from_str(&session::cookie(&id, tls)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn login(
    State(web): State<Arc<Web>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Extension(transport): Extension<Transport>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_form(&headers, None, None) {
        return r;
    }
    // Refused before the password is looked at: it should not have been sent
    // here at all.
    if !web.passwords_allowed(transport.tls, remote.ip()) {
        tracing::info!(protocol = "web", %remote, "password form refused on plain HTTP");
        return cleartext_refusal(&web);
    }
    let address = field(&form, "address").unwrap_or("").trim().to_string();
    let password = Secret::new(field(&form, "password").unwrap_or("").to_string());
    let result = web
        .directory
        .login_with_password(&login_context(remote, &headers), &address, &password)
        .await;
    match result {
        Ok(auth) => {
            tracing::info!(protocol = "web", %remote, user = %auth.account.address, "login");
            start_session(
                &web,
                &auth.account,
                transport.tls,
                Redirect::to("/settings").into_response(),
            )
        }
        Err(failure) => {
            // The pipeline logged it and waited the failure delay.
            let text = match failure {
                AuthFailure::Temporary => "The server could not check your password; try again.",
                AuthFailure::ProtocolDisabled => {
                    "This account is disabled; ask your administrator."
                }
                AuthFailure::Throttled => "Too many failed logins, try again later.",
                _ => "The email address or password is not correct.",
            };
            (StatusCode::UNAUTHORIZED, login_page(Some(text), &address)).into_response()
        }
    }
}

fn clear_cookie(tls: bool, mut resp: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&session::cookie("", tls)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn logout(
    State(web): State<Arc<Web>>,
    Extension(transport): Extension<Transport>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = refuse_form(&headers, None, None) {
        return r;
    }
    if let Some(id) = session_id(&headers) {
        web.sessions.end(id);
    }
    clear_cookie(transport.tls, Redirect::to("/login").into_response())
}

fn encryption(e: &Endpoint) -> &'static str {
    if e.implicit_tls {
        "SSL/TLS"
    } else {
        "STARTTLS"
    }
}

fn endpoint_table(id: &str, title: &str, list: &[Endpoint], auth: Option<Auth>) -> String {
    if list.is_empty() {
        return format!(
            "<h2>{title}</h2><p id=\"{id}-none\">Not offered. Ask your administrator.</p>"
        );
    }
    let mut rows = String::new();
    for (i, e) in list.iter().enumerate() {
        let copy = |what: &str, value: &str| {
            format!(
                "<code id=\"{id}-{what}-{i}\">{v}</code> <button type=\"button\" class=\"copy\" data-copy=\"{v}\" aria-label=\"Copy {title} {what}\">Copy</button>",
                v = esc(value)
            )
        };
        rows.push_str(&format!(
            "<tr><th scope=\"row\">Server name</th><td>{}</td></tr><tr><th scope=\"row\">Port</th><td>{}</td></tr><tr><th scope=\"row\">Encryption method</th><td id=\"{id}-encryption-{i}\">{}</td></tr>",
            copy("server", &e.host),
            copy("port", &e.port.to_string()),
            encryption(e)
        ));
    }
    let note = if auth == Some(Auth::OAuth) {
        format!(
            "<p id=\"{id}-oauth\">Your password does not work here: choose OAuth 2.0 (your organisation's sign-in) in your mail program.</p>"
        )
    } else {
        String::new()
    };
    format!("<h2>{title}</h2><table id=\"{id}\">{rows}</table>{note}")
}

const COPY_SCRIPT: &str = "<script>document.querySelectorAll('button.copy').forEach(b=>b.addEventListener('click',()=>{navigator.clipboard&&navigator.clipboard.writeText(b.dataset.copy);b.textContent='Copied';setTimeout(()=>b.textContent='Copy',1500);}));</script>";

async fn settings_page(
    State(web): State<Arc<Web>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    SignedIn { session, account }: SignedIn,
) -> Html<String> {
    // What this account may use: a protocol switched off for it, or one whose
    // passwords are off with no OAuth, is not offered.
    let offer: Offer = crate::autoconfig::offer(&web, remote.ip(), Some(&account));
    let address = &session.address;
    let body = format!(
        "{nav}<h1>Settings for POP or IMAP access</h1>\
         <p>Use these settings to add your account to a mail program (Outlook, Thunderbird, Apple Mail, a phone). \
         Your user name is your full email address, <strong id=\"username\">{a}</strong>, with your password or an \
         <a href=\"/security\">app password</a>.</p>\
         {imap}{pop}{smtp}\
         <div class=\"note\"><h2>POP or IMAP?</h2>\
         <p><strong>IMAP</strong> keeps your mail on the server: every device sees the same folders, read and unread \
         marks, and sent mail. Choose IMAP if you read mail on more than one device.</p>\
         <p><strong>POP</strong> downloads your mail to one device. Other devices will not see what it downloaded unless \
         you tell the mail program to <em>leave a copy of messages on the server</em>. You choose which folders POP \
         downloads and what happens to messages it deletes: <a href=\"/settings/pop\">POP options</a>.</p>\
         <p>Outgoing mail is sent through SMTP with the same user name and password.</p></div>\
         {profile}{usage}{COPY_SCRIPT}",
        usage = usage_html(&web, &account).await,
        nav = nav(&session),
        a = esc(address),
        imap = endpoint_table("imap", "IMAP", &offer.ends.imap, offer.imap),
        pop = endpoint_table("pop", "POP", &offer.ends.pop, offer.pop),
        smtp = endpoint_table("smtp", "SMTP", &offer.ends.smtp, offer.smtp),
        profile = if offer.ends.smtp.is_empty()
            || (offer.ends.imap.is_empty() && offer.ends.pop.is_empty())
        {
            String::new()
        } else {
            let pop_only = if offer.ends.imap.is_empty() {
                "&amp;protocol=pop"
            } else {
                ""
            };
            format!(
                "<p><a id=\"mobileconfig\" href=\"/mobileconfig?emailaddress={au}{pop_only}\">Download a configuration profile</a> for iPhone, iPad and Mac \
                 (opens Settings to add the account).</p>",
                au = esc(&urls::component(address)),
            )
        },
    );
    Html(page("POP and IMAP", Some(address), &body))
}

/// "Mailbox size": what the account holds and, when a limit applies, how
/// much of it that is.
async fn usage_html(web: &Web, account: &Account) -> String {
    use casella_directory::quota::{QuotaState, format_bytes, format_size};
    let Ok(usage) = web.directory.store().usage(account.id).await else {
        return String::new();
    };
    let state = QuotaState::new(account, &web.directory.quota_defaults(), usage);
    let of = match state.receive {
        Some(limit) => format!(
            " of {} ({}%)",
            format_size(limit),
            (usage.bytes.saturating_mul(100) / limit).min(100)
        ),
        None => String::new(),
    };
    let warn = if state.send_refused() {
        "<p class=\"err\" id=\"quota-full\">Your mailbox is full: you cannot send mail until you delete some.</p>"
    } else if state.warn() {
        "<p class=\"err\" id=\"quota-warning\">Your mailbox is almost full.</p>"
    } else {
        ""
    };
    format!(
        "<h2>Mailbox size</h2><p id=\"usage\">{} in {} messages{of}.</p>{warn}",
        format_bytes(usage.bytes),
        usage.messages
    )
}

async fn pop_options_page(
    State(web): State<Arc<Web>>,
    SignedIn { session, account }: SignedIn,
) -> Response {
    pop_options_html(&web, &session, &account, None)
        .await
        .into_response()
}

async fn pop_options_html(
    web: &Web,
    session: &WebSession,
    account: &Account,
    message: Option<&str>,
) -> Html<String> {
    let mailboxes = web
        .directory
        .store()
        .list_mailboxes(account.id)
        .await
        .unwrap_or_default();
    let pop = &account.settings.pop;
    let mut folders = String::new();
    for mb in &mailboxes {
        let checked = if pop.folders.iter().any(|f| f == &mb.name) {
            " checked"
        } else {
            ""
        };
        folders.push_str(&format!(
            "<label><input type=\"checkbox\" name=\"folder\" value=\"{n}\"{checked}> {n}</label>",
            n = esc(&mb.name)
        ));
    }
    let radio = |value: &str, label: &str, action: PopDeleteAction| {
        let checked = if pop.delete_action == action {
            " checked"
        } else {
            ""
        };
        format!(
            "<label><input type=\"radio\" name=\"dele\" value=\"{value}\" id=\"dele-{value}\"{checked}> {label}</label>"
        )
    };
    let message = message
        .map(|m| {
            format!(
                "<p class=\"ok\" role=\"status\" id=\"saved\">{}</p>",
                esc(m)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "{nav}<h1>POP options</h1>{message}<form method=\"post\" action=\"/settings/pop\">{csrf}\
         <fieldset><legend>Folders POP downloads</legend>{folders}</fieldset>\
         <fieldset><legend>When a mail program downloads a message over POP</legend>\
         <label><input type=\"checkbox\" name=\"mark_read\" id=\"mark_read\" value=\"on\"{mr}> mark it as read</label></fieldset>\
         <fieldset><legend>When a mail program deletes a message over POP</legend>{r1}{r2}{r3}</fieldset>\
         <p><button type=\"submit\" id=\"save\">Save</button></p></form>",
        nav = nav(session),
        csrf = csrf_input(session),
        mr = if pop.mark_read { " checked" } else { "" },
        r1 = radio("delete", "delete it for good", PopDeleteAction::Expunge),
        r2 = radio(
            "move-to-deleted-items",
            "move it to Deleted Items",
            PopDeleteAction::MoveToTrash
        ),
        r3 = radio(
            "hide-from-pop",
            "keep it on the server and only hide it from POP",
            PopDeleteAction::HideFromPop
        ),
    );
    Html(page("POP options", Some(&session.address), &body))
}

async fn save_pop_options(
    State(web): State<Arc<Web>>,
    SignedIn {
        session,
        mut account,
    }: SignedIn,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_form(&headers, Some(&session.csrf), field(&form, "csrf")) {
        return r;
    }
    let folders: Vec<&str> = form
        .iter()
        .filter(|(k, _)| k == "folder")
        .map(|(_, v)| v.as_str())
        .collect();
    let folders = if folders.is_empty() {
        "INBOX".to_string()
    } else {
        folders.join(",")
    };
    let mark_read = if field(&form, "mark_read").is_some() {
        "on"
    } else {
        "off"
    };
    let dele = field(&form, "dele").unwrap_or("delete");
    for (k, v) in [
        ("pop-folders", folders.as_str()),
        ("pop-mark-read", mark_read),
        ("pop-dele", dele),
    ] {
        if let Err(e) = options::set(&mut account, k, v) {
            return (StatusCode::BAD_REQUEST, e.0).into_response();
        }
    }
    if let Err(e) = web.directory.store().update_account(&account).await {
        tracing::error!(error = %e, "saving POP options failed");
        return (StatusCode::SERVICE_UNAVAILABLE, "Saving failed; try again.").into_response();
    }
    pop_options_html(
        &web,
        &session,
        &account,
        Some("Saved. Your mail program sees the change at its next POP login."),
    )
    .await
    .into_response()
}

/// A time as the pages show it: `2026-12-07 22:40 UTC`.
pub fn format_time(secs: i64) -> String {
    casella_mime::format_utc(secs)
}

async fn security_html(
    web: &Web,
    session: &WebSession,
    account: &Account,
    created: Option<(&str, &str)>,
    error: Option<&str>,
) -> Html<String> {
    security_html_with(web, session, account, created, error, None).await
}

/// The security page; `password_message` is the outcome of a password
/// change: `Ok(text)` or `Err(text)`.
async fn security_html_with(
    web: &Web,
    session: &WebSession,
    account: &Account,
    created: Option<(&str, &str)>,
    error: Option<&str>,
    password_message: Option<Result<&str, &str>>,
) -> Html<String> {
    let logins = web
        .directory
        .store()
        .recent_logins(account.id)
        .await
        .unwrap_or_default();
    let mut rows = String::new();
    for l in &logins {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            format_time(l.at),
            esc(&l.protocol),
            esc(&l.remote),
            if l.success { "ok" } else { "err" },
            if l.success { "Signed in" } else { "Failed" },
            esc(l.client.as_deref().unwrap_or(""))
        ));
    }
    let logins_table = if logins.is_empty() {
        "<p>No logins yet.</p>".to_string()
    } else {
        format!(
            "<table id=\"logins\"><thead><tr><th>Time</th><th>Protocol</th><th>Address</th><th>Result</th><th>Program</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    let mut apps = String::new();
    for a in &account.settings.app_passwords {
        apps.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><form method=\"post\" action=\"/security/app-passwords/{}/revoke\">{}<button type=\"submit\">Revoke</button></form></td></tr>",
            esc(&a.name),
            esc(&a.protocols.join(", ")),
            format_time(a.created),
            esc(&a.id),
            csrf_input(session)
        ));
    }
    let apps_table = if apps.is_empty() {
        "<p>You have no app passwords.</p>".to_string()
    } else {
        format!(
            "<table id=\"app-passwords\"><thead><tr><th>Name</th><th>Works for</th><th>Created</th><th></th></tr></thead><tbody>{apps}</tbody></table>"
        )
    };
    let created = created
        .map(|(name, pw)| {
            format!(
                "<div class=\"note\" role=\"status\"><p>Your app password for <strong>{}</strong> is</p><p><code id=\"new-app-password\">{}</code></p><p>Type it into the mail program instead of your password. It is shown only this once.</p></div>",
                esc(name),
                esc(pw)
            )
        })
        .unwrap_or_default();
    let error = error
        .map(|e| format!("<p class=\"err\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    let choices: String = [
        ("imap", "IMAP"),
        ("pop", "POP"),
        ("submission", "SMTP (sending)"),
        ("web", "this settings page"),
    ]
    .iter()
    .map(|(v, label)| {
        format!(
            "<label><input type=\"checkbox\" name=\"protocol\" value=\"{v}\" id=\"app-{v}\"> {label}</label>"
        )
    })
    .collect();
    let body = format!(
        "{nav}<h1>Security</h1><h2>Recent activity</h2><p>The last 50 sign-ins to your account. If one is not yours, change your password.</p>{logins_table}\
         <h2>App passwords</h2><p>An app password lets one mail program sign in without your main password, only for what you choose. Revoke it when you stop using the program.</p>\
         {created}{error}{apps_table}\
         <form method=\"post\" action=\"/security/app-passwords\">{csrf}<label>Name<br><input type=\"text\" name=\"name\" id=\"app-name\" required maxlength=\"64\" placeholder=\"e.g. Phone\"></label>\
         <fieldset><legend>Works for</legend>{choices}</fieldset><p><button type=\"submit\" id=\"create-app-password\">Create app password</button></p></form>\
         <h2>Change password</h2>{pw_message}<form method=\"post\" action=\"/security/password\">{csrf}\
         <label>Current password<br><input type=\"password\" name=\"current\" id=\"current-password\" autocomplete=\"current-password\" required></label>\
         <label>New password (at least {min} characters)<br><input type=\"password\" name=\"new\" id=\"new-password\" autocomplete=\"new-password\" minlength=\"{min}\" required></label>\
         <label>New password again<br><input type=\"password\" name=\"repeat\" id=\"repeat-password\" autocomplete=\"new-password\" minlength=\"{min}\" required></label>\
         <p><button type=\"submit\" id=\"change-password\">Change password</button></p></form>\
         <p>Changing your password signs you out of these pages everywhere else; mail programs need the new password at their next sign-in.</p>\
         <h2>Sign out of all devices</h2><p>Signs you out of these pages everywhere, including here, and ends every open mail connection \
         (IMAP, POP, SMTP) of your account. Mail programs that know your password sign in again: if a device was lost or stolen, \
         change your password and revoke its app passwords too.</p>\
         <form method=\"post\" action=\"/security/signout\">{csrf}<p><button type=\"submit\" id=\"signout-everywhere\">Sign out of all devices</button></p></form>",
        nav = nav(session),
        csrf = csrf_input(session),
        min = casella_directory::password_rules::MIN_LENGTH,
        pw_message = crate::html::outcome(password_message, "password-changed", "password-error"),
    );
    Html(page("Security", Some(&session.address), &body))
}

async fn security_page(
    State(web): State<Arc<Web>>,
    SignedIn { session, account }: SignedIn,
) -> Response {
    security_html(&web, &session, &account, None, None)
        .await
        .into_response()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn create_app_password(
    State(web): State<Arc<Web>>,
    SignedIn {
        session,
        mut account,
    }: SignedIn,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_form(&headers, Some(&session.csrf), field(&form, "csrf")) {
        return r;
    }
    let name = field(&form, "name").unwrap_or("").to_string();
    let protocols: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "protocol")
        .map(|(_, v)| v.clone())
        .collect();
    match app_passwords::create(&mut account, &name, &protocols, now()) {
        Ok(pw) => {
            if let Err(e) = web.directory.store().update_account(&account).await {
                tracing::error!(error = %e, "saving an app password failed");
                return (StatusCode::SERVICE_UNAVAILABLE, "Saving failed; try again.")
                    .into_response();
            }
            tracing::info!(user = %account.address, name = %name, "app password created");
            security_html(&web, &session, &account, Some((&name, &pw)), None)
                .await
                .into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            security_html(&web, &session, &account, None, Some(&e)).await,
        )
            .into_response(),
    }
}

async fn revoke_app_password(
    State(web): State<Arc<Web>>,
    SignedIn {
        session,
        mut account,
    }: SignedIn,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_form(&headers, Some(&session.csrf), field(&form, "csrf")) {
        return r;
    }
    if app_passwords::revoke(&mut account, &id)
        && let Err(e) = web.directory.store().update_account(&account).await
    {
        tracing::error!(error = %e, "revoking an app password failed");
        return (StatusCode::SERVICE_UNAVAILABLE, "Saving failed; try again.").into_response();
    }
    Redirect::to("/security").into_response()
}

/// Change password — the current password is required (a stolen session
/// alone cannot take the account over), checked through the login pipeline so
/// that wrong guesses count against the login throttle. The new password must
/// meet the password rules. Every other web session of the account ends (a new
/// generation); this one goes on under a fresh session id.
async fn change_password(
    State(web): State<Arc<Web>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Extension(transport): Extension<Transport>,
    SignedIn { session, account }: SignedIn,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_form(&headers, Some(&session.csrf), field(&form, "csrf")) {
        return r;
    }
    let refuse = |web: Arc<Web>, session: WebSession, account: Account, why: String| async move {
        (
            StatusCode::BAD_REQUEST,
            security_html_with(&web, &session, &account, None, None, Some(Err(&why))).await,
        )
            .into_response()
    };
    let current = Secret::new(field(&form, "current").unwrap_or("").to_string());
    let new = field(&form, "new").unwrap_or("").to_string();
    if field(&form, "repeat") != Some(new.as_str()) {
        return refuse(
            web,
            session,
            account,
            "The two new passwords differ.".into(),
        )
        .await;
    }
    if let Err(e) = casella_directory::password_rules::check(&account.address, &new) {
        return refuse(web, session, account, capitalized(&e.to_string())).await;
    }
    // Checked through the login pipeline (throttled like any login); an app
    // password does not open the account's main password.
    let checked = web
        .directory
        .login_with_password(&login_context(remote, &headers), &account.address, &current)
        .await;
    match checked {
        Ok(auth) if auth.app_password => {
            return refuse(
                web,
                session,
                account,
                "Type your current password, not an app password.".into(),
            )
            .await;
        }
        Ok(_) => {}
        Err(AuthFailure::Temporary) => return busy(),
        Err(failure) => {
            // The pipeline logged it and waited the failure delay.
            tracing::info!(protocol = "web", %remote, user = %account.address, reason = ?failure, "password change refused: wrong current password");
            return refuse(
                web,
                session,
                account,
                "Your current password is not correct.".into(),
            )
            .await;
        }
    }
    let updated = match crate::admin_ops::set_password(account.clone(), new).await {
        Ok(a) => a,
        Err(e) => return refuse(web, session, account, capitalized(&e.to_string())).await,
    };
    if let Err(e) = web.directory.store().update_account(&updated).await {
        tracing::error!(error = %e, "saving a new password failed");
        return (StatusCode::SERVICE_UNAVAILABLE, "Saving failed; try again.").into_response();
    }
    web.directory.forget_remembered_passwords(updated.id);
    tracing::info!(protocol = "web", %remote, user = %updated.address, "password changed");
    if let Some(old) = session_id(&headers) {
        web.sessions.end(old);
    }
    let id = web.sessions.start(&updated);
    let fresh = web.sessions.get(&id).unwrap_or(session);
    let page = security_html_with(
        &web,
        &fresh,
        &updated,
        None,
        None,
        Some(Ok(
            "Your password was changed. You were signed out of these pages on your other devices.",
        )),
    )
    .await
    .into_response();
    let mut resp = page;
    if let Ok(v) = HeaderValue::from_str(&session::cookie(&id, transport.tls)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => format!("{}{}.", f.to_uppercase(), c.as_str().trim_end_matches('.')),
        None => String::new(),
    }
}

/// "Sign out of all devices" for the signed-in user (this session included).
async fn sign_out_everywhere(
    State(web): State<Arc<Web>>,
    Extension(transport): Extension<Transport>,
    SignedIn { session, .. }: SignedIn,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_form(&headers, Some(&session.csrf), field(&form, "csrf")) {
        return r;
    }
    let ended = match crate::signout::sign_out_everywhere(&web, &session.address).await {
        Ok(Some(n)) => n,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "signing out everywhere failed");
            return busy();
        }
    };
    if let Some(id) = session_id(&headers) {
        web.sessions.end(id);
    }
    let body = format!(
        "<h1>Signed out of all devices</h1><p role=\"status\" id=\"signed-out\">You were signed out of these pages everywhere, \
         and {ended} open mail connection{s} of your account {were} ended.</p>\
         <p>Mail programs that know your password sign in again. If a device was lost or stolen, \
         <a href=\"/login\">sign in</a> and change your password.</p>",
        s = if ended == 1 { "" } else { "s" },
        were = if ended == 1 { "was" } else { "were" },
    );
    clear_cookie(
        transport.tls,
        Html(page("Signed out", None, &body)).into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_time(1_795_000_000), "2026-11-18 11:06 UTC");
    }

    #[test]
    fn forms_from_other_sites_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "mail.example.org".parse().unwrap());
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(refuse_form(&h, None, None).is_some());
        h.insert(header::ORIGIN, "https://mail.example.org".parse().unwrap());
        assert!(refuse_form(&h, None, None).is_none());
        assert!(refuse_form(&h, Some("abc"), Some("abd")).is_some());
        assert!(refuse_form(&h, Some("abc"), None).is_some());
        assert!(refuse_form(&h, Some("abc"), Some("abc")).is_none());
    }
}
