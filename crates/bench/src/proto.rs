//! Minimal cleartext clients for IMAP, POP3 and SMTP/LMTP: enough to drive a server
//! hard and to notice every protocol error. They keep no more state than the
//! workloads need (IMAP: the message count from EXISTS/EXPUNGE).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::mail::base64;

/// A TCP connection with a read buffer; counts the bytes it receives.
pub struct Conn {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    pub bytes_in: u64,
}

impl Conn {
    /// `buf`: the read buffer's size (small for many idle sessions).
    pub async fn connect(addr: SocketAddr, timeout: Duration, buf: usize) -> Result<Conn> {
        let s = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connect to {addr}: timed out"))?
            .with_context(|| format!("connect to {addr}"))?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        Ok(Conn {
            rd: BufReader::with_capacity(buf, r),
            wr: w,
            bytes_in: 0,
        })
    }

    /// Appends one line (with its CRLF) to `buf`.
    async fn line_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        let n = self.rd.read_until(b'\n', buf).await?;
        if n == 0 || buf.last() != Some(&b'\n') {
            bail!("connection closed by the server");
        }
        self.bytes_in += n as u64;
        Ok(())
    }

    async fn exact_into(&mut self, n: usize, buf: &mut Vec<u8>) -> Result<()> {
        let start = buf.len();
        buf.resize(start + n, 0);
        self.rd.read_exact(&mut buf[start..]).await?;
        self.bytes_in += n as u64;
        Ok(())
    }

    pub async fn send(&mut self, data: &[u8]) -> Result<()> {
        self.wr.write_all(data).await?;
        Ok(())
    }
}

fn trim_crlf(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

fn text(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(trim_crlf(b));
    if s.len() > 200 {
        format!("{}…", &s[..s.floor_char_boundary(200)])
    } else {
        s.into_owned()
    }
}

/// `{123}`, `{123+}` or `~{123}` at the end of a line (CRLF removed): the literal's size.
fn literal_len(line: &[u8]) -> Option<usize> {
    let l = trim_crlf(line);
    let l = l.strip_suffix(b"}")?;
    let open = l.iter().rposition(|&c| c == b'{')?;
    let digits = &l[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

// ---------------------------------------------------------------- IMAP

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
}

#[derive(Debug)]
pub struct Reply {
    pub status: Status,
    /// The tagged line.
    pub text: String,
    /// Untagged responses, each with its literals inlined.
    pub untagged: Vec<Vec<u8>>,
}

impl Reply {
    pub fn ok(self, what: &str) -> Result<Reply> {
        if self.status == Status::Ok {
            Ok(self)
        } else {
            Err(anyhow!("{what}: {}", self.text))
        }
    }
}

pub struct Imap {
    c: Conn,
    tag: u64,
    timeout: Duration,
    /// The message count of the selected mailbox, from EXISTS and EXPUNGE.
    pub exists: u32,
    pub literal_plus: bool,
    /// After LOGOUT, `* BYE` is the expected farewell.
    logging_out: bool,
}

enum Line {
    Untagged(Vec<u8>),
    Continuation,
    Tagged(Vec<u8>),
}

impl Imap {
    pub async fn connect(addr: SocketAddr, timeout: Duration, buf: usize) -> Result<Imap> {
        let c = Conn::connect(addr, timeout, buf).await?;
        let mut imap = Imap {
            c,
            tag: 0,
            timeout,
            exists: 0,
            literal_plus: false,
            logging_out: false,
        };
        let greeting = tokio::time::timeout(timeout, imap.response())
            .await
            .map_err(|_| anyhow!("IMAP greeting: timed out"))??;
        if !greeting.starts_with(b"* OK") {
            bail!("IMAP greeting: {}", text(&greeting));
        }
        imap.literal_plus = contains(&greeting, b"LITERAL+");
        Ok(imap)
    }

    pub fn bytes_in(&self) -> u64 {
        self.c.bytes_in
    }

    /// One response: a line and the literals it announces.
    async fn response(&mut self) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(256);
        self.c.line_into(&mut buf).await?;
        while let Some(n) = literal_len(&buf) {
            self.c.exact_into(n, &mut buf).await?;
            self.c.line_into(&mut buf).await?;
        }
        Ok(buf)
    }

    async fn next(&mut self, tag: &[u8]) -> Result<Line> {
        let r = self.response().await?;
        if r.starts_with(b"* ") {
            self.track(&r);
            if r.starts_with(b"* BYE") && !self.logging_out {
                bail!("server said {}", text(&r));
            }
            Ok(Line::Untagged(r))
        } else if r.starts_with(b"+") {
            Ok(Line::Continuation)
        } else if r.starts_with(tag) && r.get(tag.len()) == Some(&b' ') {
            Ok(Line::Tagged(r))
        } else {
            bail!("unexpected response: {}", text(&r))
        }
    }

    /// Follows `* N EXISTS` and `* N EXPUNGE`.
    fn track(&mut self, r: &[u8]) {
        let mut it = trim_crlf(r).split(|&c| c == b' ');
        it.next();
        let (Some(n), Some(what)) = (it.next(), it.next()) else {
            return;
        };
        let Some(n) = std::str::from_utf8(n)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            return;
        };
        if what.eq_ignore_ascii_case(b"EXISTS") {
            self.exists = n;
        } else if what.eq_ignore_ascii_case(b"EXPUNGE") {
            self.exists = self.exists.saturating_sub(1);
        }
    }

    fn next_tag(&mut self) -> Vec<u8> {
        self.tag += 1;
        format!("a{}", self.tag).into_bytes()
    }

    async fn finish(&mut self, tag: &[u8]) -> Result<Reply> {
        let mut untagged = Vec::new();
        loop {
            match self.next(tag).await? {
                Line::Untagged(u) => untagged.push(u),
                Line::Continuation => bail!("unexpected continuation request"),
                Line::Tagged(t) => {
                    let rest = &t[tag.len() + 1..];
                    let status = if starts_ci(rest, b"OK") {
                        Status::Ok
                    } else if starts_ci(rest, b"NO") {
                        Status::No
                    } else {
                        Status::Bad
                    };
                    return Ok(Reply {
                        status,
                        text: text(&t),
                        untagged,
                    });
                }
            }
        }
    }

    /// Sends `TAG line` and reads up to the tagged reply (within the timeout).
    pub async fn cmd(&mut self, line: &str) -> Result<Reply> {
        let tag = self.next_tag();
        let mut out = Vec::with_capacity(tag.len() + line.len() + 3);
        out.extend_from_slice(&tag);
        out.push(b' ');
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
        let timeout = self.timeout;
        tokio::time::timeout(timeout, async {
            self.c.send(&out).await?;
            self.finish(&tag).await
        })
        .await
        .map_err(|_| anyhow!("{}: no reply within {timeout:?}", first_word(line)))?
    }

    /// A command that must succeed.
    pub async fn ok(&mut self, line: &str) -> Result<Reply> {
        self.cmd(line).await?.ok(first_word(line))
    }

    pub async fn login(&mut self, user: &str, password: &str) -> Result<()> {
        self.ok(&format!("LOGIN {} {}", quote(user), quote(password)))
            .await?;
        Ok(())
    }

    pub async fn select(&mut self, mailbox: &str) -> Result<u32> {
        self.exists = 0;
        self.ok(&format!("SELECT {}", quote(mailbox))).await?;
        Ok(self.exists)
    }

    /// APPEND with a literal (LITERAL+ when the server offers it).
    pub async fn append(&mut self, mailbox: &str, flags: &str, msg: &[u8]) -> Result<Reply> {
        let tag = self.next_tag();
        let timeout = self.timeout;
        let lp = self.literal_plus;
        tokio::time::timeout(timeout, async {
            let head = format!(
                "{} APPEND {} ({flags}) {{{}{}}}\r\n",
                String::from_utf8_lossy(&tag),
                quote(mailbox),
                msg.len(),
                if lp { "+" } else { "" }
            );
            if lp {
                let mut out = Vec::with_capacity(head.len() + msg.len() + 2);
                out.extend_from_slice(head.as_bytes());
                out.extend_from_slice(msg);
                out.extend_from_slice(b"\r\n");
                self.c.send(&out).await?;
            } else {
                self.c.send(head.as_bytes()).await?;
                loop {
                    match self.next(&tag).await? {
                        Line::Continuation => break,
                        Line::Untagged(_) => {}
                        Line::Tagged(t) => bail!("APPEND refused: {}", text(&t)),
                    }
                }
                let mut out = Vec::with_capacity(msg.len() + 2);
                out.extend_from_slice(msg);
                out.extend_from_slice(b"\r\n");
                self.c.send(&out).await?;
            }
            self.finish(&tag).await
        })
        .await
        .map_err(|_| anyhow!("APPEND: no reply within {timeout:?}"))?
    }

    /// Sends IDLE and waits for the continuation request; returns the tag to end it.
    pub async fn idle_start(&mut self) -> Result<Vec<u8>> {
        let tag = self.next_tag();
        let timeout = self.timeout;
        tokio::time::timeout(timeout, async {
            let mut out = tag.clone();
            out.extend_from_slice(b" IDLE\r\n");
            self.c.send(&out).await?;
            loop {
                match self.next(&tag).await? {
                    Line::Continuation => return Ok(()),
                    Line::Untagged(_) => {}
                    Line::Tagged(t) => bail!("IDLE refused: {}", text(&t)),
                }
            }
        })
        .await
        .map_err(|_| anyhow!("IDLE: no continuation within {timeout:?}"))??;
        Ok(tag)
    }

    /// During IDLE: reads until `* N EXISTS` with N > `above` (or the time limit).
    pub async fn idle_wait_exists(
        &mut self,
        tag: &[u8],
        above: u32,
        limit: Duration,
    ) -> Result<u32> {
        tokio::time::timeout(limit, async {
            loop {
                match self.next(tag).await? {
                    Line::Untagged(_) if self.exists > above => return Ok(self.exists),
                    Line::Untagged(_) => {}
                    Line::Continuation => {}
                    Line::Tagged(t) => bail!("IDLE ended by the server: {}", text(&t)),
                }
            }
        })
        .await
        .map_err(|_| anyhow!("no EXISTS within {limit:?} during IDLE"))?
    }

    /// Sends DONE and reads the tagged reply to IDLE.
    pub async fn idle_done(&mut self, tag: &[u8]) -> Result<Reply> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, async {
            self.c.send(b"DONE\r\n").await?;
            self.finish(tag).await
        })
        .await
        .map_err(|_| anyhow!("DONE: no reply within {timeout:?}"))?
    }

    /// LOGOUT; the connection is closed afterwards.
    pub async fn logout(mut self) -> Result<()> {
        self.logging_out = true;
        let r = self.cmd("LOGOUT").await?;
        r.ok("LOGOUT")?;
        Ok(())
    }
}

fn starts_ci(s: &[u8], p: &[u8]) -> bool {
    s.len() >= p.len() && s[..p.len()].eq_ignore_ascii_case(p)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

fn first_word(line: &str) -> &str {
    line.split(' ')
        .find(|w| !w.is_empty() && !w.eq_ignore_ascii_case("UID"))
        .unwrap_or(line)
}

/// An IMAP quoted string.
pub fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// The numbers of a `* SEARCH` or `* ESEARCH … ALL` response.
pub fn search_hits(untagged: &[Vec<u8>]) -> usize {
    let mut n = 0;
    for u in untagged {
        let t = trim_crlf(u);
        if starts_ci(t, b"* SEARCH") {
            n += t[8..]
                .split(|&c| c == b' ')
                .filter(|w| !w.is_empty())
                .count();
        }
    }
    n
}

// ---------------------------------------------------------------- POP3

pub struct Pop3 {
    c: Conn,
    timeout: Duration,
    buf: Vec<u8>,
}

impl Pop3 {
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Pop3> {
        let c = Conn::connect(addr, timeout, 64 * 1024).await?;
        let mut p = Pop3 {
            c,
            timeout,
            buf: Vec::with_capacity(1024),
        };
        let g = p.status_line().await?;
        if !g.starts_with("+OK") {
            bail!("POP3 greeting: {g}");
        }
        Ok(p)
    }

    async fn status_line(&mut self) -> Result<String> {
        let timeout = self.timeout;
        self.buf.clear();
        let mut buf = std::mem::take(&mut self.buf);
        let r = tokio::time::timeout(timeout, self.c.line_into(&mut buf)).await;
        self.buf = buf;
        r.map_err(|_| anyhow!("POP3: no reply within {timeout:?}"))??;
        Ok(text(&self.buf))
    }

    /// A single-line command that must answer +OK.
    pub async fn cmd(&mut self, line: &str) -> Result<String> {
        self.c.send(format!("{line}\r\n").as_bytes()).await?;
        let r = self.status_line().await?;
        if !r.starts_with("+OK") {
            let shown = if line.starts_with("PASS") {
                "PASS"
            } else {
                line
            };
            bail!("{shown}: {r}");
        }
        Ok(r)
    }

    pub async fn login(&mut self, user: &str, password: &str) -> Result<()> {
        self.cmd(&format!("USER {user}")).await?;
        self.cmd(&format!("PASS {password}")).await?;
        Ok(())
    }

    /// A multi-line command: calls `each` with every data line (dot-unstuffed, with
    /// its CRLF); returns the number of lines.
    pub async fn multi(&mut self, line: &str, mut each: impl FnMut(&[u8])) -> Result<usize> {
        self.cmd(line).await?;
        let timeout = self.timeout;
        let mut buf = std::mem::take(&mut self.buf);
        let r = tokio::time::timeout(timeout, async {
            let mut lines = 0;
            loop {
                buf.clear();
                self.c.line_into(&mut buf).await?;
                if buf == b".\r\n" || buf == b".\n" {
                    return Ok(lines);
                }
                let data = if buf.first() == Some(&b'.') {
                    &buf[1..]
                } else {
                    &buf[..]
                };
                each(data);
                lines += 1;
            }
        })
        .await;
        self.buf = buf;
        r.map_err(|_| anyhow!("{line}: data not complete within {timeout:?}"))?
    }

    /// RETR: the message's size in bytes as received (CRLF line ends).
    pub async fn retr(&mut self, n: u32) -> Result<u64> {
        let mut size = 0u64;
        self.multi(&format!("RETR {n}"), |l| size += l.len() as u64)
            .await?;
        Ok(size)
    }

    /// LIST: the size of each message, by number.
    pub async fn list(&mut self) -> Result<Vec<u64>> {
        let mut sizes = Vec::new();
        self.multi("LIST", |l| {
            let t = String::from_utf8_lossy(trim_crlf(l)).into_owned();
            if let Some(s) = t.split(' ').nth(1).and_then(|s| s.parse().ok()) {
                sizes.push(s);
            }
        })
        .await?;
        Ok(sizes)
    }

    pub async fn quit(mut self) -> Result<()> {
        self.cmd("QUIT").await?;
        Ok(())
    }
}

// ---------------------------------------------------------------- SMTP / LMTP

pub struct Smtp {
    c: Conn,
    timeout: Duration,
    lmtp: bool,
}

/// `.`-stuffs a message and appends the end-of-data line.
pub fn dot_stuff(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + msg.len() / 50 + 8);
    let mut at_line_start = true;
    for &b in msg {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

impl Smtp {
    /// Connects and says EHLO (or LHLO for LMTP).
    pub async fn connect(addr: SocketAddr, lmtp: bool, timeout: Duration) -> Result<Smtp> {
        let c = Conn::connect(addr, timeout, 4096).await?;
        let mut s = Smtp { c, timeout, lmtp };
        let (code, t) = s.reply().await?;
        if code != 220 {
            bail!("greeting: {t}");
        }
        let hello = if lmtp {
            "LHLO bench.client"
        } else {
            "EHLO bench.client"
        };
        s.expect(hello, 250).await?;
        Ok(s)
    }

    /// One reply, multi-line or not: its code and last line.
    async fn reply(&mut self) -> Result<(u16, String)> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, async {
            let mut buf = Vec::with_capacity(128);
            loop {
                buf.clear();
                self.c.line_into(&mut buf).await?;
                if buf.len() < 4 {
                    bail!("malformed reply: {}", text(&buf));
                }
                let code: u16 = std::str::from_utf8(&buf[..3])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| anyhow!("malformed reply: {}", text(&buf)))?;
                if buf[3] != b'-' {
                    return Ok((code, text(&buf)));
                }
            }
        })
        .await
        .map_err(|_| anyhow!("SMTP: no reply within {timeout:?}"))?
    }

    async fn expect(&mut self, line: &str, code: u16) -> Result<()> {
        self.c.send(format!("{line}\r\n").as_bytes()).await?;
        let (got, t) = self.reply().await?;
        if got != code {
            let shown = if line.starts_with("AUTH") {
                "AUTH"
            } else {
                line
            };
            bail!("{shown}: {t}");
        }
        Ok(())
    }

    pub async fn auth_plain(&mut self, user: &str, password: &str) -> Result<()> {
        let token = base64(format!("\0{user}\0{password}").as_bytes());
        self.expect(&format!("AUTH PLAIN {token}"), 235).await
    }

    /// One transaction; `stuffed` comes from [`dot_stuff`]. Every recipient must be
    /// accepted (LMTP: and delivered).
    pub async fn send(&mut self, from: &str, rcpts: &[String], stuffed: &[u8]) -> Result<()> {
        self.expect(&format!("MAIL FROM:<{from}>"), 250).await?;
        for r in rcpts {
            self.expect(&format!("RCPT TO:<{r}>"), 250).await?;
        }
        self.expect("DATA", 354).await?;
        self.c.send(stuffed).await?;
        let replies = if self.lmtp { rcpts.len() } else { 1 };
        for _ in 0..replies {
            let (code, t) = self.reply().await?;
            if code != 250 {
                bail!("end of DATA: {t}");
            }
        }
        Ok(())
    }

    pub async fn quit(mut self) -> Result<()> {
        self.expect("QUIT", 221).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_sizes() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {123}\r\n"), Some(123));
        assert_eq!(literal_len(b"a APPEND x {5+}\r\n"), Some(5));
        assert_eq!(literal_len(b"* 1 FETCH (BINARY[] ~{7}\r\n"), Some(7));
        assert_eq!(literal_len(b"* OK {not}\r\n"), None);
        assert_eq!(literal_len(b"* OK done\r\n"), None);
    }

    #[test]
    fn stuffing() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(dot_stuff(b".x"), b"..x\r\n.\r\n");
    }

    #[test]
    fn hits() {
        let u = vec![b"* SEARCH 1 4 9\r\n".to_vec(), b"* 3 EXISTS\r\n".to_vec()];
        assert_eq!(search_hits(&u), 3);
        assert_eq!(search_hits(&[b"* SEARCH\r\n".to_vec()]), 0);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
