//! Loopback sockets and the processes that hold them, read off `/proc`: which process listens on a
//! port, which one is at the other end of a connection.

/// One socket of `/proc/net/tcp` (or `tcp6`).
pub struct TcpSocket {
    pub local_port: u16,
    pub remote_port: u16,
    pub listening: bool,
    pub inode: u64,
}

/// Every TCP socket of this network namespace (IPv4, then IPv6).
pub fn tcp_sockets() -> Vec<TcpSocket> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| parse_table(&table))
        .collect()
}

/// Whether process `pid` has the socket `inode` among its open files.
pub fn holds(pid: u32, inode: u64) -> bool {
    let wanted = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| target.to_string_lossy() == wanted)
        })
}

/// The rows of a `/proc/net/tcp` table: ports are the hex digits after the last `:` of each
/// address, state `0A` is LISTEN, the inode is the tenth field.
fn parse_table(table: &str) -> Vec<TcpSocket> {
    let port = |address: &str| {
        address
            .rsplit(':')
            .next()
            .and_then(|hex| u16::from_str_radix(hex, 16).ok())
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some(TcpSocket {
                local_port: port(fields.get(1)?)?,
                remote_port: port(fields.get(2)?)?,
                listening: *fields.get(3)? == "0A",
                inode: fields.get(9)?.parse().ok()?,
            })
        })
        .collect()
}
