//! The accept loop `serve` runs instead of `axum::serve`, which has no timeouts and no
//! connection limit. Each connection is hyper's HTTP/1 connection (header-read timeout,
//! keep-alive) under a watchdog that knows whether a request is in flight (from its start to
//! the end of its answer's body, so a live stream is busy, not idle):
//!
//! - a connection that has not sent a whole request within the header timeout is closed;
//! - a keep-alive connection idle for the idle timeout is closed;
//! - at most `max_connections` are open: a new one closes the oldest idle one to make room,
//!   and is itself closed at once if every connection is busy;
//! - an accept error (out of descriptors, say) pauses the loop briefly (10 ms doubling to
//!   1 s) instead of spinning.
//!
//! Slow bodies are cut by the body timeout where bodies are read ([`crate::extract::read_json`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

/// What the server allows one connection.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// A new connection must send a whole request head within this time.
    pub header_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this time.
    pub idle_timeout: Duration,
    /// Open connections at most (see [`super::fds::fit`]).
    pub max_connections: usize,
}

/// One open connection, as the accept loop and the watchdog see it.
#[derive(Debug)]
struct Conn {
    /// Requests started on it.
    served: AtomicU64,
    /// Requests whose answer is not yet fully sent.
    busy: AtomicUsize,
    /// When it last became idle, in ms since the registry's epoch.
    idle_since: AtomicU64,
    /// Closes it (to make room for a new connection).
    evict: Notify,
}

#[derive(Debug)]
struct Registry {
    epoch: Instant,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Registers a new connection, closing the oldest idle one if `max` are open; None when
    /// every open connection is busy.
    fn admit(&self, max: usize) -> Option<(u64, Arc<Conn>)> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        while open.len() >= max.max(1) {
            let oldest = open
                .iter()
                .filter(|(_, conn)| conn.busy.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, conn)| conn.idle_since.load(Ordering::Acquire))
                .map(|(id, _)| *id)?;
            if let Some(conn) = open.remove(&oldest) {
                conn.evict.notify_one();
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            served: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.now_ms()),
            evict: Notify::new(),
        });
        open.insert(id, Arc::clone(&conn));
        Some((id, conn))
    }

    fn remove(&self, id: u64) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.remove(&id);
    }
}

/// Serves `app` on `listener` until `stop` turns true; then accepts no more, lets requests in
/// flight finish and returns when every connection has closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: ServerConfig,
    mut stop: watch::Receiver<bool>,
) {
    let registry = Arc::new(Registry {
        epoch: Instant::now(),
        next: AtomicU64::new(0),
        open: Mutex::new(HashMap::new()),
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let mut connections = JoinSet::new();
    let mut pause = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                pause = Duration::from_millis(10);
                let Some((id, conn)) = registry.admit(config.max_connections) else {
                    tracing::debug!("every connection is busy: closing a new one");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let connection = Connection {
                    id,
                    conn,
                    registry: Arc::clone(&registry),
                    config: config.clone(),
                };
                connections.spawn(connection.run(
                    stream,
                    app.clone(),
                    Arc::clone(&builder),
                    stop.clone(),
                ));
            }
            Err(error) => {
                tracing::warn!(%error, pause_ms = pause.as_millis() as u64, "accept failed");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

struct Connection {
    id: u64,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
    config: ServerConfig,
}

impl Connection {
    async fn run(
        self,
        stream: TcpStream,
        app: Router,
        builder: Arc<http1::Builder>,
        mut stop: watch::Receiver<bool>,
    ) {
        let router = TowerToHyperService::new(app);
        let tracked = Arc::clone(&self.conn);
        let epoch = self.registry.epoch;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let busy = Busy::enter(Arc::clone(&tracked), epoch);
            let answer = router.call(request);
            async move {
                let response = answer.await?;
                Ok::<_, Infallible>(response.map(|body| Tracked { body, _busy: busy }))
            }
        });
        // Leaves the registry however the task ends (a panicking handler included).
        let _registered = Registered {
            registry: Arc::clone(&self.registry),
            id: self.id,
        };
        let serving = builder.serve_connection(TokioIo::new(stream), service);
        let mut serving = std::pin::pin!(serving);
        let mut stopping = false;
        loop {
            let deadline = self.idle_deadline();
            tokio::select! {
                result = serving.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    break;
                }
                () = self.conn.evict.notified() => {
                    tracing::debug!("closing an idle connection to make room");
                    break;
                }
                _ = stop.wait_for(|stop| *stop), if !stopping => {
                    stopping = true;
                    serving.as_mut().graceful_shutdown();
                }
                () = tokio::time::sleep_until(deadline.into()) => {
                    if self.idle_deadline() <= Instant::now() {
                        tracing::debug!("closing an idle connection");
                        break;
                    }
                }
            }
        }
    }

    /// When the connection is to be closed if it stays idle: the header timeout before its
    /// first request, the idle timeout after; a busy one is looked at again one period on.
    fn idle_deadline(&self) -> Instant {
        let limit = match self.conn.served.load(Ordering::Acquire) {
            0 => self.config.header_timeout,
            _ => self.config.idle_timeout,
        };
        if self.conn.busy.load(Ordering::Acquire) > 0 {
            return Instant::now() + limit;
        }
        let since = Duration::from_millis(self.conn.idle_since.load(Ordering::Acquire));
        self.registry.epoch + since + limit
    }
}

/// A connection's place in the registry, given up when dropped.
struct Registered {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

/// A request in flight on a connection, from its start until its answer's body is dropped.
#[derive(Debug)]
struct Busy {
    conn: Arc<Conn>,
    epoch: Instant,
}

impl Busy {
    fn enter(conn: Arc<Conn>, epoch: Instant) -> Busy {
        conn.served.fetch_add(1, Ordering::AcqRel);
        conn.busy.fetch_add(1, Ordering::AcqRel);
        Busy { conn, epoch }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.conn.idle_since.store(now, Ordering::Release);
        self.conn.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An answer's body that keeps its request counted as in flight until it is dropped.
#[derive(Debug)]
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
