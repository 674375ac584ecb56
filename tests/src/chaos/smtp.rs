//! A minimal SMTP listener that accepts every message and counts them by Message-ID, so the
//! fault suite sees an email sent twice (the .eml folder would overwrite it silently).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};

/// When each message was accepted (Unix ms), by Message-ID.
#[derive(Clone, Default)]
pub struct Inbox(Arc<Mutex<HashMap<String, Vec<i64>>>>);

impl Inbox {
    /// (messages received, distinct Message-IDs).
    pub fn counts(&self) -> (u64, u64) {
        let m = self.0.lock().unwrap();
        (m.values().map(|t| t.len() as u64).sum(), m.len() as u64)
    }

    /// Every Message-ID with the times it was accepted.
    pub fn received(&self) -> HashMap<String, Vec<i64>> {
        self.0.lock().unwrap().clone()
    }
}

/// Listens on a free loopback port; returns the port and the inbox it fills.
pub async fn listen() -> anyhow::Result<(u16, Inbox)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let inbox = Inbox::default();
    let shared = inbox.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let inbox = shared.clone();
            tokio::spawn(async move {
                let _ = session(socket, inbox).await;
            });
        }
    });
    Ok((port, inbox))
}

async fn session(socket: tokio::net::TcpStream, inbox: Inbox) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 chaos-smtp ready\r\n").await?;
    while let Some(line) = lines.next_line().await? {
        let verb = line.get(..4).unwrap_or(&line).to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => b"250 chaos-smtp\r\n",
            "DATA" => {
                write.write_all(b"354 end with .\r\n").await?;
                let mut id = String::new();
                while let Some(l) = lines.next_line().await? {
                    if l == "." {
                        break;
                    }
                    if let Some(v) = l
                        .strip_prefix("Message-ID:")
                        .or_else(|| l.strip_prefix("Message-Id:"))
                    {
                        id = v.trim().to_string();
                    }
                }
                inbox
                    .0
                    .lock()
                    .unwrap()
                    .entry(id)
                    .or_default()
                    .push(connectability_store::now_ms());
                b"250 accepted\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"250 ok\r\n",
        };
        write.write_all(reply).await?;
    }
    Ok(())
}
