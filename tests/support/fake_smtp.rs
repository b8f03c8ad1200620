//! A local SMTP sink: speaks enough SMTP (EHLO/HELO, AUTH PLAIN, MAIL FROM, RCPT TO, DATA, RSET,
//! NOOP, QUIT) for a real client (lettre) to deliver to it, keeps every message it accepted, and
//! can be told to answer the next messages' DATA with a failure (a transient 451, a permanent
//! 554) to test retries.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent (headers and body), dot-unstuffed, with CRLF line ends.
    pub raw: String,
}

impl Mail {
    /// A header's unfolded value (the first with that name, case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.raw.split("\r\n\r\n").next().unwrap_or("");
        let mut out: Option<String> = None;
        let mut in_it = false;
        for line in head.split("\r\n") {
            if line.starts_with(' ') || line.starts_with('\t') {
                if in_it && let Some(v) = out.as_mut() {
                    v.push(' ');
                    v.push_str(line.trim());
                }
                continue;
            }
            if out.is_some() {
                in_it = false;
                continue;
            }
            if let Some((n, v)) = line.split_once(':')
                && n.eq_ignore_ascii_case(name)
            {
                out = Some(v.trim().to_string());
                in_it = true;
            }
        }
        out
    }

    /// The body, decoded from its transfer encoding (7bit, quoted-printable or base64).
    pub fn body(&self) -> String {
        let body = self.raw.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        let cte = self
            .header("Content-Transfer-Encoding")
            .unwrap_or_default()
            .to_ascii_lowercase();
        match cte.as_str() {
            "quoted-printable" => decode_qp(body),
            "base64" => {
                let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .expect("base64 body");
                String::from_utf8_lossy(&bytes).replace("\r\n", "\n")
            }
            _ => body.replace("\r\n", "\n"),
        }
    }

    pub fn subject(&self) -> String {
        self.header("Subject").unwrap_or_default()
    }

    /// The first URL in the body that starts with `prefix`.
    pub fn link(&self, prefix: &str) -> Option<String> {
        let body = self.body();
        let start = body.find(prefix)?;
        let rest = &body[start..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '>')
            .unwrap_or(rest.len());
        Some(rest[..end].to_string())
    }
}

fn decode_qp(s: &str) -> String {
    let s = s.replace("=\r\n", "");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'='
            && let Some(h) = s.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(h, 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}

#[derive(Default)]
struct Inner {
    mails: Vec<Mail>,
    /// Answers for the next DATA ends, in order (e.g. `451 4.3.0 Try again later`).
    data_failures: VecDeque<String>,
    /// DATA ends seen, accepted or not.
    data_attempts: usize,
    /// AUTH PLAIN credentials seen (`user`, `password`).
    auths: Vec<(String, String)>,
}

/// The running sink.
#[derive(Clone)]
pub struct FakeSmtp {
    pub port: u16,
    inner: Arc<Mutex<Inner>>,
}

impl FakeSmtp {
    pub async fn start() -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp");
        let port = listener.local_addr().expect("addr").port();
        let inner = Arc::new(Mutex::new(Inner::default()));
        let shared = inner.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = session(sock, shared).await;
                });
            }
        });
        FakeSmtp { port, inner }
    }

    /// `smtp://127.0.0.1:<port>` (no TLS: a local sink).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.inner.lock().unwrap().mails.clone()
    }

    /// Messages delivered to `address`.
    pub fn to(&self, address: &str) -> Vec<Mail> {
        self.mails()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(address)))
            .collect()
    }

    /// Answer the next DATA with `reply` (e.g. `451 4.3.0 Try again later`) instead of 250.
    pub fn fail_next_data(&self, reply: &str) {
        self.inner
            .lock()
            .unwrap()
            .data_failures
            .push_back(reply.to_string());
    }

    pub fn data_attempts(&self) -> usize {
        self.inner.lock().unwrap().data_attempts
    }

    pub fn auths(&self) -> Vec<(String, String)> {
        self.inner.lock().unwrap().auths.clone()
    }
}

fn addr_of(arg: &str) -> String {
    let a = arg.split_once(':').map(|x| x.1).unwrap_or(arg).trim();
    let a = a.split_whitespace().next().unwrap_or("");
    a.trim_start_matches('<').trim_end_matches('>').to_string()
}

async fn session(sock: tokio::net::TcpStream, shared: Arc<Mutex<Inner>>) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 fake-smtp ESMTP ready\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::<String>::new());
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            "250-fake-smtp\r\n250-8BITMIME\r\n250-AUTH PLAIN\r\n250 SMTPUTF8".into()
        } else if upper.starts_with("HELO") {
            "250 fake-smtp".into()
        } else if upper.starts_with("AUTH PLAIN") {
            let b64 = cmd[10..].trim();
            let dec = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default();
            let parts: Vec<String> = dec
                .split(|b| *b == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            if parts.len() == 3 {
                shared
                    .lock()
                    .unwrap()
                    .auths
                    .push((parts[1].clone(), parts[2].clone()));
            }
            "235 2.7.0 Authentication successful".into()
        } else if upper.starts_with("MAIL FROM") {
            from = addr_of(&cmd);
            to.clear();
            "250 2.1.0 OK".into()
        } else if upper.starts_with("RCPT TO") {
            to.push(addr_of(&cmd));
            "250 2.1.5 OK".into()
        } else if upper == "DATA" {
            w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut raw = String::new();
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).await? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" || l == ".\n" {
                    break;
                }
                let l = l
                    .strip_prefix('.')
                    .filter(|x| x.starts_with('.'))
                    .unwrap_or(&l);
                raw.push_str(l);
            }
            let mut g = shared.lock().unwrap();
            g.data_attempts += 1;
            match g.data_failures.pop_front() {
                Some(fail) => fail,
                None => {
                    g.mails.push(Mail {
                        from: from.clone(),
                        to: to.clone(),
                        raw,
                    });
                    "250 2.0.0 OK queued".into()
                }
            }
        } else if upper == "RSET" {
            from.clear();
            to.clear();
            "250 2.0.0 OK".into()
        } else if upper == "NOOP" {
            "250 2.0.0 OK".into()
        } else if upper == "QUIT" {
            w.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 Command not recognized".into()
        };
        w.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
}
