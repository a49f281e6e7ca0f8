//! Client autoconfiguration, all from the same connection settings as the users'
//! page: Thunderbird autoconfig (config-v1.1.xml), Outlook autodiscover (the POX
//! protocol of [MS-OXDSCLI] and the v2 JSON endpoint), and an Apple
//! configuration profile (.mobileconfig).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::RngCore;

use crate::html::esc;
use crate::{Endpoint, Endpoints, Web};

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

/// The mail domain: from the address asked about, else the Host header (less an
/// `autoconfig.` / `autodiscover.` prefix), else our host name.
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
    let email = param(&q, "emailaddress");
    let domain = domain(email, &headers, &web);
    let ends = web.endpoints_for(remote.ip());
    let username = email.map_or("%EMAILADDRESS%".to_string(), |e| e.trim().to_string());
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n",
    );
    out.push_str(&format!(
        "  <emailProvider id=\"{d}\">\n    <domain>{d}</domain>\n    <displayName>{d} mail</displayName>\n    <displayShortName>{d}</displayShortName>\n",
        d = esc(&domain)
    ));
    let server = |tag: &str, kind: &str, e: &Endpoint, extra: &str| {
        format!(
            "    <{tag} type=\"{kind}\">\n      <hostname>{}</hostname>\n      <port>{}</port>\n      <socketType>{}</socketType>\n      <authentication>password-cleartext</authentication>\n      <username>{}</username>\n{extra}    </{tag}>\n",
            esc(&e.host),
            e.port,
            socket_type(e),
            esc(&username)
        )
    };
    for e in &ends.imap {
        out.push_str(&server("incomingServer", "imap", e, ""));
    }
    for e in &ends.pop {
        out.push_str(&server(
            "incomingServer",
            "pop3",
            e,
            "      <pop3>\n        <leaveMessagesOnServer>true</leaveMessagesOnServer>\n      </pop3>\n",
        ));
    }
    for e in &ends.smtp {
        out.push_str(&server("outgoingServer", "smtp", e, ""));
    }
    out.push_str("  </emailProvider>\n</clientConfig>\n");
    xml(out)
}

/// The address in a POX request: `<EMailAddress>…</EMailAddress>`.
fn pox_email(body: &str) -> Option<String> {
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
    body: String,
) -> Response {
    let Some(email) = pox_email(&body) else {
        let out = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Autodiscover xmlns=\"{POX_RESPONSE_NS}\">\n  <Response>\n    <Error Time=\"00:00:00\" Id=\"1\">\n      <ErrorCode>600</ErrorCode>\n      <Message>Invalid Request</Message>\n      <DebugData />\n    </Error>\n  </Response>\n</Autodiscover>\n"
        );
        return (StatusCode::OK, xml(out)).into_response();
    };
    let ends = web.endpoints_for(remote.ip());
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
    let email = param(&q, "email").map(str::to_string);
    let protocol = param(&q, "protocol").map(str::to_string);
    autodiscover_json(&web, remote, email, protocol, &headers)
}

async fn autodiscover_json_path(
    State(web): State<Arc<Web>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(email): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let protocol = param(&q, "protocol").map(str::to_string);
    autodiscover_json(&web, remote, Some(email), protocol, &headers)
}

/// Autodiscover v2: `Protocol=AutodiscoverV1` gives the POX URL; `imap`, `pop3`
/// and `smtp` give that protocol's server, port and encryption directly.
fn autodiscover_json(
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
    let ends = web.endpoints_for(remote.ip());
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
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or(&web.hostname);
            axum::Json(serde_json::json!({
                "Protocol": "AutodiscoverV1",
                "Url": format!("https://{host}/autodiscover/autodiscover.xml"),
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
) -> Response {
    let Some(email) = param(&q, "emailaddress").filter(|e| e.contains('@')) else {
        return (
            StatusCode::BAD_REQUEST,
            "give ?emailaddress=you@example.org\n",
        )
            .into_response();
    };
    let pop = param(&q, "protocol").is_some_and(|p| p.eq_ignore_ascii_case("pop"));
    match mobileconfig_for(&web.endpoints_for(remote.ip()), email, pop) {
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
