//! Wiring OAuth 2.0 in: the `[oauth]` section becomes the directory's token
//! validator, and the issuer's keys (JWKS) are kept current — a file re-read when
//! it changes, or a URL fetched periodically.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use casella_directory::Directory;
use casella_directory::oauth::{OAuthConfig, TokenValidator};
use casella_net::ShutdownSignal;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::config::OAuthSection;

enum Source {
    File(PathBuf),
    Url(String),
}

fn source(section: &OAuthSection) -> anyhow::Result<Source> {
    match (&section.jwks_file, &section.jwks_url) {
        (Some(f), None) => Ok(Source::File(f.clone())),
        (None, Some(u)) => Ok(Source::Url(u.clone())),
        _ => bail!("[oauth] needs exactly one of jwks-file and jwks-url"),
    }
}

/// Largest JWKS document read.
const MAX_JWKS: usize = 1 << 20;

/// GET `url` (http or https, verified against the system's trust store).
async fn fetch(url: &str) -> anyhow::Result<String> {
    let uri: hyper::Uri = url.parse().context("jwks-url is not a URL")?;
    let host = uri.host().context("jwks-url has no host")?.to_string();
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => bail!("jwks-url must be http:// or https://"),
    };
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .context("connecting to the JWKS server timed out")??;
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, &host)
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())?;
    let response = if https {
        let config = casella_relay::tls::verified_config(None).map_err(anyhow::Error::msg)?;
        let name = casella_relay::tls::server_name(&host).map_err(anyhow::Error::msg)?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .context("TLS to the JWKS server")?;
        send(TokioIo::new(tls), request).await?
    } else {
        send(TokioIo::new(tcp), request).await?
    };
    Ok(response)
}

async fn send<T>(io: T, request: hyper::Request<Empty<Bytes>>) -> anyhow::Result<String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let response = tokio::time::timeout(Duration::from_secs(20), sender.send_request(request))
        .await
        .context("the JWKS server did not answer in time")??;
    if !response.status().is_success() {
        bail!("the JWKS server answered {}", response.status());
    }
    let body = Limited::new(response.into_body(), MAX_JWKS)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the JWKS: {e}"))?
        .to_bytes();
    String::from_utf8(body.to_vec()).context("the JWKS is not UTF-8")
}

async fn load(source: &Source) -> anyhow::Result<String> {
    match source {
        Source::File(p) => tokio::fs::read_to_string(p)
            .await
            .with_context(|| format!("reading {}", p.display())),
        Source::Url(u) => fetch(u).await,
    }
}

/// Turns OAuth on when `[oauth]` names an issuer; returns the task that keeps
/// the keys current.
pub async fn setup(
    section: &OAuthSection,
    directory: Arc<Directory>,
    signal: ShutdownSignal,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    if section.issuer.is_empty() {
        return Ok(None);
    }
    if section.audience.is_empty() {
        bail!("[oauth] needs an audience");
    }
    let source = source(section)?;
    let jwks = load(&source)
        .await
        .context("[oauth] loading the issuer's keys")?;
    let config = OAuthConfig {
        issuer: section.issuer.clone(),
        audience: section.audience.clone(),
        scope_imap: section.scope_imap.clone(),
        scope_pop: section.scope_pop.clone(),
        scope_submission: section.scope_submission.clone(),
        user_claims: section.user_claims.clone(),
        leeway: section.leeway,
    };
    let validator = Arc::new(TokenValidator::new(config, &jwks).map_err(anyhow::Error::msg)?);
    directory.set_oauth(Some(validator.clone()));
    tracing::info!(issuer = %section.issuer, "OAuth 2.0 tokens accepted (XOAUTH2, OAUTHBEARER)");
    let refresh = Duration::from_secs(section.jwks_refresh.max(60));
    Ok(Some(tokio::spawn(refresh_keys(
        source, validator, refresh, signal,
    ))))
}

async fn refresh_keys(
    source: Source,
    validator: Arc<TokenValidator>,
    every: Duration,
    mut signal: ShutdownSignal,
) {
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last: Option<SystemTime> = match &source {
        Source::File(p) => modified(p),
        Source::Url(_) => None,
    };
    let tick = match &source {
        Source::File(_) => Duration::from_secs(1),
        Source::Url(_) => every,
    };
    loop {
        tokio::select! {
            _ = signal.wait() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        if let Source::File(p) = &source {
            let now = modified(p);
            if now == last {
                continue;
            }
            last = now;
        }
        match load(&source)
            .await
            .and_then(|j| validator.set_keys(&j).map_err(anyhow::Error::msg))
        {
            Ok(()) => tracing::info!("OAuth issuer keys reloaded"),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "OAuth issuer keys not reloaded; keeping the old ones")
            }
        }
    }
}
