//! The open-files limit. Every connection holds a file descriptor, so a
//! server for tens of thousands of visitors needs more than the soft limit
//! that shells and service managers usually hand out (often 1,024, under a
//! hard limit hundreds of times larger). Both the server and the load
//! generator raise the soft limit to the hard one when they start, as the
//! limit is meant to be used.

use std::io;

/// The open-files limit: the soft limit in force, and the hard limit it may
/// be raised to.
#[cfg(target_os = "linux")]
fn limits() -> io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit)
}

/// The open-files limit in force (the soft limit).
#[cfg(target_os = "linux")]
pub fn open_files_limit() -> io::Result<u64> {
    limits().map(|l| l.rlim_cur)
}

/// Raises the soft limit on open files to the hard limit, returning the
/// limit now in force.
#[cfg(target_os = "linux")]
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut limit = limits()?;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit that outlives the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

#[cfg(not(target_os = "linux"))]
pub fn open_files_limit() -> io::Result<u64> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "reading the open-files limit is only implemented on Linux",
    ))
}

#[cfg(not(target_os = "linux"))]
pub fn raise_open_files_limit() -> io::Result<u64> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "raising the open-files limit is only implemented on Linux",
    ))
}
