//! The Binding subset against RFC 5769's vectors, properties over generated
//! requests, and a bounded fuzz run over random and mutated datagrams.

use super::*;

/// RFC 5769 §2.1: a Binding request with SOFTWARE, PRIORITY, ICE-CONTROLLED,
/// USERNAME, MESSAGE-INTEGRITY and FINGERPRINT.
const RFC5769_REQUEST: &str = "000100582112a442b7e7a701bc34d686fa87dfae\
    802200105354554e207465737420636c69656e74002400046e0001ff\
    80290008932ff9b151263b36000600096576746a3a68367659202020\
    000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf";

/// RFC 5769 §2.2: the IPv4 Binding success response (192.0.2.1:32853).
const RFC5769_RESPONSE: &str = "0101003c2112a442b7e7a701bc34d686fa87dfae\
    8022000b7465737420766563746f7220002000080001a147e112a643\
    000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96";

const RFC5769_TXID: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test vectors are hex"))
        .collect()
}

/// A deterministic xorshift stream: the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Up to `max - 1` random bytes.
    fn some(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max);
        self.bytes(n)
    }
    fn addr(&mut self) -> SocketAddr {
        let port = self.next() as u16;
        if self.next() % 2 == 0 {
            let o = self.bytes(4);
            SocketAddr::from(([o[0], o[1], o[2], o[3]], port))
        } else {
            let mut o = [0u8; 16];
            o.copy_from_slice(&self.bytes(16));
            SocketAddr::from((o, port))
        }
    }
}

/// A well-formed Binding request: random transaction id, some attributes
/// a client may send (known or comprehension-optional), maybe a FINGERPRINT.
fn request(rng: &mut Rng) -> Vec<u8> {
    let mut m = BINDING_REQUEST.to_be_bytes().to_vec();
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    m.extend(rng.bytes(12));
    for _ in 0..rng.below(4) {
        let kind = match rng.below(4) {
            0 => ATTR_USERNAME,
            1 => ATTR_PRIORITY,
            2 => 0x8022, // SOFTWARE
            _ => 0x8000 | rng.next() as u16,
        };
        if kind == ATTR_FINGERPRINT {
            continue;
        }
        let value = rng.some(40);
        push_attr(&mut m, kind, &value);
    }
    if rng.next() % 2 == 0 {
        set_length(&mut m, 8);
        let crc = crc32(&m) ^ FINGERPRINT_XOR;
        push_attr(&mut m, ATTR_FINGERPRINT, &crc.to_be_bytes());
    }
    set_length(&mut m, 0);
    m
}

fn has_valid_fingerprint(msg: &[u8]) -> bool {
    let n = msg.len();
    n >= HEADER + 8
        && msg[n - 8..n - 4] == [0x80, 0x28, 0x00, 0x04]
        && msg[n - 4..] == (crc32(&msg[..n - 8]) ^ FINGERPRINT_XOR).to_be_bytes()
}

#[test]
fn crc32_is_the_zlib_one() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
}

#[test]
fn the_rfc5769_request_is_a_binding_request_with_a_fingerprint() {
    let req = unhex(RFC5769_REQUEST);
    assert_eq!(
        parse(&req),
        Ok(BindingRequest {
            transaction_id: RFC5769_TXID,
            fingerprint: true
        })
    );
    // One flipped bit anywhere before the FINGERPRINT breaks it.
    let mut bad = req.clone();
    bad[30] ^= 0x01;
    assert_eq!(parse(&bad), Err(Dropped::Malformed));
}

#[test]
fn the_answer_encodes_the_address_as_rfc5769_does() {
    let resp = unhex(RFC5769_RESPONSE);
    let from: SocketAddr = "192.0.2.1:32853".parse().expect("literal");
    assert_eq!(parse_success(&resp, &RFC5769_TXID), Some(from));
    let ours = binding_success(
        &BindingRequest {
            transaction_id: RFC5769_TXID,
            fingerprint: false,
        },
        from,
    );
    // Header with length 12, then the very XOR-MAPPED-ADDRESS of the RFC.
    assert_eq!(&ours[..4], &[0x01, 0x01, 0x00, 0x0c]);
    assert_eq!(&ours[4..20], &resp[4..20]);
    assert_eq!(&ours[20..], &resp[36..48]);
}

#[test]
fn an_ipv6_answer_matches_rfc5769_section_2_3() {
    // RFC 5769 §2.3: [2001:db8:1234:5678:11:2233:4455:6677]:32853.
    let from: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
        .parse()
        .expect("literal");
    let ours = binding_success(
        &BindingRequest {
            transaction_id: RFC5769_TXID,
            fingerprint: false,
        },
        from,
    );
    assert_eq!(
        &ours[20..],
        unhex("0020001400 02a147 0113a9faa5d3f179bc25f4b5bed2b9d9").as_slice()
    );
    assert_eq!(parse_success(&ours, &RFC5769_TXID), Some(from));
}

#[test]
fn a_browser_binding_request_gets_its_address_back() {
    // What Chromium and Firefox send to a STUN server: a bare header.
    let req = unhex("000100002112a44270776e4a395050463570557a");
    let from: SocketAddr = "192.0.2.2:51509".parse().expect("literal");
    let out = answer(&req, from).expect("answered");
    assert_eq!(out.len(), 32);
    let mut txid = [0u8; 12];
    txid.copy_from_slice(&req[8..20]);
    assert_eq!(parse_success(&out, &txid), Some(from));
}

#[test]
fn an_ipv4_client_on_a_dual_stack_socket_is_answered_as_ipv4() {
    let req = unhex("000100002112a44270776e4a395050463570557a");
    let mapped: SocketAddr = "[::ffff:10.1.2.3]:4000".parse().expect("literal");
    let out = answer(&req, mapped).expect("answered");
    let mut txid = [0u8; 12];
    txid.copy_from_slice(&req[8..20]);
    assert_eq!(
        parse_success(&out, &txid),
        Some("10.1.2.3:4000".parse().expect("literal"))
    );
}

#[test]
fn each_kind_of_bad_datagram_is_dropped_for_its_reason() {
    let good = unhex("000100002112a44270776e4a395050463570557a");
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut d = good.clone();
        f(&mut d);
        parse(&d)
    };
    assert_eq!(parse(&[]), Err(Dropped::NotStun));
    assert_eq!(parse(&good[..19]), Err(Dropped::NotStun));
    assert_eq!(parse(&vec![0u8; MAX_REQUEST + 1]), Err(Dropped::Oversized));
    assert_eq!(with(&|d| d[0] = 0x40), Err(Dropped::NotStun));
    assert_eq!(with(&|d| d[4] = 0), Err(Dropped::NotStun));
    // Length says 4, nothing follows; length not a multiple of 4.
    assert_eq!(with(&|d| d[3] = 4), Err(Dropped::NotStun));
    assert_eq!(
        with(&|d| {
            d[3] = 2;
            d.extend([0, 0])
        }),
        Err(Dropped::NotStun)
    );
    // A Binding indication, a Binding success response, an Allocate request.
    assert_eq!(with(&|d| d[1] = 0x11), Err(Dropped::NotBindingRequest));
    assert_eq!(with(&|d| d[0] = 0x01), Err(Dropped::NotBindingRequest));
    assert_eq!(with(&|d| d[1] = 0x03), Err(Dropped::NotBindingRequest));
    // An attribute longer than the body.
    assert_eq!(
        with(&|d| {
            d[3] = 8;
            d.extend([0x80, 0x22, 0x00, 0x08, 1, 2, 3, 4])
        }),
        Err(Dropped::Malformed)
    );
    // An unknown comprehension-required attribute.
    assert_eq!(
        with(&|d| {
            d[3] = 8;
            d.extend([0x00, 0x77, 0x00, 0x04, 1, 2, 3, 4])
        }),
        Err(Dropped::Malformed)
    );
    // A FINGERPRINT that is wrong, or not last.
    assert_eq!(
        with(&|d| {
            d[3] = 8;
            d.extend([0x80, 0x28, 0x00, 0x04, 1, 2, 3, 4])
        }),
        Err(Dropped::Malformed)
    );
    let mut fp_then_more = unhex(RFC5769_REQUEST);
    fp_then_more.extend([0x80, 0x22, 0x00, 0x00]);
    set_length(&mut fp_then_more, 0);
    assert_eq!(parse(&fp_then_more), Err(Dropped::Malformed));
}

#[test]
fn property_every_well_formed_request_is_answered_with_the_senders_address() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let req = request(&mut rng);
        let from = rng.addr();
        let parsed = parse(&req).expect("a generated request is well formed");
        let out = answer(&req, from).expect("answered");
        // Same transaction, success class, the sender's own address.
        assert_eq!(&out[..2], &BINDING_SUCCESS.to_be_bytes());
        assert_eq!(&out[8..20], &req[8..20]);
        let got = parse_success(&out, &parsed.transaction_id).expect("our answer parses");
        let want = match from.ip() {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(|v4| SocketAddr::new(v4.into(), from.port()))
                .unwrap_or(from),
            IpAddr::V4(_) => from,
        };
        assert_eq!(got, want);
        // A FINGERPRINT exactly when the request had one, and it verifies.
        assert_eq!(parsed.fingerprint, has_valid_fingerprint(&out));
        // Bounded growth; nothing of the request is echoed but its id.
        assert!(out.len() <= req.len() + MAX_GROWTH);
        assert_eq!(out.len() % 4, 0);
    }
}

/// Random datagrams and mutations of good ones: the decoder never panics,
/// answers only well-formed Binding requests, never grows a datagram by
/// more than [`MAX_GROWTH`], and whatever it answers is itself well formed.
#[test]
fn fuzz_random_and_mutated_datagrams_are_dropped_or_answered_within_bounds() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut answered = 0;
    let mut dropped = [0usize; 4];
    for i in 0..60_000 {
        let datagram = match i % 3 {
            // Pure noise, sometimes with a STUN-looking start.
            0 => {
                let mut d = rng.some(MAX_REQUEST + 64);
                if d.len() >= 8 && rng.next() % 2 == 0 {
                    d[..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
                    d[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                    let len = (d.len() - HEADER.min(d.len())) as u16;
                    d[2..4].copy_from_slice(&len.to_be_bytes());
                }
                d
            }
            // A good request with a few bytes overwritten or bits flipped.
            1 => {
                let mut d = request(&mut rng);
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(d.len());
                    if rng.next() % 2 == 0 {
                        d[at] ^= 1 << rng.below(8);
                    } else {
                        d[at] = rng.next() as u8;
                    }
                }
                d
            }
            // A good request truncated, extended, or with its length field lying.
            _ => {
                let mut d = request(&mut rng);
                match rng.below(3) {
                    0 => d.truncate(rng.below(d.len())),
                    1 => d.extend(rng.some(64).into_iter().chain([0])),
                    _ => {
                        let lie = rng.next() as u16;
                        d[2..4].copy_from_slice(&lie.to_be_bytes());
                    }
                }
                d
            }
        };
        let from = rng.addr();
        match answer(&datagram, from) {
            Ok(out) => {
                answered += 1;
                assert!(datagram.len() >= HEADER && datagram[..2] == [0x00, 0x01]);
                assert!(
                    out.len() <= datagram.len() + MAX_GROWTH,
                    "{} bytes answered with {}",
                    datagram.len(),
                    out.len()
                );
                assert!(
                    parse_success(&out, &datagram[8..20].try_into().expect("12 bytes")).is_some()
                );
            }
            Err(why) => {
                let slot = Dropped::ALL
                    .iter()
                    .position(|d| *d == why)
                    .expect("every reason is listed in ALL");
                dropped[slot] += 1;
            }
        }
    }
    // The run reached every branch: some answers, every kind of drop.
    assert!(answered > 1000, "answered {answered}");
    for (why, n) in Dropped::ALL.iter().zip(dropped) {
        assert!(n > 0, "no datagram was dropped as {why:?}");
    }
}
