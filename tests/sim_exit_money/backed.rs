//! Exit channels under a ledger (docs/ledger.md, "Exit channels"): client and exit learn each
//! other's chain address through their end-to-end session (not from the relay between them);
//! the exit credits nothing unbacked; an offer for a channel that is not the client paying
//! this exit is refused; once backed, the client's vouchers carry the chain signature and its
//! spend never passes what it locked.

use std::sync::Arc;

use bitcloud::chain::{Address, B256, Base, ChainKey, ChannelBacking, Domain, TokenScale};
use bitcloud::identity::Identity;
use bitcloud::money::{Backing, ChainAddress, LINK_CHANNEL_NONCE, SharedBacking};
use bitcloud::node::ChainEvent;

use super::*;

fn address_of(i: &Identity) -> ChainAddress {
    let b = ChainKey::derive(i).binding(i);
    ChainAddress {
        address: b.address.into_array(),
        signature: b.signature,
    }
}

fn events(net: &mut Net, i: usize) -> Vec<ChainEvent> {
    std::iter::from_fn(|| net.nodes[i].node.poll_chain_event()).collect()
}

/// The on-chain channel client 0 locks `deposit` in for exit 2 (`payer`: the client's side,
/// which cosigns).
fn backing(deposit: Amount, payer: bool) -> ChannelBacking {
    let key = ChainKey::derive(&ident(0));
    ChannelBacking {
        domain: Domain {
            chain_id: 31337,
            contract: Address::repeat_byte(0xcc),
        },
        onchain: B256::repeat_byte(7),
        payer: key.address(),
        scale: TokenScale::new(18).unwrap(),
        base: Base::default(),
        deposit,
        key: payer.then_some(key),
    }
}

#[test]
fn exit_channel_is_backed_on_chain_and_the_client_never_owes_more_than_it_locked() {
    const FEE: u64 = 5000;
    let mut net = chain(FEE);
    for i in 0..3 {
        net.nodes[i].node.enable_chain(address_of(&ident(i)));
    }
    let (client, exit) = (ident(0).id(), ident(2).id());
    let chan = exit_channel(client, exit);
    let _ = traffic(&mut net, 300, 0, 1000);
    net.run(Duration::from_secs(2));

    // Addresses: each learns the other's, bound to its node id, through the e2e session.
    let at_client = events(&mut net, 0);
    assert!(
        at_client.contains(&ChainEvent::PeerAddress {
            peer: exit,
            address: address_of(&ident(2)).address
        }),
        "{at_client:?}"
    );
    let at_exit = events(&mut net, 2);
    assert!(
        at_exit.contains(&ChainEvent::PeerAddress {
            peer: client,
            address: address_of(&ident(0)).address
        }),
        "{at_exit:?}"
    );
    // Unbacked: the exit credits nothing and the client wants a channel.
    let v = net.nodes[0].node.chain_views();
    let cv = v
        .iter()
        .find(|v| v.exit && v.peer == exit)
        .expect("exit view");
    assert_eq!(cv.outgoing, chan);
    assert!(cv.outgoing_wanted && !cv.outgoing_backed, "{cv:?}");
    assert_eq!(
        exit_view(&net, 2, 0, "incoming").cumulative_paid,
        Amount::ZERO
    );

    // A hostile offer: the deposit offered for the client's link channel, in the e2e session.
    let deposit = cost(4 << 20, FEE);
    let link = ChannelParams {
        payer: client,
        payee: ident(1).id(),
        nonce: LINK_CHANNEL_NONCE,
    }
    .id();
    let rejected = net.nodes[2].node.drops().get(DropReason::ChannelRejected);
    let shared = |b: ChannelBacking| -> SharedBacking { Arc::new(b) };
    let now = net.now;
    assert!(net.nodes[0].node.set_payer_backing(
        &exit,
        chan,
        Some(shared(backing(deposit, true))),
        Some(backing(deposit, true).offer(link)),
        now,
    ));
    net.run(Duration::from_millis(300));
    assert!(
        net.nodes[2].node.drops().get(DropReason::ChannelRejected) > rejected,
        "refused"
    );
    assert!(
        !events(&mut net, 2)
            .iter()
            .any(|e| matches!(e, ChainEvent::ChannelOffered { .. })),
        "not passed on"
    );
    // The right offer reaches the exit's ledger (after the rate limit).
    net.run(Duration::from_secs(1));
    let now = net.now;
    net.nodes[0].node.set_payer_backing(
        &exit,
        chan,
        Some(shared(backing(deposit, true))),
        Some(backing(deposit, true).offer(chan)),
        now,
    );
    net.run(Duration::from_millis(300));
    let offered = events(&mut net, 2);
    assert!(
        offered.iter().any(|e| matches!(e,
            ChainEvent::ChannelOffered { peer, offer, .. }
                if *peer == client && offer.channel_id == chan)),
        "{offered:?}"
    );
    // The exit's ledger checked it on chain: backed.
    let now = net.now;
    net.nodes[2]
        .node
        .set_payee_backing(&client, chan, Some(shared(backing(deposit, false))), now);
    let _ = traffic(&mut net, 2000, 1000, 1000);
    net.run(Duration::from_secs(4));
    let out = exit_view(&net, 0, 2, "outgoing");
    let inc = exit_view(&net, 2, 0, "incoming");
    assert!(out.cumulative_paid > Amount::ZERO, "{out:?}");
    assert_eq!(inc.cumulative_paid, out.cumulative_paid, "{out:?} {inc:?}");
    let latest = net.nodes[2]
        .node
        .chain_views()
        .into_iter()
        .find(|v| v.exit && v.peer == client)
        .and_then(|v| v.incoming_latest)
        .expect("a credited voucher");
    assert!(
        latest.chain_sig.is_some() && backing(deposit, false).verify(&latest),
        "the exit holds a voucher the chain will pay"
    );

    // Far more traffic than the lock covers: the client stops at the lock.
    let _ = traffic(&mut net, 6000, 0, 1200);
    net.run(Duration::from_secs(4));
    let out = exit_view(&net, 0, 2, "outgoing");
    assert!(out.cumulative_paid <= deposit, "{out:?}");
    assert!(
        net.nodes[0].node.drops().get(DropReason::SelfThrottled) > 0,
        "held back at the lock"
    );
    assert_eq!(
        exit_view(&net, 2, 0, "incoming").cumulative_paid,
        out.cumulative_paid
    );
}
