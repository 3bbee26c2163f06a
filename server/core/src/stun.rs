//! The STUN Binding subset of RFC 5389 that a browser needs to learn its
//! public address: a Binding request in, a Binding success response with
//! XOR-MAPPED-ADDRESS out. Sans-IO: bytes and the sender's address in, bytes
//! (or the reason for silence) out; the socket loop lives in the server.
//!
//! # Which datagrams get an answer
//! Only a well-formed Binding request: a 20-byte header with the magic cookie,
//! a length that matches the datagram, attributes that tile the body exactly,
//! no unknown comprehension-required attribute, and a correct FINGERPRINT if
//! it carries one. Everything else (indications, responses, other methods,
//! garbage) is dropped without a word, and the caller counts why.
//!
//! # How big an answer can be
//! Chromium and Firefox both send a bare 20-byte header as their Binding
//! request (seen on this machine), and the smallest possible answer is 32
//! bytes (IPv4) or 44 (IPv6): an answer can never be as small as the request.
//! The bound is instead additive: an answer is the request's header plus one
//! XOR-MAPPED-ADDRESS (at most [`MAX_GROWTH`] = 24 bytes), plus a FINGERPRINT
//! only when the request carried one (whose 8 bytes it paid for itself). So a
//! reflected answer is at most 24 bytes larger than the spoofed datagram that
//! caused it, and no request attribute is ever echoed back.

use std::net::{IpAddr, SocketAddr};

/// First bytes of every RFC 5389 message after the type and length.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Binding request (method 0x001, class request).
pub const BINDING_REQUEST: u16 = 0x0001;
/// Binding success response (method 0x001, class success response).
pub const BINDING_SUCCESS: u16 = 0x0101;
/// Larger datagrams are dropped unread: a Binding request has no reason to
/// exceed one unfragmented packet.
pub const MAX_REQUEST: usize = 1280;
/// The most an answer may exceed its request by: one IPv6 XOR-MAPPED-ADDRESS.
pub const MAX_GROWTH: usize = 24;

const HEADER: usize = 20;
const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_ERROR_CODE: u16 = 0x0009;
const ATTR_UNKNOWN_ATTRIBUTES: u16 = 0x000A;
const ATTR_REALM: u16 = 0x0014;
const ATTR_NONCE: u16 = 0x0015;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// ICE's PRIORITY and USE-CANDIDATE (RFC 8445): comprehension-required, but
/// known, so a connectivity check sent here by mistake is not "unknown".
const ATTR_PRIORITY: u16 = 0x0024;
const ATTR_USE_CANDIDATE: u16 = 0x0025;
const ATTR_FINGERPRINT: u16 = 0x8028;
/// FINGERPRINT is the CRC-32 of the message up to it, XORed with "STUN".
const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// Why a datagram got no answer. `code()` is the metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Over [`MAX_REQUEST`] bytes.
    Oversized,
    /// Not a STUN message: too short, top bits set, no magic cookie, or a
    /// length field that does not match the datagram.
    NotStun,
    /// A STUN message, but not a Binding request (an indication, a response,
    /// another method).
    NotBindingRequest,
    /// Attributes that do not tile the body, a FINGERPRINT that is not last
    /// or does not match, or an unknown comprehension-required attribute.
    Malformed,
}

impl Dropped {
    pub fn code(self) -> &'static str {
        match self {
            Dropped::Oversized => "oversized",
            Dropped::NotStun => "not_stun",
            Dropped::NotBindingRequest => "not_binding_request",
            Dropped::Malformed => "malformed",
        }
    }

    pub const ALL: [Dropped; 4] = [
        Dropped::Oversized,
        Dropped::NotStun,
        Dropped::NotBindingRequest,
        Dropped::Malformed,
    ];
}

/// A Binding request worth answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingRequest {
    pub transaction_id: [u8; 12],
    /// The request ended with a valid FINGERPRINT; the answer carries one too.
    pub fingerprint: bool,
}

/// Check a datagram; `Ok` only for a well-formed Binding request.
pub fn parse(datagram: &[u8]) -> Result<BindingRequest, Dropped> {
    if datagram.len() > MAX_REQUEST {
        return Err(Dropped::Oversized);
    }
    if datagram.len() < HEADER {
        return Err(Dropped::NotStun);
    }
    let msg_type = u16::from_be_bytes([datagram[0], datagram[1]]);
    let length = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let cookie = u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]);
    if msg_type & 0xC000 != 0
        || cookie != MAGIC_COOKIE
        || length % 4 != 0
        || HEADER + length != datagram.len()
    {
        return Err(Dropped::NotStun);
    }
    if msg_type != BINDING_REQUEST {
        return Err(Dropped::NotBindingRequest);
    }
    let mut transaction_id = [0u8; 12];
    transaction_id.copy_from_slice(&datagram[8..HEADER]);
    let mut at = HEADER;
    let mut fingerprint = false;
    while at < datagram.len() {
        if fingerprint {
            // FINGERPRINT must be the last attribute.
            return Err(Dropped::Malformed);
        }
        let head = datagram.get(at..at + 4).ok_or(Dropped::Malformed)?;
        let kind = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let padded_end = at + 4 + len.div_ceil(4) * 4;
        if padded_end > datagram.len() {
            return Err(Dropped::Malformed);
        }
        match kind {
            ATTR_FINGERPRINT => {
                if len != 4 {
                    return Err(Dropped::Malformed);
                }
                let got = u32::from_be_bytes([
                    datagram[at + 4],
                    datagram[at + 5],
                    datagram[at + 6],
                    datagram[at + 7],
                ]);
                if got != crc32(&datagram[..at]) ^ FINGERPRINT_XOR {
                    return Err(Dropped::Malformed);
                }
                fingerprint = true;
            }
            ATTR_MAPPED_ADDRESS
            | ATTR_USERNAME
            | ATTR_MESSAGE_INTEGRITY
            | ATTR_ERROR_CODE
            | ATTR_UNKNOWN_ATTRIBUTES
            | ATTR_REALM
            | ATTR_NONCE
            | ATTR_XOR_MAPPED_ADDRESS
            | ATTR_PRIORITY
            | ATTR_USE_CANDIDATE => {}
            // Comprehension-optional: ignored, as RFC 5389 says.
            k if k >= 0x8000 => {}
            // Unknown and comprehension-required: RFC 5389 would answer 420;
            // a server that only reflects addresses stays silent instead.
            _ => return Err(Dropped::Malformed),
        }
        at = padded_end;
    }
    Ok(BindingRequest {
        transaction_id,
        fingerprint,
    })
}

/// The Binding success response to `request`, telling `from` its address.
pub fn binding_success(request: &BindingRequest, from: SocketAddr) -> Vec<u8> {
    // An IPv4 client reached through a dual-stack socket is still IPv4.
    let ip = match from.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    let mut xor_key = [0u8; 16];
    xor_key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    xor_key[4..].copy_from_slice(&request.transaction_id);
    let (family, address): (u8, Vec<u8>) = match ip {
        IpAddr::V4(v4) => (0x01, v4.octets().to_vec()),
        IpAddr::V6(v6) => (0x02, v6.octets().to_vec()),
    };
    let mut value = vec![0u8, family];
    value.extend_from_slice(&(from.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes());
    value.extend(address.iter().zip(xor_key).map(|(a, k)| a ^ k));

    let mut out = Vec::with_capacity(HEADER + 4 + value.len() + 8);
    out.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    out.extend_from_slice(&[0, 0]); // length, set below
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out.extend_from_slice(&request.transaction_id);
    push_attr(&mut out, ATTR_XOR_MAPPED_ADDRESS, &value);
    if request.fingerprint {
        // The length field covers the FINGERPRINT before its CRC is taken.
        set_length(&mut out, 8);
        let crc = crc32(&out) ^ FINGERPRINT_XOR;
        push_attr(&mut out, ATTR_FINGERPRINT, &crc.to_be_bytes());
    }
    set_length(&mut out, 0);
    out
}

/// What to send back for one datagram, if anything.
pub fn answer(datagram: &[u8], from: SocketAddr) -> Result<Vec<u8>, Dropped> {
    parse(datagram).map(|request| binding_success(&request, from))
}

/// The mapped address a Binding success response reports (for tests and
/// clients of this codec; the server itself never parses responses).
pub fn parse_success(datagram: &[u8], transaction_id: &[u8; 12]) -> Option<SocketAddr> {
    if datagram.len() < HEADER
        || u16::from_be_bytes([datagram[0], datagram[1]]) != BINDING_SUCCESS
        || usize::from(u16::from_be_bytes([datagram[2], datagram[3]])) + HEADER != datagram.len()
        || datagram[4..8] != MAGIC_COOKIE.to_be_bytes()
        || &datagram[8..HEADER] != transaction_id
    {
        return None;
    }
    let mut at = HEADER;
    while at + 4 <= datagram.len() {
        let kind = u16::from_be_bytes([datagram[at], datagram[at + 1]]);
        let len = usize::from(u16::from_be_bytes([datagram[at + 2], datagram[at + 3]]));
        let value = datagram.get(at + 4..at + 4 + len)?;
        if kind == ATTR_XOR_MAPPED_ADDRESS && len >= 8 {
            let port = u16::from_be_bytes([value[2], value[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            key[4..].copy_from_slice(transaction_id);
            let ip = match (value[1], len) {
                (0x01, 8) => {
                    let mut o = [0u8; 4];
                    o.iter_mut()
                        .zip(&value[4..8])
                        .zip(key)
                        .for_each(|((o, v), k)| *o = v ^ k);
                    IpAddr::from(o)
                }
                (0x02, 20) => {
                    let mut o = [0u8; 16];
                    o.iter_mut()
                        .zip(&value[4..20])
                        .zip(key)
                        .for_each(|((o, v), k)| *o = v ^ k);
                    IpAddr::from(o)
                }
                _ => return None,
            };
            return Some(SocketAddr::new(ip, port));
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

fn push_attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    let len = u16::try_from(value.len()).expect("attributes built here are at most 20 bytes");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().div_ceil(4) * 4, 0);
}

/// Set the header's length field to the body so far plus `more` bytes.
fn set_length(out: &mut [u8], more: usize) {
    let len =
        u16::try_from(out.len() - HEADER + more).expect("messages built here are under 64 KiB");
    out[2..4].copy_from_slice(&len.to_be_bytes());
}

/// CRC-32 (ISO-HDLC, the one zlib and STUN's FINGERPRINT use), bit by bit:
/// answers are a few dozen bytes.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests;
