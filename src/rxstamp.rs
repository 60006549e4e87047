//! The kernel's receive stamps on TCP reads.
//!
//! A reply's latency counted from when its frame was *read* leaves out the
//! time the frame waited in the socket's receive buffer, which grows while
//! the one runtime thread is busy (sending a commit's worth of replies,
//! say). The kernel stamps every segment it receives (`SO_TIMESTAMPNS`), and
//! `recvmsg` hands back the stamp of the last segment a read took. The
//! server reads its websockets this way to count replies from their frame's
//! arrival; the load generator does, to count latency up to a reply's
//! arrival.

use std::io;
use std::os::fd::AsRawFd;
use std::task::{ready, Context, Poll};
use std::time::{Instant, SystemTime};

use tokio::io::{Interest, ReadBuf};
use tokio::net::TcpStream;

/// `SO_TIMESTAMPNS` (`SO_TIMESTAMPNS_OLD`, which on 64-bit Linux carries a
/// 64-bit `timespec`); the stamp comes back as a control message of the same
/// type.
#[cfg(target_os = "linux")]
const SO_TIMESTAMPNS: libc::c_int = 35;

/// Asks the kernel to stamp the socket's incoming segments. Best effort:
/// where it cannot, reads carry no stamps.
#[cfg(target_os = "linux")]
pub fn enable(socket: &impl AsRawFd) {
    turn_on(socket, libc::SOL_SOCKET, SO_TIMESTAMPNS);
}

#[cfg(not(target_os = "linux"))]
pub fn enable(_: &impl AsRawFd) {}

/// Sets a socket's integer option to 1. Best effort: the options turned on
/// this way (stamps here, the load generator's source-port binding) only
/// make a measurement better or a run larger.
#[cfg(target_os = "linux")]
pub fn turn_on(socket: &impl AsRawFd, level: libc::c_int, option: libc::c_int) {
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is a live socket owned by the caller, and the
    // option value is a c_int of the size passed.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Reads into `buf` as `AsyncRead::poll_read` does, and gives the stamp of
/// the last segment read, if the kernel stamped it.
///
/// Like tokio's own read, a read that fills less than the buffer marks the
/// socket drained, so the next read waits for the runtime to say there is
/// more instead of trying a `recvmsg` that finds nothing.
pub fn poll_read(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<Option<SystemTime>>> {
    loop {
        ready!(stream.poll_read_ready(cx))?;
        let unfilled = buf.initialize_unfilled();
        let wanted = unfilled.len();
        let mut short = None;
        let read = stream.try_io(Interest::READABLE, || {
            let (n, stamp) = recv_stamped(stream, unfilled)?;
            if n > 0 && n < wanted {
                // `try_io` clears the readiness when its closure reports
                // WouldBlock; the bytes read are handed out below.
                short = Some((n, stamp));
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok((n, stamp))
        });
        match (read, short) {
            (_, Some((n, stamp))) | (Ok((n, stamp)), None) => {
                buf.advance(n);
                return Poll::Ready(Ok(stamp));
            }
            // The readiness was stale; try_io has cleared it.
            (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => {}
            (Err(e), None) => return Poll::Ready(Err(e)),
        }
    }
}

/// The instant on the monotonic clock at which `stamp` (wall-clock) fell,
/// reckoned back from `now`; never after `now`.
pub fn instant_of(stamp: SystemTime, now: Instant) -> Instant {
    let ago = SystemTime::now().duration_since(stamp).unwrap_or_default();
    now.checked_sub(ago).unwrap_or(now)
}

/// One `recvmsg` into `buf`: the bytes read, and the stamp of the last
/// segment they came from, if the kernel gave one.
#[cfg(target_os = "linux")]
fn recv_stamped(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<(usize, Option<SystemTime>)> {
    // Room for one control message holding a timespec, aligned for cmsghdr.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all zeroes is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: `msg` points at `iov` (over `buf`) and `control`, all of which
    // outlive the call and are writable for the lengths given.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: the kernel filled `msg`'s control buffer; CMSG_FIRSTHDR and
    // CMSG_NXTHDR stay within msg_controllen, and a SO_TIMESTAMPNS message's
    // data is a timespec, read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == SO_TIMESTAMPNS {
                let ts: libc::timespec =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                stamp = Some(
                    SystemTime::UNIX_EPOCH
                        + std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32),
                );
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, stamp))
}

#[cfg(not(target_os = "linux"))]
fn recv_stamped(socket: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, Option<SystemTime>)> {
    socket.try_read(buf).map(|n| (n, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    async fn read(stream: &TcpStream, bytes: &mut [u8]) -> (usize, Option<SystemTime>) {
        let mut buf = ReadBuf::new(bytes);
        let stamp = std::future::poll_fn(|cx| poll_read(stream, cx, &mut buf))
            .await
            .unwrap();
        (buf.filled().len(), stamp)
    }

    /// The kernel turns stamping on for all sockets a moment after the first
    /// asks for it, so the first segments may come unstamped; one soon is.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_read_gives_the_kernels_stamp_of_its_segment() {
        let (client, mut server) = pair().await;
        enable(&client);
        let mut bytes = [0u8; 16];
        for _ in 0..100 {
            let before = SystemTime::now();
            server.write_all(b"hello").await.unwrap();
            let (n, stamp) = read(&client, &mut bytes).await;
            assert_eq!(&bytes[..n], b"hello");
            if let Some(stamp) = stamp {
                assert!(stamp >= before, "stamped when it came, after it was sent");
                assert!(stamp <= SystemTime::now());
                let now = Instant::now();
                assert!(instant_of(stamp, now) <= now);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the kernel stamps segments on Linux");
    }

    #[tokio::test]
    async fn without_stamps_a_read_reads() {
        let (client, mut server) = pair().await;
        server.write_all(b"plain").await.unwrap();
        let mut bytes = [0u8; 16];
        let (n, stamp) = read(&client, &mut bytes).await;
        assert_eq!((&bytes[..n], stamp), (&b"plain"[..], None));
    }

    /// A short read is handed out although the closure reported WouldBlock
    /// to clear the readiness, and the next read still wakes for new bytes
    /// and for the end of the stream.
    #[tokio::test]
    async fn short_reads_keep_their_bytes_and_later_ones_still_wake() {
        let (client, mut server) = pair().await;
        enable(&client);
        let mut bytes = [0u8; 16];
        server.write_all(b"one").await.unwrap();
        let (n, _) = read(&client, &mut bytes).await;
        assert_eq!(&bytes[..n], b"one");
        let writer = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            server.write_all(b"two").await.unwrap();
            server
        });
        let (n, _) = read(&client, &mut bytes).await;
        assert_eq!(&bytes[..n], b"two");
        drop(writer.await.unwrap());
        let (n, _) = read(&client, &mut bytes).await;
        assert_eq!(n, 0, "the end of the stream");
    }

    /// A read that fills the whole buffer leaves the rest for the next read.
    #[tokio::test]
    async fn a_full_read_leaves_the_rest_readable() {
        let (client, mut server) = pair().await;
        server.write_all(b"abcdefgh").await.unwrap();
        let mut bytes = [0u8; 4];
        let (n, _) = read(&client, &mut bytes).await;
        assert_eq!(&bytes[..n], b"abcd");
        let (n, _) = read(&client, &mut bytes).await;
        assert_eq!(&bytes[..n], b"efgh");
    }
}
