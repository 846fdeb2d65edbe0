//! Free TCP ports on the loopback interface.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, OnceLock};

use crate::error::LabError;

/// The only address lab servers listen on.
pub const LAB_HOST: &str = "127.0.0.1";

/// Picks a loopback port that is free right now and that this process has
/// not handed out before.
///
/// The port is released before the server binds it, so another process can
/// still take it in between; cluster start retries with a new port when the
/// server reports "address already in use".
pub fn free_port() -> Result<u16, LabError> {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let handed_out = HANDED_OUT.get_or_init(Default::default);
    for _ in 0..64 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| LabError::io("binding 127.0.0.1:0 to find a free port", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| LabError::io("reading the address of a probe socket", e))?
            .port();
        drop(listener);
        if handed_out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(port)
        {
            return Ok(port);
        }
    }
    Err(LabError::Setup(
        "found no loopback port not already handed out".into(),
    ))
}
