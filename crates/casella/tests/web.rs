//! The http listener: the admin API driven with curl, client autoconfiguration
//! read with Python's urllib/xml/plistlib the way mail programs read it, and the
//! users' pages (sign in, CSRF, POP options, app passwords) driven with curl's
//! cookie jar. The browser tests are in tests/browser.rs.

use std::path::Path;

use casella_testkit::clients::{curl, python};
use casella_testkit::{LineClient, TestServer};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "alice@example.org";
const PASS: &str = "alice-pw";

fn server() -> TestServer {
    let s = TestServer::builder(BIN)
        .protocols(&["http", "https", "pop3s", "imaps", "submission"])
        .config("hostname = \"mail.test\"\n[pop3]\nauth-failure-delay-ms = 0\n[imap]\nauth-failure-delay-ms = 0\n[submission]\nauth-failure-delay-ms = 0\n")
        .start();
    s.add_account(USER, PASS);
    s
}

fn base(s: &TestServer) -> String {
    format!("http://{}", s.addr("http"))
}

fn token(s: &TestServer) -> String {
    let out = s.cli(&["admin", "token", "create", "--name", "tests"], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// curl with the admin token; returns (status, body).
fn api(
    s: &TestServer,
    tmp: &Path,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let url = format!("{}{path}", base(s));
    let auth = format!("Authorization: Bearer {token}");
    let mut args = vec!["-X", method, "-H", &auth, "-w", "\n%{http_code}"];
    if let Some(b) = body {
        args.extend_from_slice(&["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    args.push(&url);
    let run = curl(&args, tmp).success();
    let out = run.out();
    let (body, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
    (code.trim().parse().expect("status code"), body.to_string())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn admin_api_needs_a_token_and_manages_accounts_and_settings() {
    let s = server();
    let tmp = tempfile::tempdir().unwrap();
    let (code, body) = api(
        &s,
        tmp.path(),
        "casella_admin_wrong",
        "GET",
        "/api/admin/accounts",
        None,
    );
    assert_eq!(code, 401, "{body}");
    let t = token(&s);
    let (code, body) = api(&s, tmp.path(), &t, "GET", "/api/admin/accounts", None);
    assert_eq!(code, 200);
    assert_eq!(json(&body)[0]["address"], USER);

    let (code, body) = api(
        &s,
        tmp.path(),
        &t,
        "POST",
        "/api/admin/accounts",
        Some(r#"{"address":"Bob@Example.org","password":"bob-pw-1"}"#),
    );
    assert_eq!(code, 201, "{body}");
    let (code, _) = api(
        &s,
        tmp.path(),
        &t,
        "POST",
        "/api/admin/accounts",
        Some(r#"{"address":"bob@example.org","password":"bob-pw-2"}"#),
    );
    assert_eq!(code, 409);
    let (code, body) = api(
        &s,
        tmp.path(),
        &t,
        "POST",
        "/api/admin/accounts",
        Some(r#"{"address":"not an address","password":"x"}"#),
    );
    assert_eq!(code, 400, "{body}");

    let (code, body) = api(
        &s,
        tmp.path(),
        &t,
        "PATCH",
        "/api/admin/accounts/bob@example.org",
        Some(r#"{"pop":"off","retrieval-format":"text-only"}"#),
    );
    assert_eq!(code, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["pop"], "off");
    assert_eq!(v["retrieval-format"], "text-only");
    let (code, _) = api(
        &s,
        tmp.path(),
        &t,
        "PATCH",
        "/api/admin/accounts/bob@example.org",
        Some(r#"{"imap":"maybe"}"#),
    );
    assert_eq!(code, 400);
    // The switch is what POP3 sees.
    let mut c = LineClient::connect_tls(s.addr("pop3s"), &s.cert_path());
    c.expect("+OK");
    c.send_line("USER bob@example.org");
    c.expect("+OK");
    c.send_line("PASS bob-pw-1");
    c.expect("-ERR [AUTH] Login failure or POP3 disabled");

    // Settings through the API, live.
    let (code, body) = api(&s, tmp.path(), &t, "GET", "/api/admin/settings/pop", None);
    assert_eq!(code, 200);
    assert_eq!(json(&body)["login-type"], "secure-login");
    let (code, body) = api(
        &s,
        tmp.path(),
        &t,
        "PATCH",
        "/api/admin/settings/pop",
        Some(r#"{"banner":"Welcome to Example POP","max-connections-per-user":4}"#),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["banner"], "Welcome to Example POP");
    let (code, body) = api(
        &s,
        tmp.path(),
        &t,
        "PATCH",
        "/api/admin/settings/pop",
        Some(r#"{"login-type":"sometimes"}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("login-type")
    );
    let (code, _) = api(
        &s,
        tmp.path(),
        &t,
        "GET",
        "/api/admin/settings/gopher",
        None,
    );
    assert_eq!(code, 404);
    let start = std::time::Instant::now();
    loop {
        let mut c = LineClient::connect_tls(s.addr("pop3s"), &s.cert_path());
        if c.line() == "+OK Welcome to Example POP" {
            break;
        }
        assert!(start.elapsed().as_secs() < 10, "the banner did not change");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    let (code, _) = api(
        &s,
        tmp.path(),
        &t,
        "DELETE",
        "/api/admin/accounts/bob@example.org",
        None,
    );
    assert_eq!(code, 204);
    let (code, _) = api(
        &s,
        tmp.path(),
        &t,
        "GET",
        "/api/admin/accounts/bob@example.org",
        None,
    );
    assert_eq!(code, 404);
    // A revoked token stops working.
    let out = s.cli(&["admin", "token", "revoke", "tests"], b"");
    assert!(out.status.success());
    let (code, _) = api(&s, tmp.path(), &t, "GET", "/api/admin/accounts", None);
    assert_eq!(code, 401);
}

#[test]
fn admin_api_lists_live_sessions_and_ends_one() {
    let s = server();
    let tmp = tempfile::tempdir().unwrap();
    let t = token(&s);
    let mut imap = LineClient::connect_tls(s.addr("imaps"), &s.cert_path());
    imap.expect("* OK");
    imap.send_line(&format!("a LOGIN {USER} {PASS}"));
    imap.expect_tagged("a OK");
    let (code, body) = api(&s, tmp.path(), &t, "GET", "/api/admin/sessions", None);
    assert_eq!(code, 200);
    let list = json(&body);
    let mine = list
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["user"] == USER && x["protocol"] == "imaps")
        .unwrap_or_else(|| panic!("session not listed: {list}"))
        .clone();
    assert!(mine["remote"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(mine["since"].as_u64().unwrap() > 1_700_000_000);
    let id = mine["id"].as_u64().unwrap();
    let (code, _) = api(
        &s,
        tmp.path(),
        &t,
        "DELETE",
        &format!("/api/admin/sessions/{id}"),
        None,
    );
    assert_eq!(code, 204);
    assert_eq!(
        imap.line(),
        "* BYE [UNAVAILABLE] Session ended by the administrator"
    );
    assert!(imap.is_closed());
    let (code, _) = api(
        &s,
        tmp.path(),
        &t,
        "DELETE",
        &format!("/api/admin/sessions/{id}"),
        None,
    );
    assert_eq!(code, 404);
}

#[test]
fn autoconfig_autodiscover_and_mobileconfig_come_from_the_connection_settings() {
    let s = server();
    for (proto, value) in [
        ("imap", "{mail.example.org:993:SSL}"),
        ("pop", "mail.example.org:995:ssl"),
        ("submission", "smtp.example.org:587:tls"),
    ] {
        let out = s.cli(
            &[
                "settings",
                proto,
                "set",
                &format!("external-connection-settings={value}"),
            ],
            b"",
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = python("autoconfig_check.py", &[&base(&s), USER], tmp.path()).success();
    let v: Value = serde_json::from_slice(&run.stdout).unwrap();

    for key in ["thunderbird_wellknown", "thunderbird_mail"] {
        let t = &v[key];
        assert_eq!(t["domain"], "example.org");
        let servers = t["servers"].as_array().unwrap();
        let find = |kind: &str| {
            servers
                .iter()
                .find(|x| x["type"] == kind)
                .unwrap_or_else(|| panic!("{kind} missing: {t}"))
        };
        let imap = find("imap");
        assert_eq!(imap["tag"], "incomingServer");
        assert_eq!(imap["hostname"], "mail.example.org");
        assert_eq!(imap["port"], 993);
        assert_eq!(imap["socketType"], "SSL");
        assert_eq!(imap["username"], USER);
        assert_eq!(find("pop3")["port"], 995);
        let smtp = find("smtp");
        assert_eq!(smtp["tag"], "outgoingServer");
        assert_eq!(smtp["hostname"], "smtp.example.org");
        assert_eq!(smtp["socketType"], "STARTTLS");
        assert_eq!(smtp["authentication"], "password-cleartext");
    }

    let pox = &v["pox"];
    assert_eq!(pox["AccountType"], "email");
    assert_eq!(pox["Action"], "settings");
    let protocols = pox["protocols"].as_array().unwrap();
    let p = |kind: &str| {
        protocols
            .iter()
            .find(|x| x["Type"] == kind)
            .unwrap_or_else(|| panic!("{kind}: {pox}"))
    };
    assert_eq!(p("IMAP")["Server"], "mail.example.org");
    assert_eq!(p("IMAP")["Port"], "993");
    assert_eq!(p("IMAP")["SSL"], "on");
    assert_eq!(p("IMAP")["Encryption"], "SSL");
    assert_eq!(p("IMAP")["LoginName"], USER);
    assert_eq!(p("POP3")["Port"], "995");
    assert_eq!(p("SMTP")["Server"], "smtp.example.org");
    assert_eq!(p("SMTP")["Port"], "587");
    assert_eq!(p("SMTP")["Encryption"], "TLS");
    assert_eq!(p("SMTP")["AuthRequired"], "on");

    let j = &v["json"];
    assert_eq!(j["v1url"]["status"], 200);
    assert_eq!(j["v1url"]["body"]["Protocol"], "AutodiscoverV1");
    assert!(
        j["v1url"]["body"]["Url"]
            .as_str()
            .unwrap()
            .ends_with("/autodiscover/autodiscover.xml")
    );
    assert_eq!(
        j["imap"]["body"],
        serde_json::json!({"Protocol": "imap", "Server": "mail.example.org", "Port": 993, "Encryption": "SSL"})
    );
    assert_eq!(j["smtp"]["body"]["Encryption"], "STARTTLS");
    assert_eq!(j["bad"]["status"], 400);
    assert_eq!(j["bad"]["body"]["ErrorCode"], "InvalidProtocol");

    let m = &v["mobileconfig"];
    assert_eq!(m["PayloadType"], "Configuration");
    let mail = &m["mail"];
    assert_eq!(mail["PayloadType"], "com.apple.mail.managed");
    assert_eq!(mail["EmailAccountType"], "EmailTypeIMAP");
    assert_eq!(mail["EmailAddress"], USER);
    assert_eq!(mail["IncomingMailServerHostName"], "mail.example.org");
    assert_eq!(mail["IncomingMailServerPortNumber"], 993);
    assert_eq!(mail["IncomingMailServerUseSSL"], true);
    assert_eq!(mail["OutgoingMailServerHostName"], "smtp.example.org");
    assert_eq!(mail["OutgoingMailServerPortNumber"], 587);
}

/// curl with a cookie jar, as a browser without JavaScript; returns the body.
fn browse(
    s: &TestServer,
    tmp: &Path,
    method: &str,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, String) {
    let jar = tmp.join("cookies.txt").display().to_string();
    let url = format!("https://127.0.0.1:{}{path}", s.port("https"));
    let cert = s.cert_path().display().to_string();
    let mut args: Vec<String> = vec![
        "-X".into(),
        method.into(),
        "-b".into(),
        jar.clone(),
        "-c".into(),
        jar,
        "--cacert".into(),
        cert,
        "-w".into(),
        "\n%{http_code}".into(),
        // The certificate is for mail.test; connect to our loopback port.
        "--resolve".into(),
        format!("mail.test:{}:127.0.0.1", s.port("https")),
    ];
    let url = url.replace("127.0.0.1", "mail.test");
    for (k, v) in form {
        args.push("--data-urlencode".into());
        args.push(format!("{k}={v}"));
    }
    args.push(url);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = curl(&refs, tmp).success();
    let out = run.out();
    let (body, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
    (code.trim().parse().unwrap(), body.to_string())
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..at + page[at..].find('"').unwrap()].to_string()
}

#[test]
fn user_pages_over_https_sign_in_save_pop_options_and_make_app_passwords() {
    let s = server();
    let tmp = tempfile::tempdir().unwrap();
    let (code, page) = browse(&s, tmp.path(), "GET", "/settings", &[]);
    assert_eq!(code, 303, "not signed in: redirected to /login: {page}");
    let (code, page) = browse(
        &s,
        tmp.path(),
        "POST",
        "/login",
        &[("address", USER), ("password", "wrong")],
    );
    assert_eq!(code, 401);
    assert!(page.contains("not correct"), "{page}");
    let (code, _) = browse(
        &s,
        tmp.path(),
        "POST",
        "/login",
        &[("address", USER), ("password", PASS)],
    );
    assert_eq!(code, 303);
    let cookies = std::fs::read_to_string(tmp.path().join("cookies.txt")).unwrap();
    assert!(
        cookies.contains("#HttpOnly_mail.test") && cookies.contains("casella_session"),
        "{cookies}"
    );

    let (code, page) = browse(&s, tmp.path(), "GET", "/settings", &[]);
    assert_eq!(code, 200);
    // Without external connection settings: this server's name and its ports.
    assert!(
        page.contains("<code id=\"imap-server-0\">mail.test</code>"),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "<code id=\"imap-port-0\">{}</code>",
            s.port("imaps")
        )),
        "{page}"
    );
    assert!(
        page.contains("<td id=\"imap-encryption-0\">SSL/TLS</td>"),
        "{page}"
    );
    assert!(
        page.contains("<td id=\"smtp-encryption-0\">STARTTLS</td>"),
        "{page}"
    );
    assert!(page.contains("leave a copy of messages on the server"));

    // POP options: a form without the CSRF token is refused and changes nothing.
    let (code, _) = browse(
        &s,
        tmp.path(),
        "POST",
        "/settings/pop",
        &[("folder", "INBOX"), ("mark_read", "on")],
    );
    assert_eq!(code, 403);
    let (_, page) = browse(&s, tmp.path(), "GET", "/settings/pop", &[]);
    let csrf = csrf_of(&page);
    let (code, page) = browse(
        &s,
        tmp.path(),
        "POST",
        "/settings/pop",
        &[
            ("csrf", &csrf),
            ("folder", "INBOX"),
            ("folder", "Junk"),
            ("mark_read", "on"),
            ("dele", "hide-from-pop"),
        ],
    );
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("id=\"saved\""));
    let out = s.cli(&["account", "show", USER], b"");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("pop-folders: INBOX, Junk"), "{shown}");
    assert!(
        shown.contains("pop-mark-read: on") && shown.contains("pop-dele: hide-from-pop"),
        "{shown}"
    );

    // An app password limited to SMTP: works for submission, not for IMAP.
    let (code, page) = browse(
        &s,
        tmp.path(),
        "POST",
        "/security/app-passwords",
        &[
            ("csrf", &csrf),
            ("name", "Phone"),
            ("protocol", "submission"),
        ],
    );
    assert_eq!(code, 200, "{page}");
    let at = page.find("id=\"new-app-password\">").unwrap() + 22;
    let app_pw = page[at..at + 19].to_string();
    let run = python(
        "submit_check.py",
        &[
            "send",
            "--port",
            &s.port("submission").to_string(),
            "--cert",
            &s.cert_path().display().to_string(),
            "--tls",
            "starttls",
            "--user",
            USER,
            "--password",
            &app_pw,
            "--from",
            USER,
            "--to",
            USER,
            "--subject",
            "sent with an app password",
        ],
        tmp.path(),
    );
    let submit_ok = run.status.success();
    let mut imap = LineClient::connect_tls(s.addr("imaps"), &s.cert_path());
    imap.expect("* OK");
    imap.send_line(&format!("a LOGIN {USER} \"{app_pw}\""));
    let refused = imap.expect_tagged("a ");
    assert!(refused.starts_with("a NO"), "{refused}");
    assert!(submit_ok, "{}", run.dump());

    // The security page lists the logins, the failed one included (the history
    // is written within a second).
    let start = std::time::Instant::now();
    let page = loop {
        let (_, page) = browse(&s, tmp.path(), "GET", "/security", &[]);
        if page.contains("<td>Web</td>")
            && page.contains("Failed")
            && page.contains("<td>SMTP</td>")
        {
            break page;
        }
        assert!(start.elapsed().as_secs() < 10, "{page}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(page.contains("<td>Phone</td>"));

    let (code, _) = browse(&s, tmp.path(), "POST", "/logout", &[]);
    assert_eq!(code, 303);
    let (code, _) = browse(&s, tmp.path(), "GET", "/settings", &[]);
    assert_eq!(code, 303, "signed out");
}

#[test]
fn admin_pages_are_for_administrators_and_switch_accounts_off() {
    let s = server();
    let out = s.cli(
        &[
            "account",
            "add",
            "admin@example.org",
            "--admin",
            "--password-stdin",
        ],
        b"admin-pw\n",
    );
    assert!(out.status.success());
    let user = tempfile::tempdir().unwrap();
    browse(
        &s,
        user.path(),
        "POST",
        "/login",
        &[("address", USER), ("password", PASS)],
    );
    let (code, _) = browse(&s, user.path(), "GET", "/admin", &[]);
    assert_eq!(code, 403, "not for users");

    let tmp = tempfile::tempdir().unwrap();
    let (code, _) = browse(
        &s,
        tmp.path(),
        "POST",
        "/login",
        &[("address", "admin@example.org"), ("password", "admin-pw")],
    );
    assert_eq!(code, 303);
    let (code, page) = browse(&s, tmp.path(), "GET", "/admin", &[]);
    assert_eq!(code, 200);
    assert!(
        page.contains(USER) && page.contains("(administrator)"),
        "{page}"
    );
    let csrf = csrf_of(&page);
    let (_, page) = browse(
        &s,
        tmp.path(),
        "POST",
        "/admin/accounts",
        &[
            ("csrf", &csrf),
            ("address", "carol@example.org"),
            ("password", "carol-pw"),
        ],
    );
    assert!(page.contains("Created carol@example.org."), "{page}");
    // Everything unticked: the account is disabled, every login refused.
    let (_, page) = browse(
        &s,
        tmp.path(),
        "POST",
        "/admin/accounts/carol%40example.org",
        &[("csrf", &csrf)],
    );
    assert!(page.contains("Saved carol@example.org."), "{page}");
    let out = s.cli(&["account", "show", "carol@example.org"], b"");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("enabled: off") && shown.contains("imap: off"),
        "{shown}"
    );
    let carol = tempfile::tempdir().unwrap();
    let (code, page) = browse(
        &s,
        carol.path(),
        "POST",
        "/login",
        &[("address", "carol@example.org"), ("password", "carol-pw")],
    );
    assert_eq!(code, 401);
    assert!(page.contains("disabled"), "{page}");

    // Settings through the page, live.
    let (_, page) = browse(&s, tmp.path(), "GET", "/admin/settings/imap", &[]);
    assert!(page.contains("id=\"s-login-type\""), "{page}");
    let (_, page) = browse(
        &s,
        tmp.path(),
        "POST",
        "/admin/settings/imap",
        &[("csrf", &csrf), ("banner", "Example IMAP")],
    );
    assert!(page.contains("Saved banner."), "{page}");
    let out = s.cli(&["settings", "imap", "get", "banner"], b"");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Example IMAP");

    // Live sessions, and ending one from the page.
    let mut pop = LineClient::connect_tls(s.addr("pop3s"), &s.cert_path());
    pop.expect("+OK");
    pop.send_line(&format!("USER {USER}"));
    pop.expect("+OK");
    pop.send_line(&format!("PASS {PASS}"));
    pop.expect("+OK");
    let (_, page) = browse(&s, tmp.path(), "GET", "/admin/sessions", &[]);
    let row = page
        .split("<tr>")
        .find(|r| r.contains(USER) && r.contains("pop3s"))
        .unwrap_or_else(|| panic!("{page}"));
    let at = row.find("/admin/sessions/").unwrap() + 16;
    let id = &row[at..at + row[at..].find('/').unwrap()];
    let (_, page) = browse(
        &s,
        tmp.path(),
        "POST",
        &format!("/admin/sessions/{id}/end"),
        &[("csrf", &csrf)],
    );
    assert!(page.contains("Session ended."), "{page}");
    assert_eq!(
        pop.line(),
        "-ERR [SYS/PERM] Session ended by the administrator"
    );
}

#[test]
fn every_response_carries_the_security_headers() {
    let s = server();
    let tmp = tempfile::tempdir().unwrap();
    for path in ["/login", "/mail/config-v1.1.xml", "/api/admin/accounts"] {
        let url = format!("{}{path}", base(&s));
        let run = curl(&["-D", "-", "-o", "/dev/null", &url], tmp.path()).success();
        let headers = run.out().to_ascii_lowercase();
        for h in [
            "x-frame-options: deny",
            "content-security-policy: frame-ancestors 'none'",
            "x-content-type-options: nosniff",
            "referrer-policy: same-origin",
            "cache-control: no-store",
        ] {
            assert!(headers.contains(h), "{path}: {h} missing in\n{headers}");
        }
    }
}

#[test]
fn healthz_answers_ok_while_the_store_answers() {
    let s = server();
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("{}/healthz", base(&s));
    let run = curl(&["-i", &url], tmp.path()).success();
    let out = run.out();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("text/plain"), "{out}");
    assert!(out.trim_end().ends_with("ok"), "{out}");
}
