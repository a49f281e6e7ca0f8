//! Command-line interface. The names and flags here are an interface other tools
//! drive; change them only by adding.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::{
    account, connectivity, deliver, doctor, localserve, maildir, mbox, migrate, queue, retention,
    security, serve, settings, web,
};

#[derive(Parser, Debug)]
#[command(
    name = "casella",
    version,
    about = "casella: POP3, IMAP4 and SMTP mail access server"
)]
pub struct Cli {
    /// Data directory (store, configuration, certificates).
    #[arg(
        long,
        global = true,
        env = "CASELLA_DATA",
        default_value = "./casella-data"
    )]
    pub data: PathBuf,
    /// How log lines on standard error are written: text for people, json
    /// (one object per line) for log collectors.
    #[arg(
        long,
        global = true,
        env = "CASELLA_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve {
        /// PROTO=ADDR, e.g. pop3=127.0.0.1:110. PROTO is one of imap imaps pop3 pop3s
        /// submission submissions smtp lmtp http https, and on back ends (role =
        /// "backend") imap-internal pop3-internal submission-internal, for sessions
        /// front ends hand over (bind internal addresses only). May repeat. Without
        /// any, the bindings of the configuration file are used.
        #[arg(long = "listen", value_name = "PROTO=ADDR")]
        listen: Vec<String>,
    },
    /// A mail server for this machine only: every service on 127.0.0.1 at the
    /// standard port plus --base-port (IMAP 1143 and 1993, POP3 1110 and 1995,
    /// submission 1587 and 1465, SMTP 1025, LMTP 1024, web 1080 and 1443 with
    /// the default), an account me@localhost ready to use, and its password
    /// printed with the settings for a mail program.
    Localserve {
        /// Added to each standard port (at least 1000, so none is privileged).
        #[arg(long, default_value_t = 1000)]
        base_port: u16,
    },
    /// Check the setup and say what to fix: the configuration, the data
    /// directory (writable, free space), the TLS certificate (dates, names),
    /// the ports; then print the DNS records to publish for each local domain
    /// (MX, SPF, DKIM, DMARC, RFC 6186 SRV, autoconfig and autodiscover).
    /// Exits 1 when a check fails.
    Doctor,
    /// Manage accounts.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Read or change the live protocol settings (Exchange's Set-PopSettings,
    /// Set-ImapSettings): `settings pop get [KEY]`, `settings imap set KEY=VALUE...`;
    /// `settings security …` for login throttling. A running server applies
    /// changes within a second.
    Settings {
        /// pop, imap, submission, security or retention
        protocol: String,
        /// get or set
        action: String,
        /// KEY for get; KEY=VALUE pairs for set
        args: Vec<String>,
    },
    /// Move an embedded store into PostgreSQL, keeping UIDVALIDITY, UIDs, flags
    /// and MODSEQs.
    Migrate {
        /// The data directory of the embedded store.
        #[arg(long)]
        from: PathBuf,
        /// postgres://user@host/database (an empty database).
        #[arg(long)]
        to: String,
    },
    /// Connect to a service as a client, log in and run a short scenario
    /// (Exchange's Test-PopConnectivity / Test-ImapConnectivity). Exit status 1
    /// when a step fails.
    TestConnectivity {
        /// pop, imap or submission
        #[arg(long)]
        protocol: String,
        /// HOST:PORT; default: the external connection settings, else casella.toml's listener.
        #[arg(long)]
        server: Option<String>,
        /// plaintext, tls (STARTTLS) or ssl (implicit TLS)
        #[arg(long)]
        connection_type: Option<String>,
        /// The mailbox to log in as.
        #[arg(long)]
        user: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// CA certificates (PEM) to trust; default: the server's own certificate.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// For submission: the IMAP endpoint where the probe is looked for.
        #[arg(long)]
        imap_server: Option<String>,
    },
    /// See and manage the outbound queue.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish,
    /// powershell), generated from this command line's definition, e.g.
    /// `casella completions bash > /etc/bash_completion.d/casella`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (casella.1 and one per command, generated from
    /// this command line's definition) into DIR, e.g. /usr/share/man/man1.
    Manpages { dir: PathBuf },
    /// Print the DNS TXT record that publishes a DKIM key's public half.
    DkimRecord {
        /// The private key (PEM, RSA or Ed25519) named in [[relay.dkim]].
        key_file: PathBuf,
    },
    /// Login throttling: `security blocks` lists the sources and accounts blocked
    /// after failed logins; `security unblock ADDRESS|ACCOUNT` lifts their blocks.
    /// Thresholds: `casella settings security get|set`.
    Security {
        #[command(subcommand)]
        command: SecurityCommand,
    },
    /// Bring mail in: `import maildir ADDRESS DIR` from a Dovecot Maildir++
    /// (folders, UIDVALIDITY and UIDs from dovecot-uidlist, flags and
    /// keywords, dates), so clients that synced with Dovecot find nothing new,
    /// and safe to run again (what is there already is skipped); `import mbox
    /// ADDRESS FILE|DIR`.
    Import {
        #[command(subcommand)]
        command: TransferCommand,
    },
    /// Write an account's mail out: `export maildir ADDRESS DIR`, a Maildir++
    /// Dovecot reads with the same UIDs; `export mbox ADDRESS DIR`.
    Export {
        #[command(subcommand)]
        command: TransferCommand,
    },
    /// Retention: messages leave Deleted Items after 30 days and Junk after 10
    /// (counted from when each was put there), expunged messages stay
    /// recoverable for 14 days (`casella account recover`). `retention status`
    /// shows the settings and the last passes; `retention run` runs a pass now.
    /// Settings: `casella settings retention get|set`.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Administration: tokens for the admin API (`/api/admin/` on the http
    /// listener).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// The embedded store's SEARCH text index (`search-index` in casella.toml):
    /// `search-index status` says whether it is on and how many messages wait
    /// to be indexed.
    SearchIndex {
        #[command(subcommand)]
        command: SearchIndexCommand,
    },
    /// Deliver one message from standard input into a local mailbox (for an MTA).
    /// Exit status 0 when delivered, 67 for an unknown user, 75 for a temporary failure.
    Deliver {
        /// The recipient's address.
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Create an account (its domain becomes a local domain).
    Add {
        address: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Mark the account as an administrator (never allowed on POP3 or IMAP).
        #[arg(long)]
        admin: bool,
    },
    /// List accounts.
    List,
    /// Show one account: its switches, options, aliases and mailboxes (Exchange's
    /// Get-CASMailbox).
    Show { address: String },
    /// Remove an account with all its mail.
    Remove { address: String },
    /// Switch protocols on or off for an account (Exchange's Set-CASMailbox):
    /// pop=on|off imap=on|off submission=on|off save-sent=on|off;
    /// retrieval-format=best-body|text-only|html-only|html-and-text|default and
    /// suppress-read-receipt=on|off|default (overrides of the protocol settings);
    /// pop-folders=INBOX,Junk pop-mark-read=on|off
    /// pop-dele=delete|move-to-deleted-items|hide-from-pop; backend=SITE (the site
    /// of the front ends' [sites] that serves the mailbox; backend=none for their
    /// default-backend).
    Set {
        address: String,
        #[arg(value_name = "KEY=VALUE", required = true)]
        settings: Vec<String>,
    },
    /// Manage an account's aliases (other addresses it receives mail for and may
    /// send as).
    Alias {
        #[command(subcommand)]
        command: AliasCommand,
    },
    /// Set a new password (at least 8 characters, not the address); the
    /// account's web sessions end.
    Passwd {
        address: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Sign out of all devices: ends the account's web sessions and, within a
    /// second, its open IMAP, POP3 and submission sessions on every running
    /// server that shares this store; remembered passwords are forgotten.
    Signout { address: String },
    /// List the account's recoverable items (messages expunged, or taken out
    /// of Deleted Items and Junk, in the last 14 days), oldest first; with
    /// --restore put them back in their folders (new UIDs, flags kept).
    Recover {
        address: String,
        /// Only items deleted since: 2026-12-01, 2026-12-01T08:30 (UTC), or an
        /// age such as 7d or 12h.
        #[arg(long)]
        since: Option<String>,
        /// Only items deleted from this folder.
        #[arg(long)]
        folder: Option<String>,
        /// Only these items (the numbers the list shows); may repeat.
        #[arg(long)]
        id: Vec<i64>,
        /// Restore the items listed.
        #[arg(long)]
        restore: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AliasCommand {
    /// Add ALIAS to the account ADDRESS.
    Add { address: String, alias: String },
    /// Remove ALIAS from the account ADDRESS.
    Remove { address: String, alias: String },
    /// List the account's aliases.
    List { address: String },
}

#[derive(Subcommand, Debug)]
pub enum SecurityCommand {
    /// List the current blocks.
    Blocks,
    /// Lift every block on an IP address (its /64 for IPv6) or an account.
    Unblock { what: String },
}

#[derive(Subcommand, Debug)]
pub enum TransferCommand {
    /// A Maildir++ directory (Dovecot's layout).
    Maildir {
        address: String,
        dir: PathBuf,
        /// Print a JSON summary instead of a line per folder.
        #[arg(long)]
        json: bool,
    },
    /// mbox files (mboxrd): one per folder, DIR/NAME.mbox; an import takes a
    /// file or a directory of them. Imported messages get new UIDs.
    Mbox {
        address: String,
        path: PathBuf,
        /// Import into this folder (default: the file's name).
        #[arg(long)]
        folder: Option<String>,
        /// Print a JSON summary instead of a line per folder.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum RetentionCommand {
    /// The settings in force and the latest passes.
    Status,
    /// Run one pass now and print what it removed.
    Run,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Admin API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a token and print it (shown only this once); send it as
    /// `Authorization: Bearer TOKEN`.
    Create {
        /// A name to recognise (and revoke) the token by.
        #[arg(long, default_value = "admin")]
        name: String,
    },
    /// List the tokens' names and creation times.
    List,
    /// Revoke every token with this name.
    Revoke { name: String },
}

#[derive(Subcommand, Debug)]
pub enum SearchIndexCommand {
    /// On or off, and the messages stored but not indexed yet.
    Status,
}

#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// Show the outbound queue.
    List,
    /// Try an entry (or every entry) again now.
    Retry {
        /// Queue id; all entries when omitted.
        id: Option<i64>,
    },
    /// Remove an entry without sending or bouncing it.
    Delete { id: i64 },
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { listen } => serve::run(&cli.data, &listen)
            .await
            .map(|_| ExitCode::SUCCESS),
        Command::Localserve { base_port } => localserve::run(&cli.data, base_port)
            .await
            .map(|_| ExitCode::SUCCESS),
        Command::Doctor => doctor::run(&cli.data).await,
        Command::Account { command } => account::run(&cli.data, command)
            .await
            .map(|_| ExitCode::SUCCESS),
        Command::Deliver { to } => deliver::run(&cli.data, &to).await,
        Command::Import {
            command: TransferCommand::Maildir { address, dir, json },
        } => maildir::command(&cli.data, false, &address, &dir, json)
            .await
            .map(|_| ExitCode::SUCCESS),
        Command::Export {
            command: TransferCommand::Maildir { address, dir, json },
        } => maildir::command(&cli.data, true, &address, &dir, json)
            .await
            .map(|_| ExitCode::SUCCESS),
        Command::Import {
            command:
                TransferCommand::Mbox {
                    address,
                    path,
                    folder,
                    json,
                },
        } => mbox::command(&cli.data, false, &address, &path, folder.as_deref(), json)
            .await
            .map(|_| ExitCode::SUCCESS),
        Command::Export {
            command:
                TransferCommand::Mbox {
                    address,
                    path,
                    folder: _,
                    json,
                },
        } => mbox::command(&cli.data, true, &address, &path, None, json)
            .await
            .map(|_| ExitCode::SUCCESS),
        Command::Retention { command } => retention::command(&cli.data, command)
            .await
            .map(|_| ExitCode::SUCCESS),
        Command::Security { command } => security::run(&cli.data, command)
            .await
            .map(|_| ExitCode::SUCCESS),
        Command::Admin {
            command: AdminCommand::Token { command },
        } => web::tokens(&cli.data, command).map(|_| ExitCode::SUCCESS),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            let mut command = Cli::command();
            // Into memory first: the generator panics on a failed write (a
            // closed pipe), and a closed pipe is no error here.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "casella", &mut script);
            match std::io::stdout().write_all(&script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(ExitCode::SUCCESS),
            }
        }
        Command::Manpages { dir } => {
            use clap::CommandFactory;
            manpages(&Cli::command(), &dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::DkimRecord { key_file } => {
            let record = casella_relay::dkim::dns_record(&key_file).map_err(anyhow::Error::msg)?;
            println!("{record}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Settings {
            protocol,
            action,
            args,
        } => settings::run(&cli.data, &protocol, &action, &args).map(|_| ExitCode::SUCCESS),
        Command::Migrate { from, to } => migrate::run(&from, &to).await.map(|_| ExitCode::SUCCESS),
        Command::TestConnectivity {
            protocol,
            server,
            connection_type,
            user,
            password_stdin,
            json,
            ca_file,
            imap_server,
        } => {
            let ok = connectivity::run(
                &cli.data,
                connectivity::Options {
                    protocol,
                    server,
                    connection_type,
                    user,
                    password_stdin,
                    json,
                    ca_file,
                    imap_server,
                },
            )
            .await?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Queue { command } => queue::run(&cli.data, command)
            .await
            .map(|_| ExitCode::SUCCESS),
        Command::SearchIndex {
            command: SearchIndexCommand::Status,
        } => search_index_status(&cli.data)
            .await
            .map(|_| ExitCode::SUCCESS),
    }
}

/// `casella search-index status`.
async fn search_index_status(data: &std::path::Path) -> anyhow::Result<()> {
    let config = crate::config::load_or_create(data)?;
    if !matches!(config.store.as_str(), "embedded" | "") {
        println!("search index: none (the text index belongs to the embedded store)");
        return Ok(());
    }
    let store = casella_store::sqlite::SqliteStore::open(data.join("store"))?;
    match store.search_index_backlog().await? {
        None => println!("search index: off"),
        Some(n) => {
            println!("search index: on");
            println!("waiting to be indexed: {n}");
        }
    }
    Ok(())
}

/// Writes `command`'s manual page as DIR/NAME.1, and one for each of its
/// subcommands (NAME-SUB.1), recursively.
fn manpages(command: &clap::Command, dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    /// `name` is the page's (casella-account-add), `typed` how the command
    /// is typed (casella account add).
    fn write(
        command: &clap::Command,
        name: &str,
        typed: &str,
        dir: &std::path::Path,
    ) -> anyhow::Result<()> {
        use anyhow::Context;
        let command = command
            .clone()
            .display_name(name.to_string())
            .bin_name(typed.to_string());
        let mut page = Vec::new();
        clap_mangen::Man::new(command.clone()).render(&mut page)?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            let sub_name = sub.get_name();
            write(
                sub,
                &format!("{name}-{sub_name}"),
                &format!("{typed} {sub_name}"),
                dir,
            )?;
        }
        Ok(())
    }
    write(command, "casella", "casella", dir)?;
    println!("wrote the manual pages to {}", dir.display());
    Ok(())
}
