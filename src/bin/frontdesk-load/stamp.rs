//! When a reply reached the generator's socket, as opposed to when the
//! generator got round to reading it.
//!
//! Replies come in groups, a group commit's worth at a time, and one runtime
//! reads them one after another: the last of a few hundred is read well
//! after the kernel received it. The kernel stamps every segment it receives
//! (`SO_TIMESTAMPNS`), and `recvmsg` hands the stamp of the last segment a
//! read took. [`StampedStream`] reads that way and keeps the stamp, so a
//! reply's latency can also be counted up to its arrival at the socket, the
//! part the generator's own reading adds left out.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::SystemTime;

use std::io::Write;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream that remembers when the kernel received the last segment
/// it read. It is registered with the runtime as a plain descriptor, so that
/// a read that fills less than the buffer can mark the socket drained, as
/// tokio's own `TcpStream` does; otherwise every message would cost a second
/// `recvmsg` that finds nothing.
pub struct StampedStream {
    inner: AsyncFd<std::net::TcpStream>,
    /// Wall-clock time the kernel stamped on the last segment read, if the
    /// kernel stamps segments.
    received: Option<SystemTime>,
}

impl StampedStream {
    /// Asks the kernel to stamp the stream's incoming segments (where it
    /// cannot, the stream reads as usual and has no stamps), and registers
    /// the stream with the runtime.
    pub fn new(stream: TcpStream) -> io::Result<StampedStream> {
        enable_stamps(&stream);
        let std = stream.into_std()?;
        // SAFETY: the std stream owns its descriptor and moves into the
        // AsyncFd, so the descriptor stays open and the same until it drops.
        let inner = unsafe {
            AsyncFd::register_with_interest(std, Interest::READABLE | Interest::WRITABLE)
        }
        .map_err(io::Error::from)?;
        Ok(StampedStream {
            inner,
            received: None,
        })
    }

    /// When the kernel received the last segment read.
    pub fn received(&self) -> Option<SystemTime> {
        self.received
    }
}

impl AsyncRead for StampedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let mut ready = ready!(this.inner.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let wanted = unfilled.len();
            match ready.try_io(|fd| read_stamped(fd.get_ref(), unfilled)) {
                Ok(Ok((n, stamp))) => {
                    // Less than asked for: the socket is drained.
                    if n > 0 && n < wanted {
                        ready.clear_ready();
                    }
                    buf.advance(n);
                    if stamp.is_some() {
                        this.received = stamp;
                    }
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // The readiness was stale; try_io has cleared it.
                Err(_would_block) => {}
            }
        }
    }
}

impl AsyncWrite for StampedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            let mut ready = ready!(this.inner.poll_write_ready(cx))?;
            match ready.try_io(|fd| fd.get_ref().write(buf)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => {}
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.inner.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

/// `SO_TIMESTAMPNS` (`SO_TIMESTAMPNS_OLD`, which on 64-bit Linux carries a
/// 64-bit `timespec`); the stamp comes back as a control message of the
/// same type.
#[cfg(target_os = "linux")]
const SO_TIMESTAMPNS: libc::c_int = 35;

#[cfg(target_os = "linux")]
fn enable_stamps(stream: &TcpStream) {
    crate::sys::turn_on(stream, libc::SOL_SOCKET, SO_TIMESTAMPNS);
}

#[cfg(not(target_os = "linux"))]
fn enable_stamps(_: &TcpStream) {}

/// One `recvmsg` into `buf`: the bytes read, and the stamp of the last
/// segment they came from, if the kernel gave one.
#[cfg(target_os = "linux")]
fn read_stamped(
    stream: &std::net::TcpStream,
    buf: &mut [u8],
) -> io::Result<(usize, Option<SystemTime>)> {
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
fn read_stamped(
    stream: &std::net::TcpStream,
    buf: &mut [u8],
) -> io::Result<(usize, Option<SystemTime>)> {
    use std::io::Read;
    let mut stream = stream;
    stream.read(buf).map(|n| (n, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_read_keeps_the_kernels_stamp_of_its_segment() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let mut stamped = StampedStream::new(client).unwrap();
        assert_eq!(stamped.received(), None);

        let before = SystemTime::now();
        server.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        stamped.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        let received = stamped
            .received()
            .expect("the kernel stamps segments on Linux");
        assert!(
            received >= before,
            "stamped when it came, after it was sent"
        );
        assert!(received <= SystemTime::now());

        // Writing goes through to the peer unchanged.
        stamped.write_all(b"back").await.unwrap();
        let mut echoed = [0u8; 4];
        server.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"back");
    }
}
