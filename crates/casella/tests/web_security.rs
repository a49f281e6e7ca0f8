//! The web's security (issue 16, findings 4–8 and the web side of 10), against
//! the real server, driven with curl (a cookie jar per "browser"), the
//! exact-bytes line client for IMAP/POP3/submission sessions, and Python's
//! urllib for autoconfig. The same flows in Chromium: tests/browser.rs.
//!
//! - web sessions follow the account: removed, disabled, re-enabled, given a
//!   new password, signed out everywhere — refused at the next request;
//! - "sign out of all devices" (CLI, user page, admin page, admin API) ends
//!   IMAP IDLE, POP3 and submission sessions too;
//! - change password (current one required) and the administrator's reset;
//! - password rules everywhere a password is set;
//! - plain HTTP: no password forms except from `trusted-networks`, HSTS over
//!   HTTPS, admin pages only from `admin-networks`;
//! - URLs from the configured host name only; addresses percent-encoded;
//!   remove behind a confirmation page;
//! - autoconfig/autodiscover per account and for local domains only.

use std::time::{Duration, Instant};

use casella_testkit::clients::{curl, python};
use casella_testkit::{LineClient, TestServer};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_casella");
const USER: &str = "alice@example.org";
const PASS: &str = "alice-pw-1";
const ADMIN: &str = "admin@example.org";
const ADMIN_PASS: &str = "admin-pw-1";

const QUIET: &str = "hostname = \"mail.test\"\n[pop3]\nauth-failure-delay-ms = 0\n[imap]\nauth-failure-delay-ms = 0\n[submission]\nauth-failure-delay-ms = 0\n";

fn server_with(extra: &str) -> TestServer {
    let s = TestServer::builder(BIN)
        .protocols(&["http", "https", "pop3s", "imaps", "submissions"])
        .config(&format!("{QUIET}{extra}"))
        .start();
    s.add_account(USER, PASS);
    let out = s.cli(
        &["account", "add", ADMIN, "--admin", "--password-stdin"],
        format!("{ADMIN_PASS}\n").as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s
}

fn server() -> TestServer {
    server_with("")
}

/// One browser: its own cookie jar, over HTTPS (to `mail.test`, as the
/// certificate says) or plain HTTP, from 127.0.0.1 or another local address.
struct Browser {
    jar: tempfile::TempDir,
    https: bool,
    from: &'static str,
}

impl Browser {
    fn https() -> Browser {
        Browser {
            jar: tempfile::tempdir().unwrap(),
            https: true,
            from: "127.0.0.1",
        }
    }

    fn http_from(from: &'static str) -> Browser {
        Browser {
            jar: tempfile::tempdir().unwrap(),
            https: false,
            from,
        }
    }

    fn https_from(from: &'static str) -> Browser {
        Browser {
            from,
            ..Browser::https()
        }
    }
}

/// What came back: status, headers (lower-case), body.
struct Answer {
    code: u16,
    headers: String,
    body: String,
}

fn request(
    s: &TestServer,
    b: &Browser,
    method: &str,
    path: &str,
    form: &[(&str, &str)],
    extra: &[&str],
) -> Answer {
    let jar = b.jar.path().join("cookies.txt").display().to_string();
    let (url, mut args) = if b.https {
        let port = s.port("https");
        (
            format!("https://mail.test:{port}{path}"),
            vec![
                "--cacert".to_string(),
                s.cert_path().display().to_string(),
                "--resolve".to_string(),
                format!("mail.test:{port}:127.0.0.1"),
            ],
        )
    } else {
        (format!("http://{}{path}", s.addr("http")), Vec::new())
    };
    args.extend(
        [
            "-X",
            method,
            "-b",
            &jar,
            "-c",
            &jar,
            "--interface",
            b.from,
            "-D",
            "-",
            "-w",
            "\n%{http_code}",
        ]
        .iter()
        .map(|x| x.to_string()),
    );
    for x in extra {
        args.push(x.to_string());
    }
    for (k, v) in form {
        args.push("--data-urlencode".into());
        args.push(format!("{k}={v}"));
    }
    args.push(url);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = curl(&refs, b.jar.path()).success();
    let out = run.out();
    let (rest, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
    let (headers, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    Answer {
        code: code.trim().parse().expect("status code"),
        headers: headers.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

fn get(s: &TestServer, b: &Browser, path: &str) -> Answer {
    request(s, b, "GET", path, &[], &[])
}

fn post(s: &TestServer, b: &Browser, path: &str, form: &[(&str, &str)]) -> Answer {
    request(s, b, "POST", path, form, &[])
}

fn sign_in(s: &TestServer, b: &Browser, user: &str, password: &str) {
    let a = post(s, b, "/login", &[("address", user), ("password", password)]);
    assert_eq!(a.code, 303, "sign in as {user}: {}", a.body);
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..at + page[at..].find('"').unwrap()].to_string()
}

/// Whether the browser's session is still signed in (GET /settings).
fn signed_in(s: &TestServer, b: &Browser) -> bool {
    let a = get(s, b, "/settings");
    match a.code {
        200 => true,
        303 => {
            assert!(a.headers.contains("location: /login"), "{}", a.headers);
            false
        }
        other => panic!("GET /settings: {other}: {}", a.body),
    }
}

fn cli_ok(s: &TestServer, args: &[&str]) -> String {
    let out = s.cli(args, b"");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn admin_token(s: &TestServer) -> String {
    cli_ok(s, &["admin", "token", "create", "--name", "tests"])
        .trim()
        .to_string()
}

/// The admin API with a token over plain HTTP from 127.0.0.1: (status, body).
fn api(s: &TestServer, token: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("http://{}{path}", s.addr("http"));
    let auth = format!("Authorization: Bearer {token}");
    let mut args = vec!["-X", method, "-H", &auth, "-w", "\n%{http_code}"];
    if let Some(b) = body {
        args.extend_from_slice(&["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    args.push(&url);
    let out = curl(&args, tmp.path()).success().out();
    let (body, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
    (code.trim().parse().unwrap(), body.to_string())
}

fn imap_login(s: &TestServer, user: &str, password: &str) -> LineClient {
    let mut c = LineClient::connect_tls(s.addr("imaps"), &s.cert_path());
    c.expect("* OK");
    c.send_line(&format!("a LOGIN \"{user}\" \"{password}\""));
    c.expect_tagged("a OK");
    c
}

fn imap_idle(s: &TestServer) -> LineClient {
    let mut c = imap_login(s, USER, PASS);
    c.send_line("b SELECT INBOX");
    c.expect_tagged("b OK");
    c.send_line("c IDLE");
    c.expect("+ ");
    c
}

fn pop3_login(s: &TestServer) -> LineClient {
    let mut c = LineClient::connect_tls(s.addr("pop3s"), &s.cert_path());
    c.expect("+OK");
    c.send_line(&format!("USER {USER}"));
    c.expect("+OK");
    c.send_line(&format!("PASS {PASS}"));
    c.expect("+OK");
    c
}

fn submission_login(s: &TestServer) -> LineClient {
    use base64::Engine;
    let mut c = LineClient::connect_tls(s.addr("submissions"), &s.cert_path());
    c.expect("220 ");
    c.send_line("EHLO client.test");
    while c.line().starts_with("250-") {}
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{USER}\0{PASS}"));
    c.send_line(&format!("AUTH PLAIN {plain}"));
    c.expect("235 ");
    c
}

/// Reads lines until the server closes the connection; returns them.
fn lines_until_closed(c: &mut LineClient) -> Vec<String> {
    let mut lines = Vec::new();
    while let Some(l) = c.try_line() {
        lines.push(l);
        assert!(lines.len() < 20, "not closed: {lines:?}");
    }
    lines
}

#[test]
fn web_sessions_end_when_the_account_is_disabled_removed_or_given_a_new_password() {
    let s = server();
    let alice = Browser::https();
    sign_in(&s, &alice, USER, PASS);
    assert!(signed_in(&s, &alice));

    // enabled=off: refused at the next request, and switching the account on
    // again does not bring the session back.
    cli_ok(&s, &["account", "set", USER, "enabled=off"]);
    let a = get(&s, &alice, "/security");
    assert_eq!(a.code, 303, "disabled: {}", a.body);
    // A disabled account makes no app password with its old session.
    let a = post(
        &s,
        &alice,
        "/security/app-passwords",
        &[
            ("csrf", "whatever"),
            ("name", "Phone"),
            ("protocol", "imap"),
        ],
    );
    assert_eq!(a.code, 303);
    cli_ok(&s, &["account", "set", USER, "enabled=on"]);
    assert!(!signed_in(&s, &alice), "a new generation since");
    sign_in(&s, &alice, USER, PASS);
    assert!(signed_in(&s, &alice));

    // A new password from the CLI ends the sessions.
    let out = s.cli(
        &["account", "passwd", USER, "--password-stdin"],
        b"alice-new-pw\n",
    );
    assert!(out.status.success());
    assert!(!signed_in(&s, &alice));
    sign_in(&s, &alice, USER, "alice-new-pw");

    // An administrator whose account was removed keeps no rights: the next
    // request is refused, and no account is created.
    let admin = Browser::https();
    sign_in(&s, &admin, ADMIN, ADMIN_PASS);
    let page = get(&s, &admin, "/admin");
    assert_eq!(page.code, 200);
    let csrf = csrf_of(&page.body);
    cli_ok(&s, &["account", "remove", ADMIN]);
    let a = post(
        &s,
        &admin,
        "/admin/accounts",
        &[
            ("csrf", &csrf),
            ("address", "mallory@example.org"),
            ("password", "mallory-pw-1"),
        ],
    );
    assert_eq!(a.code, 303, "{}", a.body);
    assert!(!cli_ok(&s, &["account", "list"]).contains("mallory"));
    // Made again under the same address, it is another account: the old
    // session stays out.
    let out = s.cli(
        &["account", "add", ADMIN, "--admin", "--password-stdin"],
        format!("{ADMIN_PASS}\n").as_bytes(),
    );
    assert!(out.status.success());
    assert_eq!(get(&s, &admin, "/admin").code, 303);

    // Removing alice ends hers too.
    cli_ok(&s, &["account", "remove", USER]);
    assert!(!signed_in(&s, &alice));
}

#[test]
fn sign_out_everywhere_from_the_cli_ends_idle_pop3_submission_and_web_sessions() {
    let s = server();
    let web = Browser::https();
    sign_in(&s, &web, USER, PASS);
    let mut idle = imap_idle(&s);
    let mut pop = pop3_login(&s);
    let mut smtp = submission_login(&s);
    // Another account's session goes on.
    let mut other_user = {
        let out = s.cli(
            &["account", "add", "bob@example.org", "--password-stdin"],
            b"bob-pw-1\n",
        );
        assert!(out.status.success());
        imap_login(&s, "bob@example.org", "bob-pw-1")
    };

    let started = Instant::now();
    let out = cli_ok(&s, &["account", "signout", USER]);
    assert!(out.contains("signed out alice@example.org"), "{out}");
    // The CLI is another process: the server notices within its poll.
    let bye = lines_until_closed(&mut idle);
    assert!(
        bye.iter()
            .any(|l| l == "* BYE Signed out of all devices; log in again"),
        "IDLE: {bye:?}"
    );
    let took = started.elapsed();
    let pop_end = lines_until_closed(&mut pop);
    assert!(
        pop_end
            .iter()
            .any(|l| l == "-ERR [AUTH] Signed out of all devices; log in again"),
        "{pop_end:?}"
    );
    let smtp_end = lines_until_closed(&mut smtp);
    assert!(
        smtp_end
            .iter()
            .any(|l| l == "421 4.7.0 Signed out of all devices; log in again"),
        "{smtp_end:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    eprintln!("IDLE session ended {took:?} after `casella account signout`");
    assert!(!signed_in(&s, &web));

    other_user.send_line("z NOOP");
    other_user.expect_tagged("z OK");
    // The password still works: new sessions are not affected by the old
    // sign-out (mail programs sign in again; a lost device needs a new
    // password).
    std::thread::sleep(Duration::from_millis(2_500));
    let mut again = imap_login(&s, USER, PASS);
    std::thread::sleep(Duration::from_millis(1_500));
    again.send_line("y NOOP");
    again.expect_tagged("y OK");
    let out = s.cli(&["account", "signout", "nobody@example.org"], b"");
    assert!(!out.status.success());
}

#[test]
fn sign_out_everywhere_from_the_security_page_and_the_admin_api() {
    let s = server();
    let here = Browser::https();
    let phone = Browser::https();
    sign_in(&s, &here, USER, PASS);
    sign_in(&s, &phone, USER, PASS);
    let mut idle = imap_idle(&s);
    let page = get(&s, &here, "/security");
    assert!(
        page.body.contains("id=\"signout-everywhere\""),
        "{}",
        page.body
    );
    let csrf = csrf_of(&page.body);
    // Without the CSRF token: refused, nothing happens.
    let a = post(&s, &here, "/security/signout", &[("csrf", "forged")]);
    assert_eq!(a.code, 403);
    assert!(signed_in(&s, &phone));
    let a = post(&s, &here, "/security/signout", &[("csrf", &csrf)]);
    assert_eq!(a.code, 200, "{}", a.body);
    assert!(
        a.body
            .contains("1 open mail connection of your account was ended"),
        "{}",
        a.body
    );
    // In this process it is immediate.
    assert!(
        lines_until_closed(&mut idle)
            .iter()
            .any(|l| l.starts_with("* BYE"))
    );
    assert!(!signed_in(&s, &here));
    assert!(!signed_in(&s, &phone));

    // The admin API.
    let token = admin_token(&s);
    let mut pop = pop3_login(&s);
    let (code, body) = api(
        &s,
        &token,
        "POST",
        "/api/admin/accounts/alice@example.org/signout",
        None,
    );
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["sessions_ended"], 1, "{v}");
    assert!(
        lines_until_closed(&mut pop)
            .iter()
            .any(|l| l.starts_with("-ERR"))
    );
    let (code, _) = api(
        &s,
        &token,
        "POST",
        "/api/admin/accounts/nobody@example.org/signout",
        None,
    );
    assert_eq!(code, 404);

    // The admin page.
    let admin = Browser::https();
    sign_in(&s, &admin, ADMIN, ADMIN_PASS);
    sign_in(&s, &phone, USER, PASS);
    let page = get(&s, &admin, "/admin/accounts/alice%40example.org");
    assert_eq!(page.code, 200, "{}", page.body);
    let csrf = csrf_of(&page.body);
    let a = post(
        &s,
        &admin,
        "/admin/accounts/alice%40example.org/signout",
        &[("csrf", &csrf)],
    );
    assert!(a.body.contains("Signed out of all devices"), "{}", a.body);
    assert!(!signed_in(&s, &phone));
    assert!(signed_in(&s, &admin));
}

#[test]
fn change_password_needs_the_current_one_and_ends_the_other_sessions() {
    let s = server();
    let here = Browser::https();
    let other = Browser::https();
    sign_in(&s, &here, USER, PASS);
    sign_in(&s, &other, USER, PASS);
    let page = get(&s, &here, "/security");
    let csrf = csrf_of(&page.body);
    let change = |current: &str, new: &str, repeat: &str| {
        post(
            &s,
            &here,
            "/security/password",
            &[
                ("csrf", &csrf),
                ("current", current),
                ("new", new),
                ("repeat", repeat),
            ],
        )
    };
    let a = change("wrong-password", "alice-new-pw", "alice-new-pw");
    assert_eq!(a.code, 400);
    assert!(
        a.body.contains("current password is not correct"),
        "{}",
        a.body
    );
    let a = change(PASS, "short", "short");
    assert_eq!(a.code, 400);
    assert!(a.body.contains("at least 8 characters"), "{}", a.body);
    let a = change(PASS, "Alice@Example.org", "Alice@Example.org");
    assert_eq!(a.code, 400);
    assert!(a.body.contains("not be the email address"), "{}", a.body);
    let a = change(PASS, "alice-new-pw", "alice-new-pv");
    assert_eq!(a.code, 400);
    assert!(a.body.contains("differ"), "{}", a.body);
    // An app password (checked through the login pipeline) does not stand in
    // for the current password.
    let made = post(
        &s,
        &here,
        "/security/app-passwords",
        &[("csrf", &csrf), ("name", "Laptop"), ("protocol", "web")],
    );
    assert_eq!(made.code, 200, "{}", made.body);
    let at = made.body.find("id=\"new-app-password\">").expect("shown") + 22;
    let app_pw = made.body[at..at + 19].to_string();
    let a = change(&app_pw, "alice-new-pw", "alice-new-pw");
    assert_eq!(a.code, 400);
    assert!(a.body.contains("not an app password"), "{}", a.body);
    assert!(signed_in(&s, &other), "nothing changed yet");

    let a = change(PASS, "alice-new-pw", "alice-new-pw");
    assert_eq!(a.code, 200, "{}", a.body);
    assert!(a.body.contains("id=\"password-changed\""), "{}", a.body);
    assert!(signed_in(&s, &here), "this session goes on, with a new id");
    assert!(!signed_in(&s, &other), "the other session ended");
    // The new password is the password of every protocol now.
    let mut c = LineClient::connect_tls(s.addr("imaps"), &s.cert_path());
    c.expect("* OK");
    c.send_line(&format!("a LOGIN {USER} {PASS}"));
    c.expect_tagged("a NO");
    imap_login(&s, USER, "alice-new-pw");

    // The administrator's reset, on the account page; the rules apply.
    let admin = Browser::https();
    sign_in(&s, &admin, ADMIN, ADMIN_PASS);
    let page = get(&s, &admin, "/admin/accounts/alice%40example.org");
    let csrf = csrf_of(&page.body);
    let a = post(
        &s,
        &admin,
        "/admin/accounts/alice%40example.org/password",
        &[("csrf", &csrf), ("password", "alice")],
    );
    assert!(a.body.contains("at least 8 characters"), "{}", a.body);
    let a = post(
        &s,
        &admin,
        "/admin/accounts/alice%40example.org/password",
        &[("csrf", &csrf), ("password", "reset-by-admin")],
    );
    assert!(a.body.contains("The password was reset."), "{}", a.body);
    assert!(!signed_in(&s, &here), "a reset ends the user's sessions");
    imap_login(&s, USER, "reset-by-admin");
}

#[test]
fn password_rules_apply_to_the_cli_the_admin_api_and_the_admin_pages() {
    let s = server();
    for (address, pw, why) in [
        ("x@example.org", "x", "at least 8 characters"),
        ("x@example.org", "   ", "at least 8 characters"),
        (
            "longname@example.org",
            "LongName",
            "not be the email address",
        ),
        (
            "x2@example.org",
            "x2@example.org",
            "not be the email address",
        ),
    ] {
        let out = s.cli(
            &["account", "add", address, "--password-stdin"],
            format!("{pw}\n").as_bytes(),
        );
        assert!(!out.status.success(), "{address} {pw:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{err}");
    }
    let out = s.cli(&["account", "passwd", USER, "--password-stdin"], b"alice\n");
    assert!(!out.status.success());
    assert!(!cli_ok(&s, &["account", "list"]).contains("x@example.org"));

    let token = admin_token(&s);
    let (code, body) = api(
        &s,
        &token,
        "POST",
        "/api/admin/accounts",
        Some(r#"{"address":"bob@example.org","password":"pw"}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("at least 8 characters"), "{body}");
    let (code, body) = api(
        &s,
        &token,
        "PATCH",
        "/api/admin/accounts/alice@example.org",
        Some(r#"{"password":"ALICE"}"#),
    );
    assert_eq!(code, 400, "{body}");
    let (code, body) = api(
        &s,
        &token,
        "PATCH",
        "/api/admin/accounts/alice@example.org",
        Some(r#"{"password":"another-good-one"}"#),
    );
    assert_eq!(code, 200, "{body}");
    imap_login(&s, USER, "another-good-one");

    let admin = Browser::https();
    sign_in(&s, &admin, ADMIN, ADMIN_PASS);
    let csrf = csrf_of(&get(&s, &admin, "/admin").body);
    let a = post(
        &s,
        &admin,
        "/admin/accounts",
        &[
            ("csrf", &csrf),
            ("address", "carol@example.org"),
            ("password", "carol"),
        ],
    );
    assert!(a.body.contains("at least 8 characters"), "{}", a.body);
    assert!(!cli_ok(&s, &["account", "list"]).contains("carol"));
}

#[test]
fn plain_http_takes_no_passwords_from_untrusted_addresses_and_https_sends_hsts() {
    // 127.0.0.2 and .3 are other loopback addresses; only 127.0.0.1 is
    // trusted here, and only it and .3 may use the admin pages and API.
    let s = server_with(
        "[web]\ntrusted-networks = [\"127.0.0.1/32\"]\nadmin-networks = [\"127.0.0.1/32\", \"127.0.0.3/32\"]\n",
    );
    let outside = Browser::http_from("127.0.0.2");
    let https_login = format!("https://mail.test:{}/login", s.port("https"));
    let a = get(&s, &outside, "/login");
    assert_eq!(a.code, 403);
    assert!(
        !a.body.contains("type=\"password\""),
        "no password form: {}",
        a.body
    );
    assert!(a.body.contains(&https_login), "{}", a.body);
    // A password sent anyway is not even checked: no login is recorded.
    let a = post(
        &s,
        &outside,
        "/login",
        &[("address", USER), ("password", PASS)],
    );
    assert_eq!(a.code, 403);
    assert!(a.body.contains(&https_login));
    assert!(!a.headers.contains("set-cookie"), "{}", a.headers);
    assert!(!a.headers.contains("strict-transport-security"));
    // Autoconfig still answers over plain HTTP (Thunderbird asks there).
    let a = get(
        &s,
        &outside,
        "/mail/config-v1.1.xml?emailaddress=alice%40example.org",
    );
    assert_eq!(a.code, 200);

    // From the trusted address plain HTTP works.
    let inside = Browser::http_from("127.0.0.1");
    assert_eq!(get(&s, &inside, "/login").code, 200);
    sign_in(&s, &inside, USER, PASS);
    assert!(signed_in(&s, &inside));

    // Over HTTPS from anywhere, with HSTS.
    let secure = Browser::https_from("127.0.0.2");
    let a = get(&s, &secure, "/login");
    assert_eq!(a.code, 200);
    assert!(a.body.contains("type=\"password\""));
    assert!(
        a.headers
            .contains("strict-transport-security: max-age=31536000"),
        "{}",
        a.headers
    );
    sign_in(&s, &secure, ADMIN, ADMIN_PASS);
    assert!(signed_in(&s, &secure));
    // ... but not the admin pages, from outside admin-networks.
    let a = get(&s, &secure, "/admin");
    assert_eq!(a.code, 403);
    assert!(a.body.contains("not open to your network"), "{}", a.body);
    let admin = Browser::https();
    sign_in(&s, &admin, ADMIN, ADMIN_PASS);
    assert_eq!(get(&s, &admin, "/admin").code, 200);
    // The admin API likewise.
    let token = admin_token(&s);
    let auth = format!("Authorization: Bearer {token}");
    let a = request(
        &s,
        &outside,
        "GET",
        "/api/admin/accounts",
        &[],
        &["-H", &auth],
    );
    assert_eq!(a.code, 403, "{}", a.body);
    assert!(a.body.contains("admin-networks"), "{}", a.body);
    // From an admin network, but untrusted: the token only over HTTPS.
    let api_from = |b: &Browser| request(&s, b, "GET", "/api/admin/accounts", &[], &["-H", &auth]);
    let a = api_from(&Browser::http_from("127.0.0.3"));
    assert_eq!(a.code, 403, "{}", a.body);
    assert!(a.body.contains("use HTTPS"), "{}", a.body);
    let a = api_from(&Browser::https_from("127.0.0.3"));
    assert_eq!(a.code, 200, "{}", a.body);
    let (code, _) = api(&s, &token, "GET", "/api/admin/accounts", None);
    assert_eq!(code, 200);
}

#[test]
fn urls_come_from_the_configured_host_name_not_the_host_header() {
    let s = server();
    let b = Browser::http_from("127.0.0.1");
    let a = request(
        &s,
        &b,
        "GET",
        "/autodiscover/autodiscover.json?Email=alice%40example.org&Protocol=AutodiscoverV1",
        &[],
        &["-H", "Host: evil.example"],
    );
    assert_eq!(a.code, 200, "{}", a.body);
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(
        v["Url"],
        format!(
            "https://mail.test:{}/autodiscover/autodiscover.xml",
            s.port("https")
        )
    );
    assert!(!a.body.contains("evil"));
    // Autoconfig by Host alone: only for a local domain.
    let a = request(
        &s,
        &b,
        "GET",
        "/mail/config-v1.1.xml",
        &[],
        &["-H", "Host: autoconfig.evil.example"],
    );
    assert_eq!(a.code, 404, "{}", a.body);
    let a = request(
        &s,
        &b,
        "GET",
        "/mail/config-v1.1.xml",
        &[],
        &["-H", "Host: autoconfig.example.org"],
    );
    assert_eq!(a.code, 200);
    assert!(
        a.body.contains("<domain>example.org</domain>"),
        "{}",
        a.body
    );
}

#[test]
fn addresses_with_plus_hash_question_mark_and_slash_work_in_pages_profiles_and_admin() {
    let s = server();
    let mario = "mario+test@example.org";
    s.add_account(mario, "mario-pw-1");
    let b = Browser::https();
    sign_in(&s, &b, mario, "mario-pw-1");
    let page = get(&s, &b, "/settings");
    assert_eq!(page.code, 200);
    assert!(
        page.body
            .contains("href=\"/mobileconfig?emailaddress=mario%2Btest%40example.org\""),
        "{}",
        page.body
    );
    let profile = get(
        &s,
        &b,
        "/mobileconfig?emailaddress=mario%2Btest%40example.org",
    );
    assert_eq!(profile.code, 200);
    assert!(
        profile
            .body
            .contains("<key>EmailAddress</key><string>mario+test@example.org</string>"),
        "{}",
        profile.body
    );
    assert!(!profile.body.contains("mario test"));
    // A client that leaves the + unencoded gets the same profile.
    let lax = get(&s, &b, "/mobileconfig?emailaddress=mario+test@example.org");
    assert!(
        lax.body
            .contains("<key>EmailAddress</key><string>mario+test@example.org</string>"),
        "{}",
        lax.body
    );
    for path in ["/settings/pop", "/security"] {
        assert_eq!(get(&s, &b, path).code, 200, "{path}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = python(
        "autoconfig_check.py",
        &[&format!("http://{}", s.addr("http")), mario],
        tmp.path(),
    )
    .success();
    let v: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(v["mobileconfig"]["mail"]["EmailAddress"], mario, "{v}");
    assert_eq!(v["pox"]["protocols"][0]["LoginName"], mario, "{v}");

    // Odd local parts in /admin: saved, then removed after the confirmation.
    let admin = Browser::https();
    sign_in(&s, &admin, ADMIN, ADMIN_PASS);
    let csrf = csrf_of(&get(&s, &admin, "/admin").body);
    let odd = "a#b?c/d@example.org";
    let a = post(
        &s,
        &admin,
        "/admin/accounts",
        &[("csrf", &csrf), ("address", odd), ("password", "odd-pw-12")],
    );
    assert!(
        a.body.contains("Created a#b?c/d@example.org."),
        "{}",
        a.body
    );
    let encoded = "a%23b%3Fc%2Fd%40example.org";
    assert!(
        a.body
            .contains(&format!("action=\"/admin/accounts/{encoded}\"")),
        "{}",
        a.body
    );
    let a = post(
        &s,
        &admin,
        &format!("/admin/accounts/{encoded}"),
        &[("csrf", &csrf), ("enabled", "on"), ("imap", "on")],
    );
    assert!(a.body.contains("Saved a#b?c/d@example.org."), "{}", a.body);
    let shown = cli_ok(&s, &["account", "show", odd]);
    assert!(
        shown.contains("pop: off") && shown.contains("imap: on"),
        "{shown}"
    );
    assert_eq!(
        get(&s, &admin, &format!("/admin/accounts/{encoded}")).code,
        200
    );

    // Remove: the list links to a confirmation page; a POST without the
    // confirmation only shows that page.
    assert!(
        a.body
            .contains(&format!("href=\"/admin/accounts/{encoded}/remove\"")),
        "{}",
        a.body
    );
    let confirm = get(&s, &admin, &format!("/admin/accounts/{encoded}/remove"));
    assert_eq!(confirm.code, 200);
    assert!(confirm.body.contains("all its mail"), "{}", confirm.body);
    assert!(confirm.body.contains("name=\"confirm\" value=\"yes\""));
    let a = post(
        &s,
        &admin,
        &format!("/admin/accounts/{encoded}/remove"),
        &[("csrf", &csrf)],
    );
    assert!(a.body.contains("id=\"confirm\""), "{}", a.body);
    assert!(cli_ok(&s, &["account", "list"]).contains(odd));
    let a = post(
        &s,
        &admin,
        &format!("/admin/accounts/{encoded}/remove"),
        &[("csrf", "forged"), ("confirm", "yes")],
    );
    assert_eq!(a.code, 403);
    assert!(cli_ok(&s, &["account", "list"]).contains(odd));
    let a = post(
        &s,
        &admin,
        &format!("/admin/accounts/{encoded}/remove"),
        &[("csrf", &csrf), ("confirm", "yes")],
    );
    assert!(
        a.body.contains("Removed a#b?c/d@example.org."),
        "{}",
        a.body
    );
    assert!(!cli_ok(&s, &["account", "list"]).contains(odd));
}

#[test]
fn autoconfig_offers_only_what_the_account_may_use_and_only_for_local_domains() {
    let s = server();
    cli_ok(&s, &["account", "set", USER, "pop=off"]);
    let b = Browser::http_from("127.0.0.1");
    let tb = |email: &str| {
        get(
            &s,
            &b,
            &format!(
                "/mail/config-v1.1.xml?emailaddress={}",
                email.replace('@', "%40")
            ),
        )
    };
    let a = tb(USER);
    assert_eq!(a.code, 200);
    assert!(a.body.contains("type=\"imap\""), "{}", a.body);
    assert!(
        !a.body.contains("type=\"pop3\""),
        "pop is off for alice: {}",
        a.body
    );
    // Another account of the domain still gets POP.
    s.add_account("bob@example.org", "bob-pw-1");
    assert!(tb("bob@example.org").body.contains("type=\"pop3\""));
    // An administrator and a disabled account are answered as an address
    // nobody has: the answer does not single them out.
    let out = s.cli(
        &[
            "account",
            "add",
            "boss@example.org",
            "--admin",
            "--password-stdin",
        ],
        b"boss-password\n",
    );
    assert!(out.status.success(), "{out:?}");
    s.add_account("carol@example.org", "carol-pw-1");
    cli_ok(&s, &["account", "set", "carol@example.org", "enabled=off"]);
    let unknown = tb("nobody@example.org").body;
    for who in ["boss@example.org", "carol@example.org"] {
        let body = tb(who).body;
        assert_eq!(body.replace(who, "nobody@example.org"), unknown, "{who}");
    }
    // Not our domain: nothing.
    let a = tb("someone@elsewhere.example");
    assert_eq!(a.code, 404, "{}", a.body);
    assert!(!a.body.contains("clientConfig"));
    let a = request(
        &s,
        &b,
        "POST",
        "/autodiscover/autodiscover.xml",
        &[],
        &[
            "-H",
            "Content-Type: text/xml",
            "--data-binary",
            "<Autodiscover><Request><EMailAddress>someone@elsewhere.example</EMailAddress></Request></Autodiscover>",
        ],
    );
    assert!(a.body.contains("<ErrorCode>500</ErrorCode>"), "{}", a.body);
    assert!(!a.body.contains("<Protocol>"));
    let a = get(
        &s,
        &b,
        "/autodiscover/autodiscover.json/v1.0/someone@elsewhere.example?Protocol=imap",
    );
    assert_eq!(a.code, 404);
    let a = get(
        &s,
        &b,
        "/mobileconfig?emailaddress=someone%40elsewhere.example",
    );
    assert_eq!(a.code, 404);
    let a = get(
        &s,
        &b,
        "/autodiscover/autodiscover.json/v1.0/alice@example.org?Protocol=pop3",
    );
    assert_eq!(a.code, 400, "pop is not offered to alice: {}", a.body);

    // Passwords off for IMAP and no OAuth: IMAP is not offered, and nothing
    // says password-cleartext for it.
    s.set_settings("imap", &["allow-basic-auth=false"]);
    let a = tb("bob@example.org");
    assert!(!a.body.contains("type=\"imap\""), "{}", a.body);
    assert!(a.body.contains("type=\"pop3\""));
    // The settings page follows the same rules.
    let web = Browser::https();
    sign_in(&s, &web, USER, PASS);
    let page = get(&s, &web, "/settings");
    assert!(page.body.contains("id=\"pop-none\""), "{}", page.body);
    assert!(page.body.contains("id=\"imap-none\""), "{}", page.body);
    assert!(page.body.contains("id=\"smtp-server-0\""), "{}", page.body);
}
