//! The few operating-system calls the tool needs for many connections,
//! besides the open-files limit (`frontdesk::fdlimit`): binding many sockets
//! to one source address, turning a socket's options on, pinning the
//! in-process echo server to CPUs, and reading a process's resident memory.
//! Linux only; elsewhere each one says so and the tool carries on without it.

use std::io;

/// Asks the kernel to pick the source port at `connect` rather than at `bind`
/// (IP_BIND_ADDRESS_NO_PORT), so sockets bound to one source address share the
/// ephemeral port range per destination instead of each reserving a port.
/// Best effort: without it, binding still works, with fewer ports.
#[cfg(target_os = "linux")]
pub fn bind_address_no_port(socket: &impl std::os::fd::AsRawFd) {
    frontdesk::rxstamp::turn_on(socket, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT);
}

#[cfg(not(target_os = "linux"))]
pub fn bind_address_no_port<T>(_socket: &T) {}

/// Pins the calling thread to the given CPUs.
#[cfg(target_os = "linux")]
pub fn pin_current_thread(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: CPU_SET only writes inside `set`; cpu numbers were checked
        // against CPU_SETSIZE when the flags were parsed.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; `set` is valid for the given size.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn pin_current_thread(_cpus: &[usize]) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "pinning threads is only implemented on Linux",
    ))
}

/// The largest CPU number `pin_current_thread` accepts, plus one.
#[cfg(target_os = "linux")]
pub const MAX_CPUS: usize = libc::CPU_SETSIZE as usize;
#[cfg(not(target_os = "linux"))]
pub const MAX_CPUS: usize = 1024;

/// A process's resident memory in KiB, from `VmRSS` in /proc/PID/status.
pub fn vm_rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&status).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no VmRSS line in /proc/{pid}/status"),
        )
    })
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tfrontdesk\nVmPeak:\t  300 kB\nVmRSS:\t   21504 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(21504));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_own_rss() {
        assert!(vm_rss_kib(std::process::id()).unwrap() > 0);
    }
}
