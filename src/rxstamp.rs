//! The kernel's receive stamps on TCP reads.
//!
//! A reply's latency counted from when its frame was *read* leaves out the
//! time the frame waited in the socket's receive buffer, which grows while
//! the one runtime thread is busy (sending a commit's worth of replies, say).
//! The kernel stamps every segment it receives (`SO_TIMESTAMPNS`), and
//! `recvmsg` hands back the stamp of the last segment a read took. The server
//! reads its websockets this way to count replies from their frame's arrival;
//! the load generator does, to count latency up to a reply's arrival.

use std::io;
use std::task::{ready, Context, Poll};
use std::time::{Instant, SystemTime};

use tokio::io::ReadBuf;
use tokio::net::TcpStream;

/// `SO_TIMESTAMPNS` (`SO_TIMESTAMPNS_OLD`, which on 64-bit Linux carries a
/// 64-bit `timespec`); the stamp comes back as a control message of the same
/// type.
#[cfg(target_os = "linux")]
const SO_TIMESTAMPNS: libc::c_int = 35;

/// Asks the kernel to stamp the stream's incoming segments. Best effort:
/// where it cannot, reads carry no stamps.
#[cfg(target_os = "linux")]
pub fn enable(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is a live socket owned by `stream`, and the
    // option value is a c_int of the size passed.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(not(target_os = "linux"))]
pub fn enable(_: &TcpStream) {}

/// Reads into `buf` as `AsyncRead::poll_read` does, and gives the stamp of
/// the last segment read, if the kernel stamped it.
pub fn poll_read(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<Option<SystemTime>>> {
    loop {
        ready!(stream.poll_read_ready(cx))?;
        let unfilled = buf.initialize_unfilled();
        match stream.try_io(tokio::io::Interest::READABLE, || {
            read_stamped(stream, unfilled)
        }) {
            Ok((n, stamp)) => {
                buf.advance(n);
                return Poll::Ready(Ok(stamp));
            }
            // The readiness was stale; try_io has cleared it.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Poll::Ready(Err(e)),
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
fn read_stamped(stream: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, Option<SystemTime>)> {
    use std::os::fd::AsRawFd;
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
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
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
fn read_stamped(stream: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, Option<SystemTime>)> {
    stream.try_read(buf).map(|n| (n, None))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_read_gives_the_kernels_stamp_of_its_segment() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        enable(&client);
        let before = SystemTime::now();
        server.write_all(b"hello").await.unwrap();
        let mut bytes = [0u8; 16];
        let mut buf = ReadBuf::new(&mut bytes);
        let stamp = std::future::poll_fn(|cx| poll_read(&client, cx, &mut buf))
            .await
            .unwrap()
            .expect("the kernel stamps segments on Linux");
        assert_eq!(buf.filled(), b"hello");
        assert!(stamp >= before, "stamped when it came, after it was sent");
        assert!(stamp <= SystemTime::now());
        let now = Instant::now();
        assert!(instant_of(stamp, now) <= now);
    }

    #[tokio::test]
    async fn without_stamps_a_read_reads() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        server.write_all(b"plain").await.unwrap();
        let mut bytes = [0u8; 16];
        let mut buf = ReadBuf::new(&mut bytes);
        let stamp = std::future::poll_fn(|cx| poll_read(&client, cx, &mut buf))
            .await
            .unwrap();
        assert_eq!((buf.filled(), stamp), (&b"plain"[..], None));
    }
}
