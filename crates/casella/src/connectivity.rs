//! `casella test-connectivity` — Exchange's Test-PopConnectivity /
//! Test-ImapConnectivity, and the same for submission: connect to an endpoint as a
//! real client, log in, run a short scenario, and print what worked with its
//! latency.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use casella_net::ClientStream;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::ClientConfig;

use crate::config::{self, Config};
use crate::settings::{self, Service};

/// How long one step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Options {
    pub protocol: String,
    pub server: Option<String>,
    pub connection_type: Option<String>,
    pub user: Option<String>,
    pub password_stdin: bool,
    pub json: bool,
    pub ca_file: Option<std::path::PathBuf>,
    /// Where submission's probe is looked for (HOST:PORT, implicit TLS unless 143).
    pub imap_server: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    Plaintext,
    StartTls,
    Implicit,
}

/// One row of the result table.
struct Row {
    scenario: &'static str,
    result: &'static str,
    latency: Option<u128>,
    error: String,
}

struct Client {
    io: BufReader<ClientStream>,
    host: String,
    tls: Arc<ClientConfig>,
}

impl Client {
    async fn connect(
        host: &str,
        port: u16,
        implicit: bool,
        tls: Arc<ClientConfig>,
    ) -> anyhow::Result<Client> {
        let tcp = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect((host, port)))
            .await
            .context("connecting timed out")?
            .with_context(|| format!("connecting to {host}:{port}"))?;
        let conn = if implicit {
            ClientStream::Tls(Box::new(handshake(tcp, host, &tls).await?))
        } else {
            ClientStream::Plain(tcp)
        };
        Ok(Client {
            io: BufReader::new(conn),
            host: host.to_string(),
            tls,
        })
    }

    async fn line(&mut self) -> anyhow::Result<String> {
        let mut s = String::new();
        let n = tokio::time::timeout(STEP_TIMEOUT, self.io.read_line(&mut s))
            .await
            .context("the server did not answer in time")??;
        if n == 0 {
            bail!("the server closed the connection");
        }
        Ok(s.trim_end_matches(['\r', '\n']).to_string())
    }

    async fn send(&mut self, line: &str) -> anyhow::Result<()> {
        self.io
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await?;
        self.io.get_mut().flush().await?;
        Ok(())
    }

    async fn start_tls(self) -> anyhow::Result<Client> {
        let ClientStream::Plain(tcp) = self.io.into_inner() else {
            bail!("TLS is already active")
        };
        let tls = handshake(tcp, &self.host, &self.tls).await?;
        Ok(Client {
            io: BufReader::new(ClientStream::Tls(Box::new(tls))),
            host: self.host,
            tls: self.tls,
        })
    }
}

async fn handshake(
    tcp: TcpStream,
    host: &str,
    tls: &Arc<ClientConfig>,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let name = casella_relay::tls::server_name(host).map_err(anyhow::Error::msg)?;
    tokio::time::timeout(
        STEP_TIMEOUT,
        TlsConnector::from(tls.clone()).connect(name, tcp),
    )
    .await
    .context("the TLS handshake timed out")?
    .context("TLS handshake")
}

// ---- scenarios ----

/// Runs a step, timing it; a failure ends the scenario.
async fn step<F, T>(rows: &mut Vec<Row>, scenario: &'static str, f: F) -> Option<T>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let start = Instant::now();
    match f.await {
        Ok(v) => {
            rows.push(Row {
                scenario,
                result: "Success",
                latency: Some(start.elapsed().as_millis()),
                error: String::new(),
            });
            Some(v)
        }
        Err(e) => {
            rows.push(Row {
                scenario,
                result: "Failure",
                latency: Some(start.elapsed().as_millis()),
                error: format!("{e:#}"),
            });
            None
        }
    }
}

fn skipped(rows: &mut Vec<Row>, scenario: &'static str, why: &str) {
    rows.push(Row {
        scenario,
        result: "Skipped",
        latency: None,
        error: why.to_string(),
    });
}

fn expect_ok(line: &str, prefix: &str) -> anyhow::Result<()> {
    if line.starts_with(prefix) {
        Ok(())
    } else {
        bail!("{line}")
    }
}

async fn pop(
    host: &str,
    port: u16,
    security: Security,
    tls: Arc<ClientConfig>,
    creds: Option<(String, String)>,
    rows: &mut Vec<Row>,
) {
    let connected = step(rows, "Connect", async {
        let mut c = Client::connect(host, port, security == Security::Implicit, tls).await?;
        expect_ok(&c.line().await?, "+OK")?;
        if security == Security::StartTls {
            c.send("STLS").await?;
            expect_ok(&c.line().await?, "+OK")?;
            c = c.start_tls().await?;
        }
        Ok(c)
    })
    .await;
    let (Some(mut c), Some((user, password))) = (connected, creds) else {
        skipped(rows, "Log on", "no --user given or not connected");
        skipped(rows, "STAT and LIST", "not logged on");
        return;
    };
    let logged = step(rows, "Log on", async {
        c.send(&format!("USER {user}")).await?;
        expect_ok(&c.line().await?, "+OK")?;
        c.send(&format!("PASS {password}")).await?;
        expect_ok(&c.line().await?, "+OK")
    })
    .await;
    if logged.is_none() {
        skipped(rows, "STAT and LIST", "not logged on");
        return;
    }
    step(rows, "STAT and LIST", async {
        c.send("STAT").await?;
        expect_ok(&c.line().await?, "+OK")?;
        c.send("LIST").await?;
        expect_ok(&c.line().await?, "+OK")?;
        while c.line().await? != "." {}
        c.send("QUIT").await?;
        Ok(())
    })
    .await;
}

async fn imap_connect(
    host: &str,
    port: u16,
    security: Security,
    tls: Arc<ClientConfig>,
) -> anyhow::Result<Client> {
    let mut c = Client::connect(host, port, security == Security::Implicit, tls).await?;
    expect_ok(&c.line().await?, "* OK")?;
    if security == Security::StartTls {
        c.send("s STARTTLS").await?;
        expect_ok(&c.line().await?, "s OK")?;
        c = c.start_tls().await?;
    }
    Ok(c)
}

async fn imap_tagged(c: &mut Client, tag: &str, command: &str) -> anyhow::Result<Vec<String>> {
    c.send(&format!("{tag} {command}")).await?;
    let mut lines = Vec::new();
    loop {
        let l = c.line().await?;
        if l.starts_with(&format!("{tag} ")) {
            expect_ok(&l, &format!("{tag} OK"))?;
            return Ok(lines);
        }
        lines.push(l);
    }
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

async fn imap(
    host: &str,
    port: u16,
    security: Security,
    tls: Arc<ClientConfig>,
    creds: Option<(String, String)>,
    rows: &mut Vec<Row>,
) {
    let connected = step(rows, "Connect", imap_connect(host, port, security, tls)).await;
    let (Some(mut c), Some((user, password))) = (connected, creds) else {
        skipped(rows, "Log on", "no --user given or not connected");
        skipped(
            rows,
            "Select INBOX and fetch the newest message",
            "not logged on",
        );
        return;
    };
    let logged = step(
        rows,
        "Log on",
        imap_tagged(
            &mut c,
            "l",
            &format!("LOGIN {} {}", quoted(&user), quoted(&password)),
        ),
    )
    .await;
    if logged.is_none() {
        skipped(
            rows,
            "Select INBOX and fetch the newest message",
            "not logged on",
        );
        return;
    }
    step(rows, "Select INBOX and fetch the newest message", async {
        let selected = imap_tagged(&mut c, "s", "EXAMINE INBOX").await?;
        let exists = selected
            .iter()
            .any(|l| l.ends_with(" EXISTS") && !l.starts_with("* 0 "));
        if exists {
            imap_tagged(&mut c, "f", "FETCH * (UID FLAGS ENVELOPE)").await?;
        }
        let _ = imap_tagged(&mut c, "o", "LOGOUT").await;
        Ok(())
    })
    .await;
}

async fn submission(
    host: &str,
    port: u16,
    security: Security,
    tls: Arc<ClientConfig>,
    creds: Option<(String, String)>,
    imap_endpoint: Option<(String, u16, Security)>,
    rows: &mut Vec<Row>,
) {
    let tls2 = tls.clone();
    let connected = step(rows, "Connect", async {
        let mut c = Client::connect(host, port, security == Security::Implicit, tls).await?;
        expect_ok(&c.line().await?, "220")?;
        ehlo(&mut c).await?;
        if security == Security::StartTls {
            c.send("STARTTLS").await?;
            expect_ok(&c.line().await?, "220")?;
            c = c.start_tls().await?;
            ehlo(&mut c).await?;
        }
        Ok(c)
    })
    .await;
    let (Some(mut c), Some((user, password))) = (connected, creds) else {
        skipped(rows, "Log on", "no --user given or not connected");
        skipped(rows, "Send a probe to itself", "not logged on");
        skipped(rows, "Find the probe over IMAP", "not logged on");
        return;
    };
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    let logged = step(rows, "Log on", async {
        c.send(&format!("AUTH PLAIN {plain}")).await?;
        expect_ok(&c.line().await?, "235")
    })
    .await;
    if logged.is_none() {
        skipped(rows, "Send a probe to itself", "not logged on");
        skipped(rows, "Find the probe over IMAP", "not logged on");
        return;
    }
    let probe = format!("casella connectivity probe {}", casella_store::now_unix());
    let sent = step(rows, "Send a probe to itself", async {
        c.send(&format!("MAIL FROM:<{user}>")).await?;
        expect_ok(&c.line().await?, "250")?;
        c.send(&format!("RCPT TO:<{user}>")).await?;
        expect_ok(&c.line().await?, "250")?;
        c.send("DATA").await?;
        expect_ok(&c.line().await?, "354")?;
        c.send(&format!("From: <{user}>\r\nTo: <{user}>\r\nSubject: {probe}\r\n\r\nThis message tests the submission service.\r\n.")).await?;
        expect_ok(&c.line().await?, "250")?;
        c.send("QUIT").await?;
        Ok(())
    })
    .await;
    let Some((ihost, iport, isec)) = imap_endpoint else {
        skipped(
            rows,
            "Find the probe over IMAP",
            "no IMAP endpoint configured",
        );
        return;
    };
    if sent.is_none() {
        skipped(rows, "Find the probe over IMAP", "the probe was not sent");
        return;
    }
    step(rows, "Find the probe over IMAP", async {
        let mut i = imap_connect(&ihost, iport, isec, tls2).await?;
        imap_tagged(
            &mut i,
            "l",
            &format!("LOGIN {} {}", quoted(&user), quoted(&password)),
        )
        .await?;
        imap_tagged(&mut i, "s", "SELECT INBOX").await?;
        // Local delivery is immediate; allow a moment all the same.
        for _ in 0..20 {
            let found = imap_tagged(
                &mut i,
                "f",
                &format!("UID SEARCH SUBJECT {}", quoted(&probe)),
            )
            .await?;
            let uids: Vec<&str> = found
                .iter()
                .filter_map(|l| l.strip_prefix("* SEARCH"))
                .flat_map(|r| r.split_whitespace())
                .collect();
            if let Some(uid) = uids.first() {
                // Clean up after ourselves.
                imap_tagged(
                    &mut i,
                    "d",
                    &format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"),
                )
                .await?;
                imap_tagged(&mut i, "e", &format!("UID EXPUNGE {uid}")).await?;
                let _ = imap_tagged(&mut i, "o", "LOGOUT").await;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("the probe did not arrive in INBOX")
    })
    .await;
}

async fn ehlo(c: &mut Client) -> anyhow::Result<()> {
    c.send("EHLO casella-test-connectivity").await?;
    loop {
        let l = c.line().await?;
        if !l.starts_with("250") {
            bail!("{l}");
        }
        if l.starts_with("250 ") {
            return Ok(());
        }
    }
}

// ---- endpoints ----

fn security_of(word: &str) -> anyhow::Result<Security> {
    Ok(match word.to_ascii_lowercase().as_str() {
        "plaintext" | "plain" => Security::Plaintext,
        "tls" | "starttls" => Security::StartTls,
        "ssl" | "implicit" => Security::Implicit,
        other => {
            bail!("connection type {other:?}: plaintext, tls (STARTTLS) or ssl (implicit TLS)")
        }
    })
}

/// The listener of `proto` in casella.toml, with wildcard addresses made local.
fn configured(config: &Config, proto: &str) -> Option<(String, u16)> {
    let addr: std::net::SocketAddr = config.listen.get(proto)?.first()?.parse().ok()?;
    let host = if addr.ip().is_unspecified() {
        if addr.is_ipv6() {
            "::1".to_string()
        } else {
            "127.0.0.1".to_string()
        }
    } else {
        addr.ip().to_string()
    };
    Some((host, addr.port()))
}

/// Where to connect: `--server`, else the external connection settings, else the
/// listeners of casella.toml.
fn endpoint(
    config: &Config,
    overrides: &settings::Overrides,
    service: Service,
    server: Option<&str>,
    connection_type: Option<&str>,
) -> anyhow::Result<(String, u16, Security)> {
    let requested = connection_type.map(security_of).transpose()?;
    let (implicit_proto, starttls_proto, implicit_port, starttls_port) = match service {
        Service::Pop => ("pop3s", "pop3", 995, 110),
        Service::Imap => ("imaps", "imap", 993, 143),
        Service::Submission => ("submissions", "submission", 465, 587),
    };
    if let Some(s) = server {
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => {
                (h.trim_matches(['[', ']']).to_string(), p.parse()?)
            }
            _ => {
                let port = if requested == Some(Security::Implicit) || requested.is_none() {
                    implicit_port
                } else {
                    starttls_port
                };
                (s.to_string(), port)
            }
        };
        let security = requested.unwrap_or(if port == starttls_port {
            Security::StartTls
        } else {
            Security::Implicit
        });
        return Ok((host, port, security));
    }
    let external = settings::connection_settings(overrides, service, true);
    let wanted_implicit = requested.map(|r| r == Security::Implicit);
    if let Some(e) = external
        .iter()
        .find(|e| wanted_implicit.is_none_or(|w| w == e.implicit_tls))
    {
        let security = requested.unwrap_or(if e.implicit_tls {
            Security::Implicit
        } else {
            Security::StartTls
        });
        return Ok((e.host.clone(), e.port, security));
    }
    let pick = |proto: &str, sec: Security| configured(config, proto).map(|(h, p)| (h, p, sec));
    let found = match requested {
        Some(Security::Implicit) => pick(implicit_proto, Security::Implicit),
        Some(sec) => pick(starttls_proto, sec),
        None => pick(implicit_proto, Security::Implicit)
            .or_else(|| pick(starttls_proto, Security::StartTls)),
    };
    found.context("no endpoint: give --server HOST:PORT")
}

pub async fn run(data: &Path, options: Options) -> anyhow::Result<bool> {
    let service = Service::parse(&options.protocol)?;
    let config = config::load_or_create(data)?;
    let overrides = settings::Overrides::load(data)?;
    let (host, port, security) = endpoint(
        &config,
        &overrides,
        service,
        options.server.as_deref(),
        options.connection_type.as_deref(),
    )?;
    // Trust the given CA, else our own certificate (self-signed on first run or
    // configured), else the system's roots.
    let ca = options
        .ca_file
        .clone()
        .or_else(|| config.tls.cert.clone())
        .or_else(|| Some(data.join("tls").join("cert.pem")).filter(|p| p.exists()));
    let tls = casella_relay::tls::verified_config(ca.as_deref()).map_err(anyhow::Error::msg)?;
    let creds = match &options.user {
        None => None,
        Some(user) => {
            if !options.password_stdin {
                bail!("give the password on standard input with --password-stdin");
            }
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password")?;
            Some((
                user.clone(),
                line.trim_end_matches(['\r', '\n']).to_string(),
            ))
        }
    };
    let mut rows = Vec::new();
    match service {
        Service::Pop => pop(&host, port, security, tls, creds, &mut rows).await,
        Service::Imap => imap(&host, port, security, tls, creds, &mut rows).await,
        Service::Submission => {
            let imap_endpoint = endpoint(
                &config,
                &overrides,
                Service::Imap,
                options.imap_server.as_deref(),
                None,
            )
            .ok();
            submission(&host, port, security, tls, creds, imap_endpoint, &mut rows).await
        }
    }
    let server = format!("{host}:{port}");
    let kind = match security {
        Security::Plaintext => "plaintext",
        Security::StartTls => "tls",
        Security::Implicit => "ssl",
    };
    if options.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "server": server,
                    "protocol": service.name(),
                    "connection_type": kind,
                    "scenario": r.scenario,
                    "result": r.result,
                    "latency_ms": r.latency,
                    "error": r.error,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        println!(
            "{:<24} {:<44} {:<8} {:>12}  Error",
            "Server", "Scenario", "Result", "Latency (ms)"
        );
        for r in &rows {
            let latency = r
                .latency
                .map(|l| l.to_string())
                .unwrap_or_else(|| "-".into());
            println!(
                "{:<24} {:<44} {:<8} {:>12}  {}",
                server, r.scenario, r.result, latency, r.error
            );
        }
    }
    Ok(rows.iter().all(|r| r.result != "Failure"))
}
