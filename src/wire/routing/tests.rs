//! Tests of the routing message codec: round trips, the documented layout, signatures,
//! framing errors, skipping of unknown TLVs, seqno arithmetic, and never panicking.

use super::codec::from_centis;
use super::*;
use proptest::prelude::*;

fn id(n: u8) -> NodeId {
    Identity::from_secret([n; 32]).id()
}

fn sample_update() -> Update {
    let ident = Identity::from_secret([9; 32]);
    Update {
        kind: PrefixKind::Default,
        interval: Duration::from_secs(16),
        seqno: Seqno(0xffff_fffe),
        metric: 300,
        price_per_mib: 1234567,
        price_epoch: 7,
        originator: ident.id(),
        signature: sign_announcement(&ident, Seqno(0xffff_fffe), PrefixKind::Default),
    }
}

fn samples() -> Vec<Tlv> {
    vec![
        Tlv::Hello(Hello {
            seqno: HelloSeqno(65535),
            interval: Duration::from_secs(4),
        }),
        Tlv::Ihu(Ihu {
            rxcost: 256,
            interval: Duration::from_millis(12_340),
        }),
        Tlv::Update(sample_update()),
        Tlv::RouteRequest(RouteRequest::Wildcard),
        Tlv::RouteRequest(RouteRequest::Specific {
            kind: PrefixKind::Node,
            originator: id(1),
        }),
        Tlv::SeqnoRequest(SeqnoRequest {
            kind: PrefixKind::Node,
            hop_count: 64,
            seqno: Seqno(3),
            originator: id(2),
        }),
    ]
}

#[test]
fn roundtrip_every_tlv() {
    let tlvs = samples();
    let bytes = encode(&tlvs);
    assert_eq!(
        bytes.len(),
        1 + tlvs.iter().map(Tlv::encoded_len).sum::<usize>()
    );
    let d = decode(&bytes).unwrap();
    assert_eq!(d.tlvs, tlvs);
    assert_eq!(d.skipped, 0);
    for t in &tlvs {
        assert!(t.body_len() < 256);
    }
}

#[test]
fn update_layout_is_as_documented() {
    let u = sample_update();
    let bytes = encode(&[Tlv::Update(u.clone())]);
    assert_eq!(bytes.len(), 1 + 2 + 118);
    assert_eq!(&bytes[..3], &[VERSION, tlv_type::UPDATE, 118]);
    assert_eq!(bytes[3], 1, "kind");
    assert_eq!(
        &bytes[5..7],
        &1600u16.to_be_bytes(),
        "interval in centiseconds"
    );
    assert_eq!(&bytes[7..11], &[0xff, 0xff, 0xff, 0xfe], "seqno");
    assert_eq!(&bytes[11..13], &300u16.to_be_bytes(), "metric");
    assert_eq!(&bytes[25..57], u.originator.as_bytes());
    assert_eq!(&bytes[57..], &u.signature);
}

#[test]
fn signatures_bind_originator_seqno_and_kind() {
    let u = sample_update();
    assert!(u.verify_signature());
    // Metric and price are per hop and unsigned.
    let hop = Update {
        metric: 9999,
        price_per_mib: 1,
        price_epoch: 0,
        ..u.clone()
    };
    assert!(hop.verify_signature());
    for bad in [
        Update {
            seqno: Seqno(0xffff_ffff),
            ..u.clone()
        },
        // The same low 16 bits: format 1's seqno space is not a prefix of format 2's.
        Update {
            seqno: Seqno(0x0000_fffe),
            ..u.clone()
        },
        Update {
            kind: PrefixKind::Node,
            ..u.clone()
        },
        Update {
            originator: id(1),
            ..u.clone()
        },
    ] {
        assert!(!bad.verify_signature());
    }
}

#[test]
fn framing_errors() {
    assert_eq!(decode(&[]), Err(WireError::Empty));
    assert_eq!(decode(&[2]), Err(WireError::Version(2)));
    assert_eq!(decode(&[VERSION]).unwrap(), Decoded::default());
    assert_eq!(
        decode(&[VERSION, tlv_type::HELLO]),
        Err(WireError::TruncatedHeader { offset: 1 })
    );
    // Oversized length: claims 255 bytes, 6 present.
    let mut b = encode(&samples()[..1]);
    b[2] = 255;
    assert_eq!(
        decode(&b),
        Err(WireError::Overrun {
            tlv_type: tlv_type::HELLO,
            offset: 1,
            len: 255,
            remaining: 6
        })
    );
}

#[test]
fn every_truncation_of_a_valid_message_is_rejected_or_shorter() {
    let bytes = encode(&samples());
    for cut in 0..bytes.len() {
        // A cut on a TLV boundary is a valid shorter message; anywhere else is an error.
        if let Ok(d) = decode(&bytes[..cut]) {
            assert!(d.tlvs.len() < samples().len());
        }
    }
}

#[test]
fn short_known_bodies_are_errors() {
    for (t, min) in [
        (tlv_type::HELLO, HELLO_LEN),
        (tlv_type::IHU, IHU_LEN),
        (tlv_type::UPDATE, UPDATE_LEN),
        (tlv_type::ROUTE_REQUEST, ROUTE_REQUEST_LEN),
        (tlv_type::SEQNO_REQUEST, SEQNO_REQUEST_LEN),
    ] {
        let mut b = vec![VERSION, t, (min - 1) as u8];
        b.resize(3 + min - 1, 0);
        assert_eq!(
            decode(&b),
            Err(WireError::TooShort {
                tlv_type: t,
                len: min - 1,
                min
            })
        );
    }
}

#[test]
fn unknown_types_and_kinds_are_skipped_and_counted() {
    let mut b = vec![VERSION, 200, 3, 1, 2, 3];
    samples()[0].encode_into(&mut b);
    let mut u = Vec::new();
    Tlv::Update(sample_update()).encode_into(&mut u);
    u[2] = 77; // unknown prefix kind
    b.extend_from_slice(&u);
    // Longer-than-needed body: the extra bytes are ignored.
    b.extend_from_slice(&[tlv_type::IHU, 6, 1, 0, 0, 100, 0xaa, 0xbb]);
    let d = decode(&b).unwrap();
    assert_eq!(d.skipped, 2);
    assert_eq!(d.tlvs.len(), 2);
    assert_eq!(d.tlvs[0], samples()[0]);
    assert_eq!(
        d.tlvs[1],
        Tlv::Ihu(Ihu {
            rxcost: 256,
            interval: Duration::from_secs(1)
        })
    );
}

#[test]
fn seqno_comparison_is_modular() {
    assert!(Seqno(1).is_newer_than(Seqno(0)));
    assert!(Seqno(0).is_newer_than(Seqno(u32::MAX)));
    assert!(Seqno(10).is_newer_than(Seqno(u32::MAX - 5)));
    assert!(!Seqno(u32::MAX - 5).is_newer_than(Seqno(10)));
    assert!(!Seqno(5).is_newer_than(Seqno(5)));
    assert!(Seqno(5).is_at_least(Seqno(5)));
    assert!(Seqno(0x7fff_ffff).is_newer_than(Seqno(0)));
    assert!(!Seqno(0x8000_0000).is_newer_than(Seqno(0)));
    // 16 bits ahead is nowhere near the edge any more.
    assert!(Seqno(0x1_0000).is_newer_than(Seqno(0)));
    assert_eq!(Seqno(u32::MAX).next(), Seqno(0));
    assert!(HelloSeqno(0).is_newer_than(HelloSeqno(65535)));
    assert!(!HelloSeqno(0x8000).is_newer_than(HelloSeqno(0)));
    assert_eq!(HelloSeqno(65535).next(), HelloSeqno(0));
}

#[test]
fn more_than_the_tlv_limit_is_refused_whole() {
    let ok = vec![Tlv::RouteRequest(RouteRequest::Wildcard); MAX_TLVS_PER_MESSAGE];
    assert_eq!(
        decode(&encode(&ok)).unwrap().tlvs.len(),
        MAX_TLVS_PER_MESSAGE
    );
    // Unknown and legacy TLVs count too: skipping is still work.
    for extra in [Tlv::RouteRequest(RouteRequest::Wildcard).encoded_len(), 0] {
        let mut b = encode(&ok);
        if extra == 0 {
            b.extend_from_slice(&[200, 0]);
        } else {
            b.extend_from_slice(&[tlv_type::ROUTE_REQUEST, 0]);
        }
        assert_eq!(
            decode(&b),
            Err(WireError::TooManyTlvs {
                max: MAX_TLVS_PER_MESSAGE
            })
        );
    }
    // The largest datagram of two-byte TLVs fails at the 65th header.
    let mut huge = vec![VERSION];
    for _ in 0..32_767 {
        huge.extend_from_slice(&[tlv_type::ROUTE_REQUEST, 0]);
    }
    assert!(matches!(decode(&huge), Err(WireError::TooManyTlvs { .. })));
}

#[test]
fn format_1_updates_and_seqno_requests_are_refused_and_counted() {
    // A format 1 update: 116-byte body with a 16-bit seqno, signed under "bitcloud route v1".
    let mut b = vec![VERSION, tlv_type::LEGACY_UPDATE, 116];
    b.extend_from_slice(&[0; 116]);
    b.extend_from_slice(&[tlv_type::LEGACY_SEQNO_REQUEST, 36]);
    b.extend_from_slice(&[0; 36]);
    Tlv::RouteRequest(RouteRequest::Wildcard).encode_into(&mut b);
    let d = decode(&b).unwrap();
    assert_eq!((d.legacy, d.skipped), (2, 0));
    assert_eq!(d.tlvs, vec![Tlv::RouteRequest(RouteRequest::Wildcard)]);
    assert_ne!(tlv_type::UPDATE, tlv_type::LEGACY_UPDATE);
    assert_eq!(ANNOUNCEMENT_FORMAT, 2);
    assert_eq!(ROUTE_SIG_DOMAIN, b"bitcloud route v2");
}

#[test]
fn intervals_saturate() {
    let h = Tlv::Hello(Hello {
        seqno: HelloSeqno(0),
        interval: Duration::from_secs(10_000),
    });
    let d = decode(&encode(&[h])).unwrap();
    assert_eq!(
        d.tlvs[0],
        Tlv::Hello(Hello {
            seqno: HelloSeqno(0),
            interval: Duration::from_millis(655_350)
        })
    );
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_versioned_tlv_soup(
        tlvs in proptest::collection::vec((0u8..8, proptest::collection::vec(any::<u8>(), 0..140)), 0..12),
        lie in any::<Option<(usize, u8)>>(),
    ) {
        let mut b = vec![VERSION];
        for (t, body) in &tlvs {
            b.push(*t);
            b.push(body.len() as u8);
            b.extend_from_slice(body);
        }
        if let Some((pos, v)) = lie
            && !b.is_empty()
        {
            let i = pos % b.len();
            b[i] = v;
        }
        if let Ok(d) = decode(&b) {
            // Whatever decodes re-encodes to something that decodes the same way.
            prop_assert_eq!(decode(&encode(&d.tlvs)).unwrap().tlvs, d.tlvs);
        }
    }

    #[test]
    fn roundtrip_arbitrary_updates(
        seqno in any::<u32>(), metric in any::<u16>(), price in any::<u64>(),
        epoch in any::<u32>(), cs in any::<u16>(), sig in proptest::collection::vec(any::<u8>(), 64),
        orig in any::<[u8; 32]>(), default in any::<bool>(),
    ) {
        let u = Update {
            kind: if default { PrefixKind::Default } else { PrefixKind::Node },
            interval: from_centis(cs),
            seqno: Seqno(seqno),
            metric,
            price_per_mib: price,
            price_epoch: epoch,
            originator: NodeId(orig),
            signature: sig.try_into().unwrap(),
        };
        let d = decode(&encode(&[Tlv::Update(u.clone())])).unwrap();
        prop_assert_eq!(d.tlvs, vec![Tlv::Update(u)]);
    }
}
