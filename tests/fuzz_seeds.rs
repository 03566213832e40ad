//! The fuzz targets' seed corpora (`fuzz/seeds/TARGET/`): valid messages of every kind, built
//! here from the real encoders so the fuzzers start deep inside each parser. The test fails
//! when a committed seed differs from what the encoders make today (a format changed: rerun
//! with `BITCLOUD_WRITE_SEEDS=1` to refresh them), and checks every seed parses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bitcloud::identity::Identity;
use bitcloud::money::{Amount, ChannelParams, Voucher};
use bitcloud::wire::channel::ChannelMsg;
use bitcloud::wire::discovery::Beacon;
use bitcloud::wire::mesh::{self, MeshHeader};
use bitcloud::wire::probe::Probe;
use bitcloud::wire::routing::{
    self, Hello, HelloSeqno, Ihu, PrefixKind, RouteRequest, Seqno, SeqnoRequest, Tlv, Update,
};

fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let me = Identity::from_secret([7; 32]);
    let peer = Identity::from_secret([8; 32]);
    let update = |kind, metric| {
        Tlv::Update(Update {
            kind,
            interval: Duration::from_secs(4),
            seqno: Seqno(9),
            metric,
            price_per_mib: 2000,
            price_epoch: 3,
            originator: me.id(),
            signature: routing::sign_announcement(&me, Seqno(9), kind),
        })
    };
    let tlvs = routing::encode(&[
        Tlv::Hello(Hello {
            seqno: HelloSeqno(5),
            interval: Duration::from_secs(1),
        }),
        Tlv::Ihu(Ihu {
            rxcost: 96,
            interval: Duration::from_secs(3),
        }),
        update(PrefixKind::Node, 96),
        update(PrefixKind::Default, 0xffff),
        Tlv::RouteRequest(RouteRequest::Wildcard),
        Tlv::SeqnoRequest(SeqnoRequest {
            kind: PrefixKind::Node,
            hop_count: 4,
            seqno: Seqno(10),
            originator: peer.id(),
        }),
    ]);
    let p = ChannelParams {
        payer: me.id(),
        payee: peer.id(),
        nonce: 1,
    };
    let mut voucher = Vec::new();
    ChannelMsg::Voucher(Voucher::sign(
        &me,
        p.id(),
        3,
        Amount::from_units(12_345),
        1 << 20,
        2,
    ))
    .encode(&mut voucher);
    // Under an on-chain ledger: a backed voucher (with its EIP-712 signature), the address
    // binding and an offer.
    let key = bitcloud::chain::ChainKey::derive(&me);
    let backing = bitcloud::chain::ChannelBacking {
        domain: bitcloud::chain::Domain {
            chain_id: 31337,
            contract: bitcloud::chain::Address::repeat_byte(0x11),
        },
        onchain: bitcloud::chain::B256::repeat_byte(0x22),
        payer: key.address(),
        scale: bitcloud::chain::TokenScale::new(18).expect("scale"),
        base: bitcloud::chain::Base::default(),
        deposit: Amount::from_cc(5),
        key: Some(key.clone()),
    };
    let plain = Voucher::sign(&me, p.id(), 4, Amount::from_units(23_456), 2 << 20, 2);
    let backed = Voucher {
        chain_sig: bitcloud::money::Backing::cosign(&backing, &plain),
        ..plain
    };
    let mut backed_voucher = Vec::new();
    ChannelMsg::Voucher(backed).encode(&mut backed_voucher);
    let b = key.binding(&me);
    let mut chain_address = Vec::new();
    ChannelMsg::ChainAddress(bitcloud::money::ChainAddress {
        address: b.address.into_array(),
        signature: b.signature,
    })
    .encode(&mut chain_address);
    let mut chain_channel = Vec::new();
    ChannelMsg::ChainChannel(backing.offer(p.id())).encode(&mut chain_channel);
    let mut frame = vec![0u8; 17];
    assert!(mesh::write(
        &mut frame,
        &MeshHeader {
            ttl: 8,
            dst: peer.id().ipv6(),
        }
    ));
    frame.extend_from_slice(&voucher);
    let config = bitcloud::config::render_initial(
        "node.key",
        "0.0.0.0:51820".parse().expect("addr"),
        "bc0",
        "bc.sock",
        "data",
    );
    vec![
        (
            "beacon",
            "signed",
            Beacon::sign(&me, 51820, 7).encode().to_vec(),
        ),
        ("probe", "request", Probe::Request(42).encode().to_vec()),
        ("probe", "reply", Probe::Reply(42).encode().to_vec()),
        ("probe", "api_status", br#"{"cmd":"status"}"#.to_vec()),
        (
            "probe",
            "api_exit",
            br#"{"cmd":"exit","use":"auto"}"#.to_vec(),
        ),
        ("mesh_frame", "routing_tlvs", tlvs),
        ("mesh_frame", "voucher", voucher),
        ("mesh_frame", "routed_voucher", frame),
        ("mesh_frame", "backed_voucher", backed_voucher),
        ("mesh_frame", "chain_address", chain_address),
        ("mesh_frame", "chain_channel", chain_channel),
        ("config", "initial", config.into_bytes()),
    ]
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds")
}

#[test]
fn seeds_are_current_and_parse() {
    let write = std::env::var_os("BITCLOUD_WRITE_SEEDS").is_some();
    for (target, name, bytes) in seeds() {
        let path = dir().join(target).join(name);
        if write {
            std::fs::create_dir_all(path.parent().expect("dir")).expect("seed dir");
            std::fs::write(&path, &bytes).expect("write seed");
        }
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (BITCLOUD_WRITE_SEEDS=1 makes it)", path.display())
        });
        assert!(
            on_disk == bytes,
            "{} is stale: the encoder changed (BITCLOUD_WRITE_SEEDS=1 refreshes it)",
            path.display()
        );
        let ok = match target {
            "beacon" => Beacon::decode(&bytes).is_ok(),
            "probe" => {
                Probe::decode(&bytes).is_ok()
                    || serde_json::from_slice::<bitcloud::api::Request>(&bytes).is_ok()
            }
            "mesh_frame" => match name {
                "routing_tlvs" => routing::decode(&bytes).is_ok_and(|d| d.tlvs.len() == 6),
                "voucher" | "chain_address" | "chain_channel" => ChannelMsg::decode(&bytes).is_ok(),
                "backed_voucher" => matches!(
                    ChannelMsg::decode(&bytes),
                    Ok(ChannelMsg::Voucher(v)) if v.chain_sig.is_some()
                ),
                _ => mesh::parse(&bytes).is_ok_and(|h| h.ttl == 8),
            },
            _ => bitcloud::config::Config::parse(
                Path::new("x.toml"),
                &String::from_utf8_lossy(&bytes),
            )
            .is_ok(),
        };
        assert!(ok, "seed {target}/{name} does not parse");
    }
}
