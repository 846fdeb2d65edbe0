//! A TCP proxy between a client under test and a lab server, to break the
//! network on command: cut every connection, stall them (bytes stop flowing
//! but the sockets stay open, like a partition), refuse new ones, or cut
//! once a number of bytes has passed (to land in the middle of a COPY).
//!
//! ```no_run
//! # async fn demo(target: &pgmig_testkit::Cluster) -> Result<(), pgmig_testkit::LabError> {
//! let proxy = pgmig_testkit::Proxy::start(target).await?;
//! let conninfo = proxy.conninfo("app"); // hand this to the code under test
//! proxy.cut_after_bytes(proxy.bytes_forwarded() + 1_000_000);
//! // ... later
//! proxy.stall();
//! proxy.resume();
//! proxy.cut();
//! # Ok(()) }
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::cluster::{Cluster, LAB_SUPERUSER, conninfo_value};
use crate::error::LabError;
use crate::port::LAB_HOST;

/// No byte limit set by [`Proxy::cut_after_bytes`].
const NO_LIMIT: u64 = u64::MAX;

/// A loopback TCP proxy in front of one server; stops when dropped (every
/// connection through it is closed then).
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

#[derive(Debug)]
struct State {
    upstream: SocketAddr,
    /// `true` while no byte may pass.
    stalled: watch::Sender<bool>,
    /// Bumped by every cut; connections opened before it close.
    cuts: watch::Sender<u64>,
    refusing: AtomicBool,
    forwarded: AtomicU64,
    cut_after: AtomicU64,
    open: AtomicUsize,
    accepted: AtomicUsize,
}

impl Proxy {
    /// Starts a proxy on a free loopback port in front of `cluster`.
    pub async fn start(cluster: &Cluster) -> Result<Proxy, LabError> {
        Proxy::start_to(SocketAddr::from((Ipv4Addr::LOCALHOST, cluster.port()))).await
    }

    /// Starts a proxy on a free loopback port in front of `upstream`.
    pub async fn start_to(upstream: SocketAddr) -> Result<Proxy, LabError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|e| LabError::io("binding the proxy's listening socket", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| LabError::io("reading the proxy's address", e))?
            .port();
        let state = Arc::new(State {
            upstream,
            stalled: watch::channel(false).0,
            cuts: watch::channel(0).0,
            refusing: AtomicBool::new(false),
            forwarded: AtomicU64::new(0),
            cut_after: AtomicU64::new(NO_LIMIT),
            open: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, state.clone()));
        debug!(port, %upstream, "proxy started");
        Ok(Proxy {
            port,
            state,
            accept,
        })
    }

    /// The loopback port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address clients connect to (`127.0.0.1`).
    pub fn host(&self) -> &str {
        LAB_HOST
    }

    /// A libpq key=value connection string for `dbname` through the proxy,
    /// as the lab superuser (like [`Cluster::conninfo`]).
    pub fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host={LAB_HOST} port={} user={LAB_SUPERUSER} dbname={}",
            self.port,
            conninfo_value(dbname)
        )
    }

    /// Closes every open connection now; new ones are accepted as before.
    pub fn cut(&self) {
        self.state.cut();
    }

    /// Stops forwarding bytes on every connection, open and new, while
    /// keeping the sockets open: the peers see silence, not a close.
    pub fn stall(&self) {
        self.state.stalled.send_replace(true);
    }

    /// Forwards bytes again after [`Proxy::stall`].
    pub fn resume(&self) {
        self.state.stalled.send_replace(false);
    }

    /// While `true`, new connections are closed as soon as they are accepted
    /// (the server looks down); open ones are not touched.
    pub fn refuse(&self, refuse: bool) {
        self.state.refusing.store(refuse, Ordering::SeqCst);
    }

    /// Cuts every connection once [`Proxy::bytes_forwarded`] reaches `total`
    /// (once; the limit is cleared by the cut).
    pub fn cut_after_bytes(&self, total: u64) {
        self.state.cut_after.store(total, Ordering::SeqCst);
        if self.state.forwarded.load(Ordering::SeqCst) >= total {
            self.state.cut_if_over_limit();
        }
    }

    /// Whether a limit set by [`Proxy::cut_after_bytes`] is still waiting.
    pub fn cut_pending(&self) -> bool {
        self.state.cut_after.load(Ordering::SeqCst) != NO_LIMIT
    }

    /// Bytes forwarded so far, both directions, all connections.
    pub fn bytes_forwarded(&self) -> u64 {
        self.state.forwarded.load(Ordering::SeqCst)
    }

    /// Connections open through the proxy now.
    pub fn open_connections(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    /// Connections accepted since the start (including refused ones).
    pub fn accepted_connections(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// How many cuts happened (by [`Proxy::cut`] or a byte limit).
    pub fn cuts(&self) -> u64 {
        *self.state.cuts.borrow()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.state.cut();
    }
}

impl State {
    fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Cuts once when the byte limit is reached, and clears the limit.
    fn cut_if_over_limit(&self) {
        let limit = self.cut_after.load(Ordering::SeqCst);
        if limit != NO_LIMIT
            && self.forwarded.load(Ordering::SeqCst) >= limit
            && self
                .cut_after
                .compare_exchange(limit, NO_LIMIT, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            debug!(limit, "proxy byte limit reached: cutting");
            self.cut();
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        state.accepted.fetch_add(1, Ordering::SeqCst);
        if state.refusing.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let state = state.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(state.upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let mut cut = state.cuts.subscribe();
            cut.borrow_and_update();
            state.open.fetch_add(1, Ordering::SeqCst);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::select! {
                _ = pump(client_read, server_write, &state) => {}
                _ = pump(server_read, client_write, &state) => {}
                _ = cut.changed() => {}
            }
            state.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Copies `from` to `to` until either side closes, waiting while stalled.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, state: &State) {
    let mut stalled = state.stalled.subscribe();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just before a stall are held back too.
        if stalled.wait_for(|s| !*s).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        state.forwarded.fetch_add(n as u64, Ordering::SeqCst);
        state.cut_if_over_limit();
    }
}
