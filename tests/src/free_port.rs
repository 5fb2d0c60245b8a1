//! Free loopback ports.

use std::net::TcpListener;

use crate::HarnessError;

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it; we release it for the server).
pub fn free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(HarnessError::io("binding a free port"))?;
    let port = listener.local_addr().map_err(HarnessError::io("reading the bound port"))?.port();
    Ok(port)
}
