//! Which bot process is at the other end of a loopback connection. The stand-in Discord and the
//! recording proxy attribute every connection to a process this way, so the tests judge each
//! process by what the servers saw, not by what it says about itself.

use std::sync::{Arc, Mutex};

/// The processes a server may attribute its connections to (the bots of one test).
#[derive(Clone, Default)]
pub struct Processes(Arc<Mutex<Vec<u32>>>);

impl Processes {
    pub fn add(&self, pid: u32) {
        self.0.lock().expect("processes").push(pid);
    }

    /// The process holding the client end of the connection from `peer_port` to `server_port`
    /// on 127.0.0.1, if it is one of ours.
    pub fn owner(&self, server_port: u16, peer_port: u16) -> Option<u32> {
        let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|table| std::fs::read_to_string(table).ok())
            .find_map(|table| client_inode(&table, server_port, peer_port))?;
        let wanted = format!("socket:[{inode}]");
        let pids = self.0.lock().expect("processes").clone();
        pids.into_iter().find(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|target| target.to_string_lossy() == wanted)
                })
        })
    }
}

/// The inode of the socket whose local port is `peer_port` and remote port `server_port`, from a
/// `/proc/net/tcp` table (ports are the hex digits after the last `:` of each address).
fn client_inode(table: &str, server_port: u16, peer_port: u16) -> Option<u64> {
    let port = |address: &str| {
        address
            .rsplit(':')
            .next()
            .and_then(|hex| u16::from_str_radix(hex, 16).ok())
    };
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, remote, inode) = (fields.get(1)?, fields.get(2)?, fields.get(9)?);
        (port(local) == Some(peer_port) && port(remote) == Some(server_port))
            .then(|| inode.parse().ok())
            .flatten()
    })
}
