//! Client autoconfiguration, all from the same connection settings as the users'
//! page: Thunderbird autoconfig (config-v1.1.xml), Outlook autodiscover (the POX
//! protocol of [MS-OXDSCLI] and the v2 JSON endpoint), and an Apple
//! configuration profile (.mobileconfig).
//!
//! Only for the local domains: a request about any other domain gets a 404 (or
//! autodiscover's "not found" answer), so this server never claims to host
//! someone else's mail. When the request names an address, only what that
//! account may use is offered: not a protocol switched off for it (or barred,
//! for administrators), and not `password-cleartext` for a protocol whose
//! passwords are off (`allow-basic-auth = false`) — OAuth2 then, if tokens are
//! configured, else nothing. Every URL is built from the configured host name,
//! never from the request's Host header.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use casella_directory::{Directory, Protocol};
use casella_store::Account;
use rand::RngCore;

use crate::html::esc;
use crate::{Endpoint, Endpoints, Web};

/// How users of a protocol sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// With their password (`password-cleartext` inside TLS).
    Password,
    /// Only with an OAuth 2.0 token: passwords are off for the protocol.
    OAuth,
}

/// What one client is offered: the endpoints of each protocol (empty: not
/// offered) and how to sign in there.
pub(crate) struct Offer {
    pub ends: Endpoints,
    pub imap: Option<Auth>,
    pub pop: Option<Auth>,
    pub smtp: Option<Auth>,
}

impl Offer {
    /// The endpoints of the protocols that take passwords (for answers that
    /// cannot say "OAuth").
    pub(crate) fn password_only(self) -> Endpoints {
        let keep = |auth: Option<Auth>, list: Vec<Endpoint>| {
            if auth == Some(Auth::Password) {
                list
            } else {
                Vec::new()
            }
        };
        Endpoints {
            imap: keep(self.imap, self.ends.imap),
            pop: keep(self.pop, self.ends.pop),
            smtp: keep(self.smtp, self.ends.smtp),
        }
    }
}

/// How a protocol's users sign in: a password unless its `allow-basic-auth`
/// is off, then an OAuth token when tokens are configured, else not at all.
fn auth_for(web: &Web, protocol: &str) -> Option<Auth> {
    let basic = web
        .settings
        .get(protocol)
        .ok()
        .and_then(|values| {
            values
                .into_iter()
                .find(|(k, _)| k == "allow-basic-auth")
                .map(|(_, v)| v != "false")
        })
        .unwrap_or(true);
    if basic {
        Some(Auth::Password)
    } else if web.directory.oauth_enabled() {
        Some(Auth::OAuth)
    } else {
        None
    }
}

/// What a client at `ip` is offered, for `account` when the request named one.
pub(crate) fn offer(web: &Web, ip: IpAddr, account: Option<&Account>) -> Offer {
    // Administrators and disabled accounts are answered as an address nobody
    // has: what an outsider is told must not single them out.
    let account = account.filter(|a| !a.is_admin && !a.settings.disabled);
    let mut ends = web.endpoints_for(ip);
    let may = |p: Protocol| {
        account.is_none_or(|a| p.enabled_for(a) && !(a.is_admin && p.bars_administrators()))
    };
    let imap = auth_for(web, "imap").filter(|_| may(Protocol::Imap));
    let pop = auth_for(web, "pop").filter(|_| may(Protocol::Pop3));
    let smtp = auth_for(web, "submission").filter(|_| may(Protocol::Submission));
    if imap.is_none() {
        ends.imap.clear();
    }
    if pop.is_none() {
        ends.pop.clear();
    }
    if smtp.is_none() {
        ends.smtp.clear();
    }
    Offer {
        ends,
        imap,
        pop,
        smtp,
    }
}

/// Why a request is not answered.
enum NotOurs {
    /// The domain is not one of ours.
    Domain,
    /// The store failed.
    Busy,
}

/// The local domain a request is about and, when it named an address, that
/// address's account (its own address or an alias; `None` for an address we
/// do not know, which is answered as for the domain).
async fn local(
    web: &Web,
    email: Option<&str>,
    headers: &HeaderMap,
) -> Result<(String, Option<Account>), NotOurs> {
    let domain = domain(email, headers, web);
    let store = web.directory.store();
    match store.is_local_domain(&domain).await {
        Ok(true) => {}
        Ok(false) => return Err(NotOurs::Domain),
        Err(e) => {
            tracing::error!(error = %e, "local domain lookup failed");
            return Err(NotOurs::Busy);
        }
    }
    let Some(email) = email.filter(|e| e.contains('@')) else {
        return Ok((domain, None));
    };
    match store
        .account_for_address(&Directory::normalize(email))
        .await
    {
        Ok(account) => Ok((domain, account)),
        Err(e) => {
            tracing::error!(error = %e, "account lookup failed");
            Err(NotOurs::Busy)
        }
    }
}

fn plain_refusal(why: NotOurs) -> Response {
    match why {
        NotOurs::Domain => (
            StatusCode::NOT_FOUND,
            "this server does not serve mail for that domain\n",
        )
            .into_response(),
        NotOurs::Busy => (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response(),
    }
}

pub fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route(
            "/.well-known/autoconfig/mail/config-v1.1.xml",
            get(thunderbird),
        )
        .route("/mail/config-v1.1.xml", get(thunderbird))
        .route(
            "/autodiscover/autodiscover.xml",
            post(autodiscover_pox).get(autodiscover_pox_get),
        )
        .route(
            "/Autodiscover/Autodiscover.xml",
            post(autodiscover_pox).get(autodiscover_pox_get),
        )
        .route(
            "/autodiscover/autodiscover.json",
            get(autodiscover_json_query),
        )
        .route(
            "/autodiscover/autodiscover.json/v1.0/{email}",
            get(autodiscover_json_path),
        )
        .route("/mobileconfig", get(mobileconfig))
}

/// A query parameter, case-insensitively by name.
fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// An address in a query parameter. An address never holds a space, so a
/// space can only be a `+` the client did not percent-encode (form decoding
/// reads `+` as a space): it is given back.
fn address_param(q: &HashMap<String, String>, name: &str) -> Option<String> {
    param(q, name).map(|v| v.trim().replace(' ', "+"))
}

/// The mail domain: from the address asked about, else the Host header (less an
/// `autoconfig.` / `autodiscover.` prefix), else our host name. Only a guess:
/// the caller answers only when it is a local domain.
fn domain(email: Option<&str>, headers: &HeaderMap, web: &Web) -> String {
    if let Some((_, d)) = email.and_then(|e| e.rsplit_once('@')) {
        return d.to_ascii_lowercase();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.rsplit_once(':').map_or(h, |(n, _)| n))
        .unwrap_or(&web.hostname);
    host.trim_start_matches("autoconfig.")
        .trim_start_matches("autodiscover.")
        .to_ascii_lowercase()
}

fn xml(body: String) -> Response {
    (
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Thunderbird's socketType: SSL (implicit TLS) or STARTTLS.
fn socket_type(e: &Endpoint) -> &'static str {
    if e.implicit_tls { "SSL" } else { "STARTTLS" }
}

/// Thunderbird autoconfig — https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat
async fn thunderbird(
    State(web): State<Arc<Web>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let email = address_param(&q, "emailaddress");
    let email = email.as_deref();
    let (domain, account) = match local(&web, email, &headers).await {
        Ok(x) => x,
        Err(why) => return plain_refusal(why),
    };
    let offer = offer(&web, remote.ip(), account.as_ref());
    let username = email.map_or("%EMAILADDRESS%".to_string(), |e| e.trim().to_string());
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n",
    );
    out.push_str(&format!(
        "  <emailProvider id=\"{d}\">\n    <domain>{d}</domain>\n    <displayName>{d} mail</displayName>\n    <displayShortName>{d}</displayShortName>\n",
        d = esc(&domain)
    ));
    let server = |tag: &str, kind: &str, e: &Endpoint, auth: Option<Auth>, extra: &str| {
        let auth = match auth {
            Some(Auth::OAuth) => "OAuth2",
            _ => "password-cleartext",
        };
        format!(
            "    <{tag} type=\"{kind}\">\n      <hostname>{}</hostname>\n      <port>{}</port>\n      <socketType>{}</socketType>\n      <authentication>{auth}</authentication>\n      <username>{}</username>\n{extra}    </{tag}>\n",
            esc(&e.host),
            e.port,
            socket_type(e),
            esc(&username)
        )
    };
    for e in &offer.ends.imap {
        out.push_str(&server("incomingServer", "imap", e, offer.imap, ""));
    }
    for e in &offer.ends.pop {
        out.push_str(&server(
            "incomingServer",
            "pop3",
            e,
            offer.pop,
            "      <pop3>\n        <leaveMessagesOnServer>true</leaveMessagesOnServer>\n      </pop3>\n",
        ));
    }
    for e in &offer.ends.smtp {
        out.push_str(&server("outgoingServer", "smtp", e, offer.smtp, ""));
    }
    out.push_str("  </emailProvider>\n</clientConfig>\n");
    xml(out)
}

/// The address in a POX request: `<EMailAddress>…</EMailAddress>`.
pub fn pox_email(body: &str) -> Option<String> {
    let start = body.find("<EMailAddress>")? + "<EMailAddress>".len();
    let end = body[start..].find("</EMailAddress>")? + start;
    let email = body[start..end].trim();
    (!email.is_empty() && email.len() <= 254 && !email.contains('<')).then(|| email.to_string())
}

const POX_RESPONSE_NS: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006";
const POX_OUTLOOK_NS: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";

async fn autodiscover_pox_get() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST")],
        "Autodiscover requests are POSTed (MS-OXDSCLI)\n",
    )
        .into_response()
}

/// Outlook's POX autodiscover ([MS-OXDSCLI] §2.2.4): the IMAP, POP3 and SMTP
/// protocols of an "email" account.
async fn autodiscover_pox(
    State(web): State<Arc<Web>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> Response {
    // [MS-OXDSCLI] §2.2.4.2.1.5.1: an error answer is a 200 with an error code.
    let error = |code: u16, message: &str| {
        let out = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Autodiscover xmlns=\"{POX_RESPONSE_NS}\">\n  <Response>\n    <Error Time=\"00:00:00\" Id=\"1\">\n      <ErrorCode>{code}</ErrorCode>\n      <Message>{message}</Message>\n      <DebugData />\n    </Error>\n  </Response>\n</Autodiscover>\n"
        );
        (StatusCode::OK, xml(out)).into_response()
    };
    let Some(email) = pox_email(&body) else {
        return error(600, "Invalid Request");
    };
    let account = match local(&web, Some(&email), &headers).await {
        Ok((_, account)) => account,
        Err(NotOurs::Domain) => return error(500, "The e-mail address cannot be found."),
        Err(NotOurs::Busy) => return plain_refusal(NotOurs::Busy),
    };
    // POX has no OAuth: only the protocols that take passwords.
    let ends = offer(&web, remote.ip(), account.as_ref()).password_only();
    let mut protocols = String::new();
    let proto = |kind: &str, e: &Endpoint, extra: &str| {
        format!(
            "      <Protocol>\n        <Type>{kind}</Type>\n        <Server>{}</Server>\n        <Port>{}</Port>\n        <LoginName>{}</LoginName>\n        <DomainRequired>off</DomainRequired>\n        <SPA>off</SPA>\n        <SSL>on</SSL>\n        <Encryption>{}</Encryption>\n        <AuthRequired>on</AuthRequired>\n{extra}      </Protocol>\n",
            esc(&e.host),
            e.port,
            esc(&email),
            if e.implicit_tls { "SSL" } else { "TLS" }
        )
    };
    if let Some(e) = ends.imap.first() {
        protocols.push_str(&proto("IMAP", e, ""));
    }
    if let Some(e) = ends.pop.first() {
        protocols.push_str(&proto("POP3", e, ""));
    }
    if let Some(e) = ends.smtp.first() {
        protocols.push_str(&proto(
            "SMTP",
            e,
            "        <UsePOPAuth>on</UsePOPAuth>\n        <SMTPLast>off</SMTPLast>\n",
        ));
    }
    let out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Autodiscover xmlns=\"{POX_RESPONSE_NS}\">\n  <Response xmlns=\"{POX_OUTLOOK_NS}\">\n    <User>\n      <DisplayName>{e}</DisplayName>\n      <AutoDiscoverSMTPAddress>{e}</AutoDiscoverSMTPAddress>\n    </User>\n    <Account>\n      <AccountType>email</AccountType>\n      <Action>settings</Action>\n{protocols}    </Account>\n  </Response>\n</Autodiscover>\n",
        e = esc(&email)
    );
    xml(out)
}

async fn autodiscover_json_query(
    State(web): State<Arc<Web>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let email = address_param(&q, "email");
    let protocol = param(&q, "protocol").map(str::to_string);
    autodiscover_json(&web, remote, email, protocol, &headers).await
}

async fn autodiscover_json_path(
    State(web): State<Arc<Web>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(email): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let protocol = param(&q, "protocol").map(str::to_string);
    autodiscover_json(&web, remote, Some(email), protocol, &headers).await
}

/// Autodiscover v2: `Protocol=AutodiscoverV1` gives the POX URL; `imap`, `pop3`
/// and `smtp` give that protocol's server, port and encryption directly.
async fn autodiscover_json(
    web: &Web,
    remote: SocketAddr,
    email: Option<String>,
    protocol: Option<String>,
    headers: &HeaderMap,
) -> Response {
    let json_error = |code: &str, message: &str| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"ErrorCode": code, "ErrorMessage": message})),
        )
            .into_response()
    };
    let Some(protocol) = protocol else {
        return json_error(
            "MandatoryParameterMissing",
            "A valid value must be provided for the query parameter 'Protocol'.",
        );
    };
    if email.as_deref().is_none_or(|e| !e.contains('@')) {
        return json_error(
            "MandatoryParameterMissing",
            "A valid email address must be provided.",
        );
    }
    let account = match local(web, email.as_deref(), headers).await {
        Ok((_, account)) => account,
        Err(NotOurs::Domain) => {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({"ErrorCode": "NotFound", "ErrorMessage": "This server does not serve mail for that domain."})),
            )
                .into_response();
        }
        Err(NotOurs::Busy) => return plain_refusal(NotOurs::Busy),
    };
    let ends = offer(web, remote.ip(), account.as_ref()).ends;
    let pick = |list: &[Endpoint], name: &str| -> Response {
        match list.first() {
            Some(e) => axum::Json(serde_json::json!({
                "Protocol": name,
                "Server": e.host,
                "Port": e.port,
                "Encryption": if e.implicit_tls { "SSL" } else { "STARTTLS" },
            }))
            .into_response(),
            None => json_error("InvalidProtocol", &format!("{name} is not offered")),
        }
    };
    match protocol.to_ascii_lowercase().as_str() {
        "autodiscoverv1" => {
            // The configured host name, never the Host header: a client
            // must not be sent wherever the request said.
            let base = web
                .https_base()
                .unwrap_or_else(|| format!("https://{}", web.hostname));
            axum::Json(serde_json::json!({
                "Protocol": "AutodiscoverV1",
                "Url": format!("{base}/autodiscover/autodiscover.xml"),
            }))
            .into_response()
        }
        "imap" => pick(&ends.imap, "imap"),
        "pop3" | "pop" => pick(&ends.pop, "pop3"),
        "smtp" => pick(&ends.smtp, "smtp"),
        _ => json_error(
            "InvalidProtocol",
            &format!(
                "The given protocol value '{protocol}' is invalid. Supported values are 'AutodiscoverV1', 'imap', 'pop3', 'smtp'."
            ),
        ),
    }
}

fn uuid() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode_upper(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// An Apple configuration profile with one mail account (IMAP, or POP3 with
/// `protocol=pop`): https://developer.apple.com/documentation/devicemanagement/mail
/// — UseSSL is always on: every endpoint is implicit TLS or STARTTLS, and Apple
/// Mail uses STARTTLS on the STARTTLS ports when it is set.
pub fn mobileconfig_for(ends: &Endpoints, email: &str, pop: bool) -> Option<String> {
    let (incoming, kind) = if pop {
        (ends.pop.first()?, "EmailTypePOP")
    } else {
        (ends.imap.first()?, "EmailTypeIMAP")
    };
    let outgoing = ends.smtp.first()?;
    let domain = email.rsplit_once('@').map_or(email, |(_, d)| d);
    let reverse: String = domain.split('.').rev().collect::<Vec<_>>().join(".");
    let e = esc(email);
    Some(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>PayloadContent</key>
  <array>
    <dict>
      <key>EmailAccountDescription</key><string>{e}</string>
      <key>EmailAccountName</key><string>{e}</string>
      <key>EmailAccountType</key><string>{kind}</string>
      <key>EmailAddress</key><string>{e}</string>
      <key>IncomingMailServerAuthentication</key><string>EmailAuthPassword</string>
      <key>IncomingMailServerHostName</key><string>{ih}</string>
      <key>IncomingMailServerPortNumber</key><integer>{ip}</integer>
      <key>IncomingMailServerUseSSL</key><true/>
      <key>IncomingMailServerUsername</key><string>{e}</string>
      <key>OutgoingMailServerAuthentication</key><string>EmailAuthPassword</string>
      <key>OutgoingMailServerHostName</key><string>{oh}</string>
      <key>OutgoingMailServerPortNumber</key><integer>{op}</integer>
      <key>OutgoingMailServerUseSSL</key><true/>
      <key>OutgoingMailServerUsername</key><string>{e}</string>
      <key>OutgoingPasswordSameAsIncomingPassword</key><true/>
      <key>PayloadDescription</key><string>Mail account {e}</string>
      <key>PayloadDisplayName</key><string>{e}</string>
      <key>PayloadIdentifier</key><string>{rev}.casella.mail.account</string>
      <key>PayloadType</key><string>com.apple.mail.managed</string>
      <key>PayloadUUID</key><string>{u1}</string>
      <key>PayloadVersion</key><integer>1</integer>
    </dict>
  </array>
  <key>PayloadDescription</key><string>Sets up {e} in Mail</string>
  <key>PayloadDisplayName</key><string>{d} mail</string>
  <key>PayloadIdentifier</key><string>{rev}.casella.mail</string>
  <key>PayloadRemovalDisallowed</key><false/>
  <key>PayloadType</key><string>Configuration</string>
  <key>PayloadUUID</key><string>{u2}</string>
  <key>PayloadVersion</key><integer>1</integer>
</dict>
</plist>
"#,
        ih = esc(&incoming.host),
        ip = incoming.port,
        oh = esc(&outgoing.host),
        op = outgoing.port,
        rev = esc(&reverse),
        d = esc(domain),
        u1 = uuid(),
        u2 = uuid(),
    ))
}

async fn mobileconfig(
    State(web): State<Arc<Web>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(email) = address_param(&q, "emailaddress").filter(|e| e.contains('@')) else {
        return (
            StatusCode::BAD_REQUEST,
            "give ?emailaddress=you@example.org\n",
        )
            .into_response();
    };
    let account = match local(&web, Some(&email), &headers).await {
        Ok((_, account)) => account,
        Err(why) => return plain_refusal(why),
    };
    let pop = param(&q, "protocol").is_some_and(|p| p.eq_ignore_ascii_case("pop"));
    // A profile carries a password login only (EmailAuthPassword).
    let ends = offer(&web, remote.ip(), account.as_ref()).password_only();
    match mobileconfig_for(&ends, &email, pop) {
        Some(profile) => (
            [
                (header::CONTENT_TYPE, "application/x-apple-aspen-config"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"mail.mobileconfig\"",
                ),
            ],
            profile,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no connection settings are configured for this service\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pox_request_address() {
        let body = r#"<?xml version="1.0"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>a@example.org</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>"#;
        assert_eq!(pox_email(body).as_deref(), Some("a@example.org"));
        assert_eq!(pox_email("<EMailAddress></EMailAddress>"), None);
        assert_eq!(pox_email("nothing"), None);
    }

    #[test]
    fn uuids_are_version_4() {
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
