//! When a reply reached the generator's socket, as opposed to when the
//! generator got round to reading it.
//!
//! Replies come in groups, a group commit's worth at a time, and one runtime
//! reads them one after another: the last of a few hundred is read well
//! after the kernel received it. The kernel stamps every segment it receives
//! (`SO_TIMESTAMPNS`), and `recvmsg` hands the stamp of the last segment a
//! read took (`frontdesk::rxstamp`). [`StampedStream`] reads that way and keeps the stamp, so a
//! reply's latency can also be counted up to its arrival at the socket, the
//! part the generator's own reading adds left out.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::SystemTime;

use frontdesk::rxstamp;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream that remembers when the kernel received the last segment
/// it read.
pub struct StampedStream {
    inner: TcpStream,
    /// Wall-clock time the kernel stamped on the last segment read, if the
    /// kernel stamps segments.
    received: Option<SystemTime>,
}

impl StampedStream {
    /// Asks the kernel to stamp the stream's incoming segments; where it
    /// cannot, the stream reads as usual and has no stamps.
    pub fn new(inner: TcpStream) -> StampedStream {
        rxstamp::enable(&inner);
        StampedStream {
            inner,
            received: None,
        }
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
        let stamp = ready!(rxstamp::poll_read(&this.inner, cx, buf))?;
        if stamp.is_some() {
            this.received = stamp;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for StampedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
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
        let mut stamped = StampedStream::new(client);
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
