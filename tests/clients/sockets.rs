//! Which bot process is at the other end of a loopback connection. The stand-in Discord and the
//! recording proxy attribute every connection to a process this way, so the tests judge each
//! process by what the servers saw, not by what it says about itself.

use std::sync::{Arc, Mutex};

use crate::support::sockets;

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
        let inode = sockets::tcp_sockets()
            .into_iter()
            .find(|socket| socket.local_port == peer_port && socket.remote_port == server_port)?
            .inode;
        let pids = self.0.lock().expect("processes").clone();
        pids.into_iter().find(|pid| sockets::holds(*pid, inode))
    }
}
