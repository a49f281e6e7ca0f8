//! The login pipeline: every way of logging in — IMAP LOGIN and AUTHENTICATE,
//! POP3 USER/PASS and AUTH, submission AUTH, the web form, the front end — runs
//! through here, in this order:
//!
//! 1. policy: basic authentication on or off, LoginType against TLS, the
//!    mechanisms offered on this connection;
//! 2. the SASL exchange (through the protocol's [`SaslIo`]), up to the name;
//! 3. refused names (anonymous, guest …) and the name lookup — an address or
//!    an alias, case-insensitive, the same for every mechanism;
//! 4. a throttle [`Reservation`] for (source, account), taken before any
//!    password, proof or token is checked;
//! 5. the check, and the reservation settled with its outcome (a failure adds
//!    the throttle's growing delay);
//! 6. the account's switches: disabled, the protocol switched off, the
//!    administrator bar on POP3/IMAP;
//! 7. the protocol's failure delay and one log line.
//!
//! Protocols keep only their challenge I/O and their reply texts (each maps
//! [`AuthFailure`] in one function).

use std::time::Duration;

use casella_store::Account;

use crate::sasl::{self, SaslError};
use crate::throttle::{Refusal, Reservation};
use crate::{
    AuthFailure, Authenticated, DUMMY_HASH, Directory, LoginSource, LoginType, Protocol,
    REFUSED_LOGINS, SaslConnection, SaslIo, Secret, app_passwords, log_safe, oauth, scram,
    verify_password,
};

/// Everything the pipeline needs to know about one login attempt's
/// connection, from the protocol's settings and the session.
#[derive(Debug, Clone)]
pub struct LoginContext {
    pub protocol: Protocol,
    /// LoginType, TLS and the channel bindings.
    pub conn: SaslConnection,
    /// Passwords (PLAIN, LOGIN, USER/PASS, SCRAM) allowed at all.
    pub allow_basic_auth: bool,
    /// The mechanisms the administrator lets this protocol offer (upper case);
    /// `None`: every mechanism that works on the connection.
    pub offered: Option<Vec<String>>,
    pub source: LoginSource,
    /// Waited before a refusal is answered (Exchange's AuthFailureDelay), on
    /// top of the throttle's growing delay.
    pub failure_delay: Duration,
}

impl LoginContext {
    pub fn new(protocol: Protocol, conn: SaslConnection, source: LoginSource) -> LoginContext {
        LoginContext {
            protocol,
            conn,
            allow_basic_auth: true,
            offered: None,
            source,
            failure_delay: Duration::ZERO,
        }
    }

    /// The context of a login on a mail session (IMAP, POP3, submission):
    /// the protocol's `settings`, the connection's TLS state and RFC 9266
    /// `exporter` (for SCRAM-SHA-256-PLUS, when at hand), and where the client
    /// is. The server's certificate comes from `casella_net`.
    pub fn for_session(
        protocol: Protocol,
        settings: LoginSettings<'_>,
        tls_active: bool,
        exporter: Option<Vec<u8>>,
        source: LoginSource,
    ) -> LoginContext {
        let conn = SaslConnection::new(
            settings.login_type,
            tls_active,
            exporter,
            casella_net::server_certificate(),
        );
        LoginContext {
            allow_basic_auth: settings.allow_basic_auth,
            offered: settings.offered.clone(),
            failure_delay: settings.failure_delay,
            ..LoginContext::new(protocol, conn, source)
        }
    }

    /// Whether a password (LOGIN, USER/PASS, PLAIN) may be used now.
    pub fn passwords_usable(&self) -> bool {
        self.allow_basic_auth && self.conn.login_type.passwords_allowed(self.conn.tls_active)
    }

    fn offers(&self, mechanism: &str) -> bool {
        self.offered
            .as_ref()
            .is_none_or(|o| o.iter().any(|m| m.eq_ignore_ascii_case(mechanism)))
    }

    /// Why a password login cannot be used here, if it cannot.
    fn password_refusal(&self) -> Option<AuthFailure> {
        if !self.allow_basic_auth {
            Some(AuthFailure::BasicAuthDisabled)
        } else if !self.conn.login_type.passwords_allowed(self.conn.tls_active) {
            Some(AuthFailure::EncryptionRequired)
        } else {
            None
        }
    }
}

/// A protocol's login settings, as its configuration holds them.
#[derive(Debug, Clone, Copy)]
pub struct LoginSettings<'a> {
    pub login_type: LoginType,
    /// Passwords allowed at all.
    pub allow_basic_auth: bool,
    /// The mechanisms offered (upper case); `None`: every one that works.
    pub offered: &'a Option<Vec<String>>,
    /// Waited before a refusal is answered.
    pub failure_delay: Duration,
}

/// How long a login waits for the logins in flight before it to settle.
const BUSY_WAIT: Duration = Duration::from_secs(5);

/// The SASL mechanisms casella knows, password ones first.
const PASSWORD_MECHANISMS: [&str; 2] = ["PLAIN", "LOGIN"];

/// The name a login attempt gave, as far as the exchange got (for the log).
#[derive(Default)]
struct Attempt {
    login: String,
}

fn sasl_failure(e: SaslError) -> AuthFailure {
    match e {
        SaslError::Cancelled => AuthFailure::Cancelled,
        SaslError::OtherIdentity => AuthFailure::OtherIdentity,
        SaslError::Base64 | SaslError::Malformed => AuthFailure::Malformed,
    }
}

impl Directory {
    /// The SASL mechanisms offered on this connection now, in the order to
    /// advertise them.
    pub fn mechanisms(&self, ctx: &LoginContext) -> Vec<&'static str> {
        let mut m = Vec::new();
        if ctx.passwords_usable() {
            m.extend(PASSWORD_MECHANISMS);
        }
        m.extend(
            ctx.conn
                .other_mechanisms(ctx.allow_basic_auth, self.oauth_enabled()),
        );
        m.retain(|x| ctx.offers(x));
        m
    }

    /// AUTHENTICATE / AUTH with any mechanism. `initial` is the initial
    /// response as the client sent it (base64, `=` for empty, `*` to cancel).
    pub async fn authenticate(
        &self,
        ctx: &LoginContext,
        mechanism: &str,
        initial: Option<&str>,
        io: &mut dyn SaslIo,
    ) -> Result<Authenticated, AuthFailure> {
        let mut attempt = Attempt::default();
        let result = self
            .run_mechanism(
                ctx,
                &mechanism.to_ascii_uppercase(),
                initial,
                io,
                &mut attempt,
            )
            .await;
        self.conclude(ctx, &attempt, mechanism, result).await
    }

    /// A login with a name and a password: IMAP LOGIN, POP3 USER/PASS, the web
    /// form.
    pub async fn login_with_password(
        &self,
        ctx: &LoginContext,
        login: &str,
        password: &Secret<String>,
    ) -> Result<Authenticated, AuthFailure> {
        let mut attempt = Attempt::default();
        let result = match ctx.password_refusal() {
            Some(refusal) => Err(refusal),
            None => {
                self.check_password(ctx, login, password, &mut attempt)
                    .await
            }
        };
        self.conclude(ctx, &attempt, "password", result).await
    }

    /// The end of every attempt: the failure delay and one log line.
    async fn conclude(
        &self,
        ctx: &LoginContext,
        attempt: &Attempt,
        how: &str,
        result: Result<Authenticated, AuthFailure>,
    ) -> Result<Authenticated, AuthFailure> {
        let protocol = ctx.protocol.name();
        let remote = ctx.source.remote;
        let user = log_safe(&attempt.login);
        match &result {
            Ok(auth) => {
                tracing::debug!(protocol, %remote, user = %auth.account.address, how = %log_safe(how), "authenticated");
            }
            Err(failure) => {
                tracing::info!(protocol, %remote, user = %user, how = %log_safe(how), reason = ?failure, "login refused");
                if failure.after_credentials() && !ctx.failure_delay.is_zero() {
                    tokio::time::sleep(ctx.failure_delay).await;
                }
            }
        }
        result
    }

    async fn run_mechanism(
        &self,
        ctx: &LoginContext,
        mechanism: &str,
        initial: Option<&str>,
        io: &mut dyn SaslIo,
        attempt: &mut Attempt,
    ) -> Result<Authenticated, AuthFailure> {
        if !self.mechanisms(ctx).contains(&mechanism) {
            return Err(self.refusal_for(ctx, mechanism));
        }
        let initial = initial
            .map(sasl::decode_response)
            .transpose()
            .map_err(sasl_failure)?;
        match mechanism {
            "PLAIN" | "LOGIN" => {
                let (mut exchange, mut step) = sasl::PasswordExchange::start(mechanism, initial);
                let (login, password) = loop {
                    match step {
                        sasl::Step::Challenge(data) => {
                            let answer = io.challenge(&data).await;
                            step = exchange.respond(answer);
                        }
                        sasl::Step::Done(result) => break result.map_err(sasl_failure)?,
                    }
                };
                self.check_password(ctx, &login, &password, attempt).await
            }
            "SCRAM-SHA-256" => self.check_scram(ctx, false, initial, io, attempt).await,
            "SCRAM-SHA-256-PLUS" => self.check_scram(ctx, true, initial, io, attempt).await,
            _ => self.check_token(ctx, mechanism, initial, io, attempt).await,
        }
    }

    /// Why a mechanism is not offered here: a known one refused by policy, or
    /// one this connection does not offer at all.
    fn refusal_for(&self, ctx: &LoginContext, mechanism: &str) -> AuthFailure {
        let password =
            PASSWORD_MECHANISMS.contains(&mechanism) || mechanism.starts_with("SCRAM-SHA-256");
        let token = matches!(mechanism, "XOAUTH2" | "OAUTHBEARER") && self.oauth_enabled();
        if !ctx.offers(mechanism) || !(password || token) {
            return AuthFailure::UnsupportedMechanism;
        }
        if password && !ctx.allow_basic_auth {
            return AuthFailure::BasicAuthDisabled;
        }
        if !ctx.conn.tls_active {
            return AuthFailure::EncryptionRequired;
        }
        AuthFailure::UnsupportedMechanism
    }

    /// Steps 3 and 4: the account a login names (address or alias), and the
    /// reservation for checking its credentials. A refused name counts as a
    /// failure.
    async fn reserve(
        &self,
        ctx: &LoginContext,
        login: &str,
    ) -> Result<(Option<Account>, Reservation), AuthFailure> {
        if login.is_empty() || REFUSED_LOGINS.contains(&login) {
            self.failed(ctx, login).await;
            return Err(AuthFailure::Barred);
        }
        let account = match self.store.account_for_address(login).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed");
                return Err(AuthFailure::Temporary);
            }
        };
        // One key per account whichever of its names was typed.
        let key = account.as_ref().map_or(login, |a| a.address.as_str());
        let reservation = self.reserve_key(ctx, login, key).await?;
        Ok((account, reservation))
    }

    /// A reservation for `key`. When only logins still in flight stand in the
    /// way (a mail program opening several connections at once, an office
    /// behind one address), it waits for them to settle — at most
    /// [`BUSY_WAIT`] — instead of refusing a login that may well be right;
    /// a block refuses at once.
    async fn reserve_key(
        &self,
        ctx: &LoginContext,
        login: &str,
        key: &str,
    ) -> Result<Reservation, AuthFailure> {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(10);
        let refusal = loop {
            match self.throttle.reserve(ctx.source.remote, key) {
                Ok(r) => return Ok(r),
                Err(Refusal::Busy { .. }) if started.elapsed() + pause < BUSY_WAIT => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(refusal) => break refusal,
            }
        };
        let protocol = ctx.protocol.name();
        let remote = ctx.source.remote;
        let user = log_safe(login);
        match refusal {
            Refusal::Blocked { until } => tracing::warn!(
                target: "casella::auth",
                "authentication blocked: remote={remote} user={user} protocol={protocol} until={until}"
            ),
            Refusal::Busy { reason } => tracing::warn!(
                target: "casella::auth",
                "authentication refused: remote={remote} user={user} protocol={protocol} reason=\"{reason}\""
            ),
        }
        Err(AuthFailure::Throttled)
    }

    /// Step 6, after the credentials were found good: checked after them, so a
    /// wrong password does not reveal the account's switches.
    fn admit(&self, protocol: Protocol, account: &Account) -> Result<(), AuthFailure> {
        if account.is_admin && protocol.bars_administrators() {
            return Err(AuthFailure::Barred);
        }
        if !protocol.enabled_for(account) {
            return Err(AuthFailure::ProtocolDisabled);
        }
        Ok(())
    }

    async fn check_password(
        &self,
        ctx: &LoginContext,
        login: &str,
        password: &Secret<String>,
        attempt: &mut Attempt,
    ) -> Result<Authenticated, AuthFailure> {
        let login = self.login_name(login);
        attempt.login = login.clone();
        let (account, reservation) = self.reserve(ctx, &login).await?;
        let Some(account) = account else {
            // Spend the same time as a real check so timing does not reveal
            // which addresses exist.
            let _ = verify_password(DUMMY_HASH.to_string(), password.clone()).await;
            self.settle_failure(ctx, &login, reservation).await;
            return Err(AuthFailure::InvalidCredentials);
        };
        let main = if self
            .verified
            .matches(account.id, &account.password_hash, password)
        {
            true
        } else {
            let ok = verify_password(account.password_hash.clone(), password.clone()).await;
            if ok {
                self.verified
                    .remember(account.id, &account.password_hash, password);
            }
            ok
        };
        if !main && app_passwords::matching(&account, ctx.protocol, password).is_none() {
            self.verified.forget(account.id);
            self.record(&account, ctx.protocol, &ctx.source, false);
            self.settle_failure(ctx, &login, reservation).await;
            return Err(AuthFailure::InvalidCredentials);
        }
        reservation.succeed();
        if main && account.settings.scram.is_none() {
            self.derive_scram_keys(&account, password);
        }
        self.admit(ctx.protocol, &account)?;
        self.record(&account, ctx.protocol, &ctx.source, true);
        Ok(Authenticated {
            account,
            app_password: !main,
        })
    }

    /// Accounts from before SCRAM get their keys at their next password login,
    /// in the background.
    fn derive_scram_keys(&self, account: &Account, password: &Secret<String>) {
        let mut updated = account.clone();
        let password = password.clone();
        let store = self.store.clone();
        tokio::spawn(async move {
            let secret =
                tokio::task::spawn_blocking(move || scram::derive(password.expose())).await;
            if let Ok(secret) = secret {
                updated.settings.scram = Some(secret);
                if let Err(e) = store.update_account(&updated).await {
                    tracing::warn!(error = %e, "saving SCRAM keys failed");
                }
            }
        });
    }

    /// SCRAM-SHA-256 or SCRAM-SHA-256-PLUS (RFC 7677, RFC 5802): the client
    /// proves it knows the password without sending it; with -PLUS the proof is
    /// bound to this TLS connection. Ends with the server's signature (`v=`) as
    /// a last challenge.
    async fn check_scram(
        &self,
        ctx: &LoginContext,
        plus: bool,
        initial: Option<Vec<u8>>,
        io: &mut dyn SaslIo,
        attempt: &mut Attempt,
    ) -> Result<Authenticated, AuthFailure> {
        let conn = &ctx.conn;
        let first_msg = first_message(initial, io).await?;
        let first = scram::parse_client_first(&first_msg).map_err(|_| AuthFailure::Malformed)?;
        let login = self.login_name(&first.user);
        attempt.login = login.clone();
        let offers_plus = conn.tls_active && conn.bindings.any();
        let binding_ok = match (plus, first.cbind.as_str()) {
            // RFC 5802 §6: "y" while the server offers -PLUS is a downgrade.
            (false, "n") => true,
            (false, "y") => !offers_plus,
            (false, _) => false,
            (true, "n" | "y") => false,
            (true, name) => conn.tls_active && conn.bindings.get_name(name),
        };
        // Refused at once when blocked; the reservation is not held while the
        // client takes its time over the next message (a stalled exchange
        // must not keep others out).
        let (account, probe) = self.reserve(ctx, &login).await?;
        if !binding_ok {
            tracing::info!(protocol = ctx.protocol.name(), remote = %ctx.source.remote, "SCRAM channel binding refused");
            self.settle_failure(ctx, &login, probe).await;
            return Err(AuthFailure::InvalidCredentials);
        }
        drop(probe);
        let key = account
            .as_ref()
            .map_or(login.clone(), |a| a.address.clone());
        let secret = account.as_ref().and_then(|a| a.settings.scram.clone());
        let exchange = scram::ServerExchange::new(first, secret);
        // Cancelled here, no proof was checked and nothing is counted.
        let final_msg = io
            .challenge(exchange.server_first().as_bytes())
            .await
            .map_err(sasl_failure)?;
        // The proof is here: reserve, then check it.
        let reservation = self.reserve_key(ctx, &login, &key).await?;
        let server_final = match (exchange.finish(&final_msg, &conn.bindings), &account) {
            (Ok(v), Some(_)) => v,
            (result, _) => {
                if let (Some(a), Err(e)) = (&account, &result) {
                    tracing::info!(protocol = ctx.protocol.name(), remote = %ctx.source.remote, reason = ?e, "SCRAM proof refused");
                    self.record(a, ctx.protocol, &ctx.source, false);
                }
                self.settle_failure(ctx, &login, reservation).await;
                return Err(AuthFailure::InvalidCredentials);
            }
        };
        let Some(account) = account else {
            return Err(AuthFailure::InvalidCredentials);
        };
        reservation.succeed();
        self.admit(ctx.protocol, &account)?;
        // RFC 5802 §5.1: the server's signature, which the client checks; its
        // (empty) answer ends the exchange.
        io.challenge(server_final.as_bytes())
            .await
            .map_err(sasl_failure)?;
        self.record(&account, ctx.protocol, &ctx.source, true);
        Ok(Authenticated {
            account,
            app_password: false,
        })
    }

    /// SASL XOAUTH2 or OAUTHBEARER (RFC 7628): the client sends a bearer token;
    /// on a bad one the server answers with the RFC 7628 §3.2.2 JSON error as a
    /// challenge, the client acknowledges, and the login fails.
    async fn check_token(
        &self,
        ctx: &LoginContext,
        mechanism: &str,
        initial: Option<Vec<u8>>,
        io: &mut dyn SaslIo,
        attempt: &mut Attempt,
    ) -> Result<Authenticated, AuthFailure> {
        let Some(validator) = self.oauth() else {
            return Err(AuthFailure::UnsupportedMechanism);
        };
        let first = first_message(initial, io).await?;
        let (named, token) =
            oauth::parse_client_message(mechanism, &first).ok_or(AuthFailure::Malformed)?;
        let named = named.map(|n| self.login_name(&n));
        let hint = named.clone().unwrap_or_default();
        attempt.login = hint.clone();
        let (_, reservation) = self.reserve_token(ctx, &hint).await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let scope = validator.config().scope_for(ctx.protocol).to_string();
        let refuse = |why: String| {
            tracing::info!(protocol = ctx.protocol.name(), remote = %ctx.source.remote, reason = %why, "token refused");
        };
        let status = match validator
            .validate(&token, ctx.protocol, now)
            .map(|u| self.login_name(&u))
        {
            Ok(u) if named.as_ref().is_none_or(|n| *n == u) => Ok(u),
            Ok(u) => {
                refuse(format!(
                    "the token is for {}, not {}",
                    log_safe(&u),
                    log_safe(&hint)
                ));
                Err("invalid_token")
            }
            Err(e) => {
                refuse(e.to_string());
                Err(e.status())
            }
        };
        let user = match status {
            Ok(u) => u,
            Err(status) => {
                // Settled before the client is waited for.
                self.settle_failure(ctx, &hint, reservation).await;
                // RFC 7628 §3.2.3: the error as a challenge; the client answers
                // with a dummy ^A before the failure.
                let _ = io
                    .challenge(oauth::error_json(status, &scope).as_bytes())
                    .await;
                return Err(AuthFailure::InvalidCredentials);
            }
        };
        attempt.login = user.clone();
        let account = match self.store.account_for_address(&user).await {
            Ok(Some(a)) => a,
            Ok(None) => {
                self.settle_failure(ctx, &user, reservation).await;
                return Err(AuthFailure::InvalidCredentials);
            }
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed");
                return Err(AuthFailure::Temporary);
            }
        };
        reservation.succeed();
        self.admit(ctx.protocol, &account)?;
        self.record(&account, ctx.protocol, &ctx.source, true);
        Ok(Authenticated {
            account,
            app_password: false,
        })
    }

    /// A token may name no user: then the reservation is on a name of that
    /// source's own (not one shared by every such client, which a few sources
    /// could get closed for all), not a refused name.
    async fn reserve_token(
        &self,
        ctx: &LoginContext,
        hint: &str,
    ) -> Result<(Option<Account>, Reservation), AuthFailure> {
        if hint.is_empty() {
            let key = format!(
                "token from {}",
                crate::throttle::source_of(ctx.source.remote)
            );
            return Ok((None, self.reserve_key(ctx, "", &key).await?));
        }
        self.reserve(ctx, hint).await
    }

    /// Settles a reservation as failed: the log line fail2ban matches, the
    /// blocks it caused saved for every node, the growing delay waited out.
    async fn settle_failure(&self, ctx: &LoginContext, login: &str, reservation: Reservation) {
        let outcome = reservation.fail();
        self.after_failure(ctx, login, outcome).await;
    }

    /// Counts a failure that no reservation preceded (a refused name, a
    /// channel-binding downgrade).
    async fn failed(&self, ctx: &LoginContext, login: &str) {
        let outcome = self.throttle.failure(ctx.source.remote, login);
        self.after_failure(ctx, login, outcome).await;
    }

    async fn after_failure(
        &self,
        ctx: &LoginContext,
        login: &str,
        outcome: crate::throttle::FailureOutcome,
    ) {
        tracing::warn!(
            target: "casella::auth",
            "authentication failed: remote={} user={} protocol={}",
            ctx.source.remote,
            log_safe(login),
            ctx.protocol.name()
        );
        for b in outcome.new_blocks {
            let store = self.store.clone();
            tokio::spawn(async move {
                let stored = casella_store::StoredBlock {
                    key: b.key.to_key(),
                    until: b.until,
                    reason: b.reason,
                };
                if let Err(e) = store.save_block(stored).await {
                    tracing::warn!(error = %e, "saving a login block failed");
                }
            });
        }
        if !outcome.delay.is_zero() {
            tokio::time::sleep(outcome.delay).await;
        }
    }

    /// A login a front end handed over (it ran this pipeline): no credentials
    /// here, but the account must still exist and its switches and the
    /// administrator bar still apply, in case they changed in between.
    pub async fn login_handed_over(
        &self,
        protocol: Protocol,
        address: &str,
    ) -> Result<Authenticated, AuthFailure> {
        let address = Self::normalize(address);
        let account = match self.store.account_for_address(&address).await {
            Ok(Some(a)) => a,
            Ok(None) => return Err(AuthFailure::InvalidCredentials),
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed");
                return Err(AuthFailure::Temporary);
            }
        };
        self.admit(protocol, &account)?;
        Ok(Authenticated {
            account,
            app_password: false,
        })
    }
}

/// The client's first SASL message: the initial response, or the answer to an
/// empty challenge.
async fn first_message(
    initial: Option<Vec<u8>>,
    io: &mut dyn SaslIo,
) -> Result<Vec<u8>, AuthFailure> {
    match initial {
        Some(m) => Ok(m),
        None => io.challenge(b"").await.map_err(sasl_failure),
    }
}
