//! What the process reports of itself with every beat (no extra request): its CPU time and
//! resident memory, from `/proc` (Linux; elsewhere they are left out), and the label shardman
//! lists its sessions under.

/// shardman takes process labels of at most this many characters.
pub const PROCESS_LABEL_MAX_CHARS: usize = 128;

/// Clock ticks per second of `/proc/<pid>/stat`'s times: `USER_HZ`, 100 in the kernel's ABI on
/// every architecture Rust targets (no `sysconf` without libc, which this crate does without).
const USER_HZ: f64 = 100.0;

/// This process's CPU time so far and its resident memory now.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessUsage {
    /// User and system CPU time of every thread, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident memory, in bytes.
    pub rss_bytes: Option<u64>,
}

impl ProcessUsage {
    /// Read now; a figure the system does not show is `None`.
    pub fn now() -> Self {
        Self {
            cpu_seconds: std::fs::read_to_string("/proc/self/stat")
                .ok()
                .and_then(|stat| cpu_seconds_of(&stat)),
            rss_bytes: std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|status| rss_bytes_of(&status)),
        }
    }
}

/// `utime + stime` of a `/proc/<pid>/stat` line, in seconds. The command name (second field) may
/// hold spaces and parentheses, so fields are counted from its closing parenthesis.
fn cpu_seconds_of(stat: &str) -> Option<f64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // After the name: state (field 3), ..., utime (field 14), stime (field 15).
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / USER_HZ)
}

/// `VmRSS` of `/proc/<pid>/status`, in bytes (it is given in kB: no page size needed).
fn rss_bytes_of(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kibibytes: u64 = line["VmRSS:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kibibytes * 1024)
}

/// `<hostname>:<pid>`: unique among a fleet's running processes (cut from the left if long).
pub fn default_process_label() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let label = format!("{host}:{}", std::process::id());
    let extra = label
        .chars()
        .count()
        .saturating_sub(PROCESS_LABEL_MAX_CHARS);
    label.chars().skip(extra).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_user_plus_system_ticks_whatever_the_command_name_holds() {
        let stat = "4242 (bot (shard) 1) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9";
        assert_eq!(cpu_seconds_of(stat), Some(3.25));
        assert_eq!(cpu_seconds_of("4242 (bot) S 1"), None);
    }

    #[test]
    fn resident_memory_is_vm_rss_in_bytes() {
        let status = "Name:\tbot\nVmPeak:\t  900000 kB\nVmRSS:\t  183296 kB\nThreads:\t4\n";
        assert_eq!(rss_bytes_of(status), Some(183_296 * 1024));
        assert_eq!(rss_bytes_of("Name:\tbot\n"), None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn this_process_s_usage_is_read_from_proc() {
        let before = ProcessUsage::now();
        let spin: u64 = (0..20_000_000u64).map(|i| i % 7).sum();
        let after = ProcessUsage::now();
        assert!(spin > 0);
        assert!(after.cpu_seconds >= before.cpu_seconds && after.cpu_seconds.is_some());
        assert!(after.rss_bytes.is_some_and(|bytes| bytes > 1024 * 1024));
    }

    #[test]
    fn the_default_label_is_host_and_pid_within_the_limit() {
        let label = default_process_label();
        assert!(label.ends_with(&format!(":{}", std::process::id())));
        assert!(label.chars().count() <= PROCESS_LABEL_MAX_CHARS);
    }
}
