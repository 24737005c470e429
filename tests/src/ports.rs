//! Loopback port helpers for tests that start real servers.
//!
//! Every broker and proxy in the harness listens on `127.0.0.1` only: end-to-end
//! tests must never send traffic anywhere but this machine.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use anyhow::{bail, Context};

/// Asks the kernel for a free TCP port on `127.0.0.1`.
///
/// The port is released before returning, so another process could in theory
/// take it before the caller binds it. That race is accepted: it is how external
/// binaries such as `mosquitto` must be given a port, since they take the port
/// number from a config file and cannot be handed an already-bound socket.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("binding 127.0.0.1:0 to find a free port")?;
    let port = listener
        .local_addr()
        .context("reading the address of a 127.0.0.1:0 listener")?
        .port();
    drop(listener);
    Ok(port)
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`.
///
/// Servers started as child processes take a moment to bind; tests poll with
/// this instead of sleeping a guessed amount. The probe connection is closed at
/// once, so a broker only logs a client that went away before `CONNECT`.
pub async fn wait_for_port(port: u16, timeout: Duration) -> anyhow::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last_err = match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => {
                drop(stream);
                return Ok(());
            }
            Err(err) => err,
        };
        if tokio::time::Instant::now() >= deadline {
            bail!("nothing listening on {addr} after {timeout:?}: last error: {last_err}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        // Binding it right away must work: nobody else should have it.
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }

    #[tokio::test]
    async fn wait_for_port_sees_a_listener() {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        wait_for_port(port, Duration::from_secs(2)).await.unwrap();
    }

    #[tokio::test]
    async fn wait_for_port_times_out() {
        let port = free_port().unwrap();
        let started = std::time::Instant::now();
        let err = wait_for_port(port, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nothing listening"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
