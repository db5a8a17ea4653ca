//! A TCP proxy that can cut every connection and refuse new ones, or go silent (forward
//! nothing, close nothing), to take PostgreSQL away from `serve` without touching the shared
//! server.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct CutProxy {
    pub port: u16,
    cut: watch::Sender<bool>,
    silent: watch::Sender<bool>,
}

impl CutProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, cut_rx) = watch::channel(false);
        let (silent, silent_rx) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if *cut_rx.borrow() {
                    continue; // dropped: the connection is refused
                }
                let (mut cut_rx, mut silent_rx) = (cut_rx.clone(), silent_rx.clone());
                tokio::spawn(async move {
                    let silent_now = *silent_rx.borrow();
                    if silent_now {
                        // Accepted, never answered, never closed.
                        let _held = client;
                        std::future::pending::<()>().await;
                        return;
                    }
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let went_silent = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
                        _ = cut_rx.wait_for(|cut| *cut) => false,
                        _ = silent_rx.wait_for(|silent| *silent) => true,
                    };
                    if went_silent {
                        // Both sockets stay open and nothing moves: a peer that hangs.
                        let _held = (client, server);
                        std::future::pending::<()>().await;
                    }
                });
            }
        });
        Self { port, cut, silent }
    }

    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
        self.silent.send_replace(false);
    }

    /// Stops forwarding on every connection, old and new, without closing any. Connections
    /// silenced stay silent after [`restore`](Self::restore); new ones work again.
    pub fn silence(&self) {
        self.silent.send_replace(true);
    }
}
