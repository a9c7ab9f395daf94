//! Child processes of a test run: free ports, scratch directories, and children that die with the
//! test process.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};

/// A port nothing listens on right now (the OS picks it; another process may still take it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

/// A scratch directory of this test run, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "shardman-tests-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Makes the child die with the test process, even when the test binary is killed. PDEATHSIG
/// follows the spawning thread: a child that must outlive one test is spawned from a thread that
/// lives as long as the process (see `redis::shared_redis`).
pub fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; it only sets a flag on the child.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

pub fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
}

/// kill -9 and reap, continuing it first in case it is stopped (SIGSTOP).
pub fn kill(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        signal(&child, libc::SIGCONT);
        let _ = child.kill();
        let _ = child.wait();
    }
}
