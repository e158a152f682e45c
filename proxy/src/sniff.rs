//! Live passive capture for `uatap analyze -i IFACE`: frames read from a network interface (a
//! SPAN/mirror port, or the gateway's own NIC) in the shape the recorder decodes, and the same
//! TCP reassembly a capture file goes through, so a live run and a file give the same analysis.
//!
//! Linux only: an `AF_PACKET` raw socket bound to the interface, kernel receive timestamps,
//! promiscuous mode on real NICs, no libpcap. Elsewhere [`Sniffer::open`] returns
//! [`SniffError::Unsupported`] (capture with Wireshark/dumpcap and analyse the file instead).
//!
//! Main types: [`Sniffer`] (frames), [`LiveStreams`] (frames → port filter → [`TcpReassembler`]
//! → [`StreamEvent`]s), [`CaptureStats`]. It does not filter in the kernel, write captures, or
//! look at payloads.

use std::io;
use std::time::Duration;

use uatap_recorder::{
    decode_tcp, LinkType, ReassemblyConfig, StreamEvent, TcpReassembler, TcpStats, Timestamp,
};

pub use sys::{catch_interrupts, interrupted, Sniffer};

/// Why live capture could not start or went on no further; each says what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SniffError {
    /// This platform has no live capture (only Linux has).
    #[error(
        "live capture is supported on Linux; on Windows capture with Wireshark/dumpcap and run `uatap analyze FILE`"
    )]
    Unsupported,
    /// The raw socket was refused: not root and no `CAP_NET_RAW`.
    #[error(
        "live capture needs root or CAP_NET_RAW (run it with sudo, or once: sudo setcap cap_net_raw+ep PATH-TO-uatap)"
    )]
    NotPermitted,
    /// No interface has this name.
    #[error("no network interface named {name:?} (interfaces here: {})", .available.join(", "))]
    NoSuchInterface {
        /// The name asked for.
        name: String,
        /// The names that exist, for the message.
        available: Vec<String>,
    },
    /// The interface exists but is down, so nothing would ever arrive.
    #[error("interface {name} is down (bring it up first, e.g. `ip link set {name} up`)")]
    InterfaceDown {
        /// The interface.
        name: String,
    },
    /// The interface's link layer is not one the decoder knows (Ethernet, loopback, raw IP).
    #[error(
        "interface {name} has hardware type {hardware_type} (ARPHRD), which uatap cannot decode; capture it with tcpdump and run `uatap analyze FILE`"
    )]
    UnsupportedInterface {
        /// The interface.
        name: String,
        /// Its `ARPHRD_*` hardware type.
        hardware_type: u16,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// One frame read from the interface, borrowed from the sniffer's buffer until the next read.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// When the kernel received it (the wall clock at read time if the kernel gave none).
    pub ts: Timestamp,
    /// How to find the IP header: Ethernet (also on `lo`, whose header is all zeros) or raw IP.
    pub link_type: LinkType,
    /// The captured bytes, from the link-layer header on; shorter than `wire_len` only when
    /// the frame was larger than the read buffer.
    pub data: &'a [u8],
    /// The frame's length on the wire.
    pub wire_len: usize,
}

/// What a live capture saw, for the closing notes: drops explain gaps in the analysis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames read from the interface (loopback duplicates not counted).
    pub frames: u64,
    /// Loopback frames skipped because each is seen twice (outgoing, then incoming).
    pub loopback_duplicates: u64,
    /// TCP segments handed to reassembly (those of `--port`, when given).
    pub tcp_segments: u64,
    /// Frames left out: not TCP, or TCP of another port.
    pub other_traffic: u64,
    /// Frames the kernel dropped because uatap did not read fast enough.
    pub kernel_drops: u64,
    /// The reassembler's counters (retransmissions, gaps).
    pub tcp: TcpStats,
}

/// How long [`LiveStreams::step`] may wait for a frame at most, so the caller gets control
/// back regularly to check its deadline and Ctrl-C even on a silent interface.
pub const MAX_WAIT: Duration = Duration::from_millis(200);

/// A live interface turned into TCP stream events: frames, optionally only those of one TCP
/// port, through the same [`TcpReassembler`] a capture file goes through.
#[derive(Debug)]
pub struct LiveStreams {
    sniffer: Sniffer,
    port: Option<u16>,
    tcp: TcpReassembler,
    stats: CaptureStats,
}

impl LiveStreams {
    /// Starts capturing on `interface`; with `port`, keeps only TCP segments from or to that
    /// port (and takes the side on it as the server of connections whose handshake was missed).
    pub fn open(interface: &str, port: Option<u16>) -> Result<Self, SniffError> {
        let mut sniffer = Sniffer::open(interface)?;
        if let Some(p) = port {
            sniffer.set_port_filter(p)?;
        }
        let mut tcp = TcpReassembler::new(ReassemblyConfig::default());
        if let Some(p) = port {
            tcp.set_client_hint(move |src, dst| {
                if dst.port() == p {
                    Some(true)
                } else if src.port() == p {
                    Some(false)
                } else {
                    None
                }
            });
        }
        Ok(LiveStreams {
            sniffer,
            port,
            tcp,
            stats: CaptureStats::default(),
        })
    }

    /// The packet source, e.g. to say whether it is promiscuous.
    #[must_use]
    pub fn sniffer(&self) -> &Sniffer {
        &self.sniffer
    }

    /// Waits up to `timeout` (capped at [`MAX_WAIT`]) for one frame and feeds its TCP segment
    /// to reassembly; the stream events it causes go to `sink`. Returns `Ok(false)` when no
    /// frame came (timeout, or a signal such as Ctrl-C), `Ok(true)` after one frame.
    pub fn step(
        &mut self,
        timeout: Duration,
        sink: impl FnMut(StreamEvent<'_>),
    ) -> Result<bool, SniffError> {
        let Some(frame) = self.sniffer.next_frame(timeout.min(MAX_WAIT))? else {
            return Ok(false);
        };
        self.stats.frames += 1;
        match decode_tcp(frame.link_type, frame.data) {
            Ok(seg)
                if self
                    .port
                    .is_none_or(|p| seg.src.port() == p || seg.dst.port() == p) =>
            {
                self.stats.tcp_segments += 1;
                self.tcp.handle_segment(frame.ts, &seg, sink);
            }
            _ => self.stats.other_traffic += 1,
        }
        Ok(true)
    }

    /// Ends the capture: connections still open are closed as at the end of a capture file
    /// (`EndOfCapture`), their events go to `sink`; returns what the capture saw.
    pub fn finish(mut self, sink: impl FnMut(StreamEvent<'_>)) -> CaptureStats {
        self.tcp.finish(sink);
        self.stats.tcp = self.tcp.stats();
        self.stats.kernel_drops = self.sniffer.kernel_drops();
        self.stats.loopback_duplicates = self.sniffer.loopback_duplicates();
        self.stats
    }
}

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    /// Operation.
    pub code: u16,
    /// Instructions to skip when true.
    pub jt: u8,
    /// Instructions to skip when false.
    pub jf: u8,
    /// Constant.
    pub k: u32,
}

const BPF_LD_H_ABS: u16 = 0x28;
const BPF_LD_B_ABS: u16 = 0x30;
const BPF_LD_H_IND: u16 = 0x48;
const BPF_LDX_MSH: u16 = 0xb1;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;

/// The kernel-side filter for "TCP from or to `port`" on Ethernet (and loopback) frames, so a
/// busy interface does not fill the socket's buffer with traffic uatap would drop anyway (the
/// frames are checked again in user space). VLAN-tagged frames pass to user space unfiltered.
pub fn tcp_port_filter(port: u16) -> Vec<BpfInsn> {
    let i = |code, jt, jf, k| BpfInsn { code, jt, jf, k };
    let p = u32::from(port);
    vec![
        i(BPF_LD_H_ABS, 0, 0, 12),       // 0: ethertype
        i(BPF_JEQ_K, 17, 0, 0x8100),     // 1: VLAN -> accept (19)
        i(BPF_JEQ_K, 0, 6, 0x86dd),      // 2: IPv6? else 9
        i(BPF_LD_B_ABS, 0, 0, 20),       // 3: next header
        i(BPF_JEQ_K, 0, 15, 6),          // 4: TCP? else reject (20)
        i(BPF_LD_H_ABS, 0, 0, 54),       // 5: source port
        i(BPF_JEQ_K, 12, 0, p),          // 6: -> accept
        i(BPF_LD_H_ABS, 0, 0, 56),       // 7: destination port
        i(BPF_JEQ_K, 10, 11, p),         // 8: accept / reject
        i(BPF_JEQ_K, 0, 10, 0x0800),     // 9: IPv4? else reject
        i(BPF_LD_B_ABS, 0, 0, 23),       // 10: protocol
        i(BPF_JEQ_K, 0, 8, 6),           // 11: TCP? else reject
        i(BPF_LD_H_ABS, 0, 0, 20),       // 12: flags and fragment offset
        i(BPF_JSET_K, 6, 0, 0x1fff),     // 13: a later fragment -> reject
        i(BPF_LDX_MSH, 0, 0, 14),        // 14: x = IPv4 header length
        i(BPF_LD_H_IND, 0, 0, 14),       // 15: source port
        i(BPF_JEQ_K, 2, 0, p),           // 16: -> accept
        i(BPF_LD_H_IND, 0, 0, 16),       // 17: destination port
        i(BPF_JEQ_K, 0, 1, p),           // 18: accept / reject
        i(BPF_RET_K, 0, 0, 0x0004_0000), // 19: accept (whole frame)
        i(BPF_RET_K, 0, 0, 0),           // 20: reject
    ]
}

#[cfg(target_os = "linux")]
mod sys {
    //! `AF_PACKET` capture. Every `unsafe` block is a plain system call on our own socket with
    //! buffers sized by us.

    use std::ffi::CString;
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use libc::c_int;
    use uatap_recorder::{LinkType, Timestamp};

    use super::{Frame, SniffError};

    /// Large enough for a 64 KiB loopback frame and for the GSO super-packets a NIC hands to
    /// packet sockets on the sending side.
    const BUF_LEN: usize = 256 * 1024;
    /// Socket receive buffer asked for, so bursts (a big PublishResponse) are not dropped.
    const RCVBUF: c_int = 8 << 20;
    /// `ARPHRD_RAWIP`, missing from `libc`.
    const ARPHRD_RAWIP: u16 = 519;

    /// An `AF_PACKET` raw socket bound to one interface: reads its frames one at a time with
    /// kernel timestamps, without libpcap.
    #[derive(Debug)]
    pub struct Sniffer {
        fd: OwnedFd,
        name: String,
        link_type: LinkType,
        loopback: bool,
        promiscuous: bool,
        buf: Vec<u8>,
        drops: u64,
        loopback_duplicates: u64,
    }

    fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SniffError {
        let what = what.into();
        move |source| SniffError::Io { what, source }
    }

    fn last_error() -> io::Error {
        io::Error::last_os_error()
    }

    /// The interface names, for the "no such interface" message.
    fn interfaces() -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn setsockopt<T>(fd: &OwnedFd, level: c_int, name: c_int, value: &T) -> io::Result<()> {
        // SAFETY: `value` points to a live `T` of the size passed.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (value as *const T).cast(),
                size_of::<T>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(last_error())
        }
    }

    /// An `ifreq` naming the interface, for the `SIOCGIF*` ioctls.
    fn ifreq(name: &CString) -> libc::ifreq {
        // SAFETY: `ifreq` is plain data; all zeros is a valid value.
        let mut req: libc::ifreq = unsafe { zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
            *dst = *src as libc::c_char;
        }
        req
    }

    fn ioctl(fd: &OwnedFd, request: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
        // SAFETY: the SIOCGIF* requests used here read and write one `ifreq`.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, req as *mut libc::ifreq) };
        if r == 0 {
            Ok(())
        } else {
            Err(last_error())
        }
    }

    impl Sniffer {
        /// Opens a raw socket on the interface named `name` (as `ip link` shows it). Needs root
        /// or `CAP_NET_RAW`. Real NICs are put in promiscuous mode, so a mirror port's traffic
        /// for other hosts is seen; the kernel undoes that when the socket closes.
        pub fn open(name: &str) -> Result<Sniffer, SniffError> {
            let no_such = || SniffError::NoSuchInterface {
                name: name.to_string(),
                available: interfaces(),
            };
            let cname = CString::new(name).map_err(|_| no_such())?;
            if name.is_empty() || name.len() >= libc::IFNAMSIZ {
                return Err(no_such());
            }
            // SAFETY: `cname` is NUL-terminated.
            let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
            if ifindex == 0 {
                return Err(no_such());
            }
            // Protocol 0: nothing is queued until bind() names the interface, so no frame of
            // another interface slips in first.
            // SAFETY: plain system call.
            let fd =
                unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
            if fd < 0 {
                let e = last_error();
                return Err(match e.raw_os_error() {
                    Some(libc::EPERM | libc::EACCES) => SniffError::NotPermitted,
                    _ => SniffError::Io {
                        what: "cannot open a packet socket".into(),
                        source: e,
                    },
                });
            }
            // SAFETY: `fd` is a fresh descriptor that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };

            let mut req = ifreq(&cname);
            ioctl(&fd, libc::SIOCGIFHWADDR, &mut req)
                .map_err(io_err(format!("cannot read the hardware type of {name}")))?;
            // SAFETY: SIOCGIFHWADDR filled the `ifru_hwaddr` member.
            let hardware_type = unsafe { req.ifr_ifru.ifru_hwaddr.sa_family };
            let (link_type, loopback) = match hardware_type {
                libc::ARPHRD_ETHER => (LinkType::ETHERNET, false),
                // The kernel gives loopback frames a 14-byte all-zero Ethernet header.
                libc::ARPHRD_LOOPBACK => (LinkType::ETHERNET, true),
                // tun devices, PPP, IP tunnels: the frame starts at the IP header.
                libc::ARPHRD_NONE
                | ARPHRD_RAWIP
                | libc::ARPHRD_PPP
                | libc::ARPHRD_TUNNEL
                | libc::ARPHRD_TUNNEL6
                | libc::ARPHRD_SIT => (LinkType::RAW, false),
                other => {
                    return Err(SniffError::UnsupportedInterface {
                        name: name.to_string(),
                        hardware_type: other,
                    })
                }
            };
            let mut req = ifreq(&cname);
            ioctl(&fd, libc::SIOCGIFFLAGS, &mut req)
                .map_err(io_err(format!("cannot read the flags of {name}")))?;
            // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member.
            let flags = unsafe { req.ifr_ifru.ifru_flags };
            if c_int::from(flags) & libc::IFF_UP == 0 {
                return Err(SniffError::InterfaceDown {
                    name: name.to_string(),
                });
            }

            // SAFETY: `sockaddr_ll` is plain data; all zeros is a valid value.
            let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
            addr.sll_ifindex = ifindex as c_int;
            // SAFETY: `addr` is a `sockaddr_ll` of the size passed.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&addr as *const libc::sockaddr_ll).cast(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if r != 0 {
                return Err(SniffError::Io {
                    what: format!("cannot bind the packet socket to {name}"),
                    source: last_error(),
                });
            }
            // Kernel receive times when available; else the wall clock at read time.
            let _ = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &1 as &c_int);
            if setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &RCVBUF).is_err() {
                let _ = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &RCVBUF);
            }
            let promiscuous = !loopback && {
                let mreq = libc::packet_mreq {
                    mr_ifindex: ifindex as c_int,
                    mr_type: libc::PACKET_MR_PROMISC as u16,
                    mr_alen: 0,
                    mr_address: [0; 8],
                };
                setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq).is_ok()
            };
            Ok(Sniffer {
                fd,
                name: name.to_string(),
                link_type,
                loopback,
                promiscuous,
                buf: vec![0; BUF_LEN],
                drops: 0,
                loopback_duplicates: 0,
            })
        }

        /// Lets the kernel queue only TCP frames from or to `port` (Ethernet and loopback
        /// interfaces; others keep every frame). Frames are still checked in user space.
        pub fn set_port_filter(&mut self, port: u16) -> Result<(), SniffError> {
            if self.link_type != LinkType::ETHERNET {
                return Ok(());
            }
            let program: Vec<libc::sock_filter> = super::tcp_port_filter(port)
                .into_iter()
                .map(|i| libc::sock_filter {
                    code: i.code,
                    jt: i.jt,
                    jf: i.jf,
                    k: i.k,
                })
                .collect();
            let fprog = libc::sock_fprog {
                len: program.len() as u16,
                filter: program.as_ptr().cast_mut(),
            };
            setsockopt(&self.fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog).map_err(
                |source| SniffError::Io {
                    what: format!("cannot attach the port filter on {}", self.name),
                    source,
                },
            )
        }

        /// The interface's name.
        #[must_use]
        pub fn interface(&self) -> &str {
            &self.name
        }

        /// True when the NIC was put in promiscuous mode (never for loopback).
        #[must_use]
        pub fn promiscuous(&self) -> bool {
            self.promiscuous
        }

        /// Waits up to `timeout` for the next frame. `Ok(None)` when none came in time or a
        /// signal (Ctrl-C) interrupted the wait. On loopback the outgoing copy of each packet
        /// is skipped, so every packet is handed over once.
        pub fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame<'_>>, SniffError> {
            let deadline = Instant::now() + timeout;
            loop {
                if !self.wait_readable(deadline.saturating_duration_since(Instant::now()))? {
                    return Ok(None);
                }
                // SAFETY: plain data; all zeros is valid.
                let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
                let mut iov = libc::iovec {
                    iov_base: self.buf.as_mut_ptr().cast(),
                    iov_len: self.buf.len(),
                };
                // Room for a few control messages; u64 for the alignment cmsghdr needs.
                let mut control = [0u64; 16];
                // SAFETY: plain data; all zeros is valid.
                let mut msg: libc::msghdr = unsafe { zeroed() };
                msg.msg_name = (&mut addr as *mut libc::sockaddr_ll).cast();
                msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                msg.msg_iov = &mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = control.as_mut_ptr().cast();
                msg.msg_controllen = size_of::<[u64; 16]>() as _;
                // MSG_TRUNC: the return value is the frame's real length even if cut.
                // SAFETY: every pointer in `msg` refers to a live buffer of the stated size.
                let n = unsafe {
                    libc::recvmsg(
                        self.fd.as_raw_fd(),
                        &mut msg,
                        libc::MSG_TRUNC | libc::MSG_DONTWAIT,
                    )
                };
                if n < 0 {
                    let e = last_error();
                    match e.kind() {
                        io::ErrorKind::WouldBlock => continue,
                        io::ErrorKind::Interrupted => return Ok(None),
                        _ => {
                            return Err(SniffError::Io {
                                what: format!("reading from {}", self.name),
                                source: e,
                            })
                        }
                    }
                }
                if self.loopback && addr.sll_pkttype == libc::PACKET_OUTGOING {
                    self.loopback_duplicates += 1;
                    continue;
                }
                let ts = kernel_timestamp(&msg).unwrap_or_else(wall_clock);
                let wire_len = n as usize;
                let data = self.buf.get(..wire_len.min(BUF_LEN)).unwrap_or(&[]);
                return Ok(Some(Frame {
                    ts,
                    link_type: self.link_type,
                    data,
                    wire_len,
                }));
            }
        }

        /// `Ok(false)` on timeout or signal.
        fn wait_readable(&self, timeout: Duration) -> Result<bool, SniffError> {
            let mut ms = timeout.as_millis().min(c_int::MAX as u128) as c_int;
            if ms == 0 && !timeout.is_zero() {
                ms = 1;
            }
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one live pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r < 0 {
                let e = last_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    return Ok(false);
                }
                return Err(SniffError::Io {
                    what: format!("waiting for frames on {}", self.name),
                    source: e,
                });
            }
            Ok(r > 0)
        }

        /// Frames the kernel dropped since the socket was opened (its queue was full).
        pub fn kernel_drops(&mut self) -> u64 {
            // SAFETY: plain data; all zeros is valid.
            let mut st: libc::tpacket_stats = unsafe { zeroed() };
            let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
            // SAFETY: `st` is a `tpacket_stats` of the size passed.
            let r = unsafe {
                libc::getsockopt(
                    self.fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    libc::PACKET_STATISTICS,
                    (&mut st as *mut libc::tpacket_stats).cast(),
                    &mut len,
                )
            };
            // The kernel resets its counters on every read: add up.
            if r == 0 {
                self.drops += u64::from(st.tp_drops);
            }
            self.drops
        }

        /// Loopback frames skipped as the outgoing copy of a packet.
        #[must_use]
        pub fn loopback_duplicates(&self) -> u64 {
            self.loopback_duplicates
        }
    }

    fn kernel_timestamp(msg: &libc::msghdr) -> Option<Timestamp> {
        // SAFETY: `msg` was filled by recvmsg; the CMSG_* macros stay within msg_controllen.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET
                    && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
                {
                    let t =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                    return Some(Timestamp::from_secs_nanos(
                        t.tv_sec as i64,
                        t.tv_nsec as i64,
                    ));
                }
                cmsg = libc::CMSG_NXTHDR(msg, cmsg);
            }
        }
        None
    }

    fn wall_clock() -> Timestamp {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::from_unix_nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }

    static INTERRUPTED: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_signal(sig: c_int) {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            // Second Ctrl-C: the person wants out now, not a clean finish.
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(128 + sig) }
        }
    }

    /// Makes SIGINT (Ctrl-C) and SIGTERM set the flag [`interrupted`] reads instead of killing
    /// the process, so a capture can end cleanly; a second signal exits at once. A wait in
    /// [`Sniffer::next_frame`] returns early when one arrives. Process-wide: call it once,
    /// from the binary.
    pub fn catch_interrupts() -> Result<(), SniffError> {
        // SAFETY: plain data; all zeros is valid.
        let mut sa: libc::sigaction = unsafe { zeroed() };
        sa.sa_sigaction = on_signal as extern "C" fn(c_int) as libc::sighandler_t;
        // No SA_RESTART: a blocked poll() returns with EINTR.
        sa.sa_flags = 0;
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: `sa` is initialised; the handler only touches an atomic and _exit.
            let r = unsafe {
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut())
            };
            if r != 0 {
                return Err(SniffError::Io {
                    what: "cannot install the Ctrl-C handler".into(),
                    source: last_error(),
                });
            }
        }
        Ok(())
    }

    /// True once SIGINT or SIGTERM arrived after [`catch_interrupts`].
    #[must_use]
    pub fn interrupted() -> bool {
        INTERRUPTED.load(Ordering::SeqCst)
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    //! No live capture on this platform: the same API, failing at [`Sniffer::open`].

    use std::convert::Infallible;
    use std::time::Duration;

    use super::{Frame, SniffError};

    /// Live capture is Linux-only; on this platform the sniffer cannot be opened.
    #[derive(Debug)]
    pub struct Sniffer {
        never: Infallible,
    }

    impl Sniffer {
        /// Always [`SniffError::Unsupported`] here.
        pub fn open(_name: &str) -> Result<Sniffer, SniffError> {
            Err(SniffError::Unsupported)
        }

        /// Never called: the sniffer cannot exist.
        pub fn set_port_filter(&mut self, _port: u16) -> Result<(), SniffError> {
            match self.never {}
        }

        /// The interface's name.
        #[must_use]
        pub fn interface(&self) -> &str {
            match self.never {}
        }

        /// Never promiscuous: never opened.
        #[must_use]
        pub fn promiscuous(&self) -> bool {
            match self.never {}
        }

        /// Never called: the sniffer cannot exist.
        pub fn next_frame(&mut self, _timeout: Duration) -> Result<Option<Frame<'_>>, SniffError> {
            match self.never {}
        }

        /// Never called: the sniffer cannot exist.
        pub fn kernel_drops(&mut self) -> u64 {
            match self.never {}
        }

        /// Never called: the sniffer cannot exist.
        #[must_use]
        pub fn loopback_duplicates(&self) -> u64 {
            match self.never {}
        }
    }

    /// Nothing to catch: live capture cannot start on this platform.
    pub fn catch_interrupts() -> Result<(), SniffError> {
        Ok(())
    }

    /// Always false on this platform.
    #[must_use]
    pub fn interrupted() -> bool {
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn unknown_interface_is_named_in_the_error() {
        let e = Sniffer::open("nosuchif0").unwrap_err();
        assert!(
            matches!(&e, SniffError::NoSuchInterface { name, available }
                if name == "nosuchif0" && available.iter().any(|n| n == "lo")),
            "{e:?}"
        );
        assert!(e
            .to_string()
            .contains("no network interface named \"nosuchif0\""));
        assert!(matches!(
            Sniffer::open("a-name-much-too-long-for-linux"),
            Err(SniffError::NoSuchInterface { .. })
        ));
    }

    /// As root: a UDP datagram sent to ourselves on lo is seen exactly once, with an
    /// Ethernet header decode_tcp accepts and a kernel timestamp near now.
    #[test]
    fn loopback_frames_once_with_zero_ethernet_header() {
        let mut s = match Sniffer::open("lo") {
            Err(SniffError::NotPermitted) => return, // covered as root by tests/live.rs
            r => r.expect("open lo"),
        };
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let marker = b"uatap-sniff-selftest";
        tx.send_to(marker, rx.local_addr().unwrap()).unwrap();
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut seen = 0;
        let mut deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            let Some(f) = s.next_frame(Duration::from_millis(100)).unwrap() else {
                continue;
            };
            if f.data.windows(marker.len()).any(|w| w == marker) {
                assert_eq!(f.link_type, LinkType::ETHERNET);
                assert_eq!(f.data.get(..12), Some(&[0u8; 12][..]), "zero MACs");
                assert_eq!(f.data.get(12..14), Some(&[0x08, 0x00][..]), "IPv4");
                assert_eq!(f.wire_len, f.data.len());
                assert!((f.ts.unix_nanos / 1_000_000_000 - before).abs() <= 2);
                seen += 1;
                // A duplicate would follow at once; give it a moment to show up.
                deadline = std::time::Instant::now() + Duration::from_millis(300);
            }
        }
        assert_eq!(seen, 1, "the outgoing copy is skipped");
        assert!(s.loopback_duplicates() >= 1);
    }
}

#[cfg(test)]
mod filter_tests {
    use super::*;

    /// Runs a classic BPF program over a frame (the subset the filter uses).
    fn run(prog: &[BpfInsn], pkt: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let h = |o: usize| u32::from(u16::from_be_bytes([pkt[o], pkt[o + 1]]));
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                BPF_LD_H_ABS => a = h(i.k as usize),
                BPF_LD_B_ABS => a = u32::from(pkt[i.k as usize]),
                BPF_LD_H_IND => a = h(x as usize + i.k as usize),
                BPF_LDX_MSH => x = 4 * u32::from(pkt[i.k as usize] & 0xf),
                BPF_JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                BPF_JSET_K => pc += usize::from(if a & i.k != 0 { i.jt } else { i.jf }),
                BPF_RET_K => return i.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn v4(proto: u8, sport: u16, dport: u16, frag: u16) -> Vec<u8> {
        let mut p = vec![0u8; 14 + 24 + 20];
        p[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        p[14] = 0x46; // IPv4 with 4 bytes of options: header 24 bytes
        p[20..22].copy_from_slice(&frag.to_be_bytes());
        p[23] = proto;
        p[38..40].copy_from_slice(&sport.to_be_bytes());
        p[40..42].copy_from_slice(&dport.to_be_bytes());
        p
    }

    fn v6(next: u8, sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 14 + 40 + 20];
        p[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        p[20] = next;
        p[54..56].copy_from_slice(&sport.to_be_bytes());
        p[56..58].copy_from_slice(&dport.to_be_bytes());
        p
    }

    #[test]
    fn keeps_the_port_and_drops_the_rest() {
        let f = tcp_port_filter(4840);
        assert!(run(&f, &v4(6, 50000, 4840, 0)) > 0);
        assert!(
            run(&f, &v4(6, 4840, 50000, 0x4000)) > 0,
            "DF set is not a fragment"
        );
        assert_eq!(run(&f, &v4(6, 50000, 4841, 0)), 0);
        assert_eq!(run(&f, &v4(17, 50000, 4840, 0)), 0, "UDP");
        assert_eq!(run(&f, &v4(6, 50000, 4840, 0x0010)), 0, "a later fragment");
        assert!(run(&f, &v6(6, 4840, 1)) > 0);
        assert!(run(&f, &v6(6, 1, 4840)) > 0);
        assert_eq!(run(&f, &v6(6, 1, 2)), 0);
        assert_eq!(run(&f, &v6(17, 1, 4840)), 0);
        let mut vlan = v4(6, 1, 2, 0);
        vlan[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        assert!(run(&f, &vlan) > 0, "VLAN frames go to user space");
        let mut arp = v4(6, 1, 2, 0);
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(run(&f, &arp), 0);
    }
}
