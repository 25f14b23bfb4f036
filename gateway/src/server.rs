//! The HTTP server: accepts connections and serves the router over HTTP/1.1
//! (with upgrades), with the limits a public socket needs and `axum::serve`
//! does not set:
//!
//! - a header-read timeout: a connection must send a whole request head
//!   within it, and an idle keep-alive connection is closed after it (hyper
//!   runs one timer from the moment it waits for a head);
//! - a body-read timeout: the longest pause while a request body is sent;
//! - a cap on connections per client address (an IPv6 /64 counts as one),
//!   upgraded WebSockets included. Trusted proxies are exempt: all their
//!   clients share their address.
//!
//! A refused connection gets a short 503 and is closed. Graceful shutdown:
//! accepting stops, idle connections close, requests in flight finish.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::client_addr::address_group;
use crate::metrics::Metrics;

/// How long requests in flight get to finish once the gateway stops.
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    /// 0: no cap.
    pub max_connections_per_address: usize,
    /// Peers not capped (they speak for many clients).
    pub uncapped: Arc<[IpNet]>,
}

/// A connection's place in its address's count, held (through an `Arc` in
/// each request's extensions) by whatever serves it: the HTTP connection,
/// then the WebSocket proxy after an upgrade.
#[derive(Debug)]
pub struct ConnectionSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    group: Option<IpAddr>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let Some(group) = self.group else { return };
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&group) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&group);
            }
        }
    }
}

/// Live connections per address group.
#[derive(Clone)]
struct Counts {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max: usize,
    uncapped: Arc<[IpNet]>,
}

impl Counts {
    /// A slot for a connection from `ip`, or None when its address is full.
    fn admit(&self, ip: IpAddr) -> Option<ConnectionSlot> {
        if self.max == 0 || self.uncapped.iter().any(|n| n.contains(&ip)) {
            return Some(ConnectionSlot {
                counts: self.counts.clone(),
                group: None,
            });
        }
        let group = address_group(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(group).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            counts: self.counts.clone(),
            group: Some(group),
        })
    }
}

/// What a connection over the cap is told before it is closed.
fn refusal() -> String {
    const BODY: &str = "too many open connections from your address\n";
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
         content-type: text/plain\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    )
}

/// Serves `app` on `listener` until `stop` is cancelled, then drains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let counts = Counts {
        counts: Arc::default(),
        max: limits.max_connections_per_address,
        uncapped: limits.uncapped.clone(),
    };
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let Some(slot) = counts.admit(peer.ip()) else {
            metrics.connections_refused.inc();
            tracing::debug!(%peer, "connection refused: too many from this address");
            // Best effort: it is closed either way.
            let _ = tcp.try_write(refusal().as_bytes());
            continue;
        };
        connections.spawn(serve_connection(
            tcp,
            peer,
            Arc::new(slot),
            app.clone(),
            limits.clone(),
            stop.clone(),
        ));
    }
    connections.close();
    if tokio::time::timeout(DRAIN, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {DRAIN:?}; stopping anyway");
    }
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    slot: Arc<ConnectionSlot>,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
) {
    // Terminal echo is latency-bound: no Nagle delay.
    let _ = tcp.set_nodelay(true);
    let svc = tower::ServiceBuilder::new()
        .map_request(move |mut req: axum::http::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(slot.clone());
            req
        })
        .layer(RequestBodyTimeoutLayer::new(limits.body_read_timeout))
        .map_request(|req: axum::http::Request<_>| req.map(Body::new))
        .service(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let conn = builder
        .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(svc))
        .with_upgrades();
    let mut conn = pin!(conn);
    let done = tokio::select! {
        r = conn.as_mut() => Some(r),
        () = stop.cancelled() => None,
    };
    let result = match done {
        Some(r) => r,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}

/// Accept errors are about one connection (it went before we took it) or
/// about us (out of file descriptors): the latter get a pause, so that a
/// full table is not spun on.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted) {
        return;
    }
    tracing::warn!("accepting a connection: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_counts_per_address_group_and_frees_slots() {
        let c = Counts {
            counts: Arc::default(),
            max: 2,
            uncapped: vec!["10.0.0.0/8".parse().unwrap()].into(),
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a1 = c.admit(ip("192.0.2.1")).unwrap();
        let _a2 = c.admit(ip("192.0.2.1")).unwrap();
        assert!(c.admit(ip("192.0.2.1")).is_none());
        assert!(c.admit(ip("192.0.2.2")).is_some(), "another address");
        let _v1 = c.admit(ip("2001:db8::1")).unwrap();
        let _v2 = c.admit(ip("2001:db8::2")).unwrap();
        assert!(c.admit(ip("2001:db8::3")).is_none(), "same /64");
        let proxies: Vec<_> = (0..5).map(|_| c.admit(ip("10.1.1.1")).unwrap()).collect();
        assert_eq!(proxies.len(), 5, "trusted proxies are not capped");
        drop(a1);
        assert!(c.admit(ip("192.0.2.1")).is_some(), "a slot came free");
        drop(proxies);
        assert!(
            !c.counts.lock().unwrap().contains_key(&ip("10.1.1.1")),
            "uncapped peers are not counted"
        );
    }
}
