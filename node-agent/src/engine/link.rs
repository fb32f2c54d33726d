//! A TUN as the engine drives it ([`Link`]): the virtio-net header on the
//! way in and out, and the offloads negotiated with the kernel.
//!
//! Contract:
//! - Buffers have [`VNET_HDR_LEN`] bytes of room before the IP packet, so
//!   a packet is read and written in place, with or without the header.
//! - With offloads on (`IFF_VNET_HDR` and `TUNSETOFFLOAD` with checksum
//!   and TSO accepted, USO if the kernel has it), reads may be TCP/UDP
//!   super-packets with partial checksums, and writes may be super-packets
//!   ([`Link::write_gso`]). Without (a TUN without the header, offloads
//!   turned off, or refused), every read is one plain packet and every
//!   write must be one.
//! - [`Link::into_tun`] turns offloads off again before the TUN is handed
//!   back, so its next reader sees plain packets.

use std::io;

use tracing::{debug, warn};

use crate::kernel::tun::Tun;
use weft_switch::offload::{VnetHdr, VNET_HDR_LEN};

/// Checksum offload and TSO for both families (with ECN).
const TSO: u32 = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
/// UDP segmentation offload (Linux 6.2+).
const USO: u32 = libc::TUN_F_USO4 | libc::TUN_F_USO6;

/// One TUN and its offload state.
#[derive(Debug)]
pub(super) struct Link {
    tun: Tun,
    /// Reads carry a virtio-net header.
    vnet: bool,
    /// The kernel hands out (and this engine writes) super-packets.
    offload: bool,
    /// ... UDP ones (USO) included.
    uso: bool,
    /// Whether a read error was already logged (once per TUN).
    read_error_logged: bool,
}

impl Link {
    /// Wraps `tun`, turning offloads on if `offload` and the TUN and the
    /// kernel allow, and off otherwise.
    pub(super) fn new(tun: Tun, offload: bool) -> Self {
        let vnet = tun.has_vnet_hdr();
        let mut on = false;
        let mut uso = false;
        if vnet && offload {
            for flags in [TSO | USO, TSO] {
                match tun.set_offload(flags) {
                    Ok(()) => {
                        on = true;
                        uso = flags & USO != 0;
                        debug!(ifname = tun.name(), flags, "TUN offloads on");
                        break;
                    }
                    Err(e) => {
                        debug!(ifname = tun.name(), flags, error = %e, "TUN offloads refused")
                    }
                }
            }
        }
        if vnet && !on {
            // A persistent TUN may keep the offloads of an earlier reader.
            let _ = tun.set_offload(0);
        }
        Self {
            tun,
            vnet,
            offload: on,
            uso,
            read_error_logged: false,
        }
    }

    pub(super) fn tun(&self) -> &Tun {
        &self.tun
    }

    /// Whether super-packets come out of and may go into this TUN.
    pub(super) fn offload(&self) -> bool {
        self.offload
    }

    /// Whether UDP super-packets (GSO_UDP_L4) may go into this TUN.
    pub(super) fn uso(&self) -> bool {
        self.uso
    }

    /// Reads one packet into `buf` (the IP packet at `buf[VNET_HDR_LEN..]`),
    /// returning its virtio-net header (all zero without one) and length.
    pub(super) fn read(&self, buf: &mut [u8]) -> io::Result<(VnetHdr, usize)> {
        if self.vnet {
            let n = self.tun.try_recv_raw(buf)?;
            let hdr = VnetHdr::decode(&buf[..n]).unwrap_or_default();
            Ok((hdr, n.saturating_sub(VNET_HDR_LEN)))
        } else {
            let n = self
                .tun
                .try_recv_raw(buf.get_mut(VNET_HDR_LEN..).unwrap_or_default())?;
            Ok((VnetHdr::default(), n))
        }
    }

    /// Writes the plain packet `buf[VNET_HDR_LEN..][..len]` (overwriting
    /// the room before it with an empty header if the TUN takes one).
    pub(super) fn write(&self, buf: &mut [u8], len: usize) -> io::Result<()> {
        let end = (VNET_HDR_LEN + len).min(buf.len());
        if self.vnet {
            buf[..VNET_HDR_LEN].fill(0);
            self.tun.try_send_raw(&buf[..end])
        } else {
            self.tun.try_send_raw(&buf[VNET_HDR_LEN..end])
        }
        .map(drop)
    }

    /// Writes `bytes`, a virtio-net header and a packet (a super-packet if
    /// the header says so); only for a TUN with [`Self::offload`].
    pub(super) fn write_gso(&self, bytes: &[u8]) -> io::Result<()> {
        if !self.offload {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        }
        self.tun.try_send_raw(bytes).map(drop)
    }

    /// Writes the plain packet `packet` (no room before it).
    pub(super) fn write_copy(&self, packet: &[u8]) -> io::Result<()> {
        self.tun.try_send(packet).map(drop)
    }

    /// Logs a failed read, the first time only (a TUN whose device went
    /// away would otherwise log at every readiness).
    pub(super) fn read_failed(&mut self, error: &io::Error) {
        if !self.read_error_logged {
            self.read_error_logged = true;
            warn!(ifname = self.tun.name(), %error, "reading a TUN failed");
        }
    }

    /// The TUN, with offloads off again.
    pub(super) fn into_tun(self) -> Tun {
        if self.offload {
            let _ = self.tun.set_offload(0);
        }
        self.tun
    }
}
