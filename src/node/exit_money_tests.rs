//! The exit's client table under a flood of fresh ids: bounded, and a paying client's money
//! state survives eviction.

use std::time::{Duration, Instant};

use super::MAX_EXIT_ACCOUNTS;
use crate::identity::{Identity, NodeId};
use crate::money::{ChannelParams, EXIT_CHANNEL_NONCE};
use crate::node::{Node, NodeConfig, WalletOp};

fn id(i: u64) -> NodeId {
    let mut s = [3u8; 32];
    s[..8].copy_from_slice(&i.to_le_bytes());
    Identity::from_secret(s).id()
}

#[test]
fn a_flood_of_fresh_clients_evicts_the_idlest_and_keeps_its_debt() {
    let now = Instant::now();
    let me = Identity::from_secret([9; 32]);
    let mut cfg = NodeConfig::default();
    cfg.router.exit = true;
    cfg.router.exit_fee_per_mib = 1000;
    let Ok(mut n) = Node::<crate::session::aead::DefaultAead>::new(&me, &[], cfg, now, 0, 1) else {
        panic!("node")
    };
    let chan = ChannelParams {
        payer: id(0),
        payee: me.id(),
        nonce: EXIT_CHANNEL_NONCE,
    }
    .id();
    assert!(n.exit_judge_and_bill(id(0), 5000, false, now));
    let later = now + Duration::from_secs(1);
    for i in 1..=MAX_EXIT_ACCOUNTS as u64 {
        assert!(n.exit_judge_and_bill(id(i), 100, false, later));
    }
    assert_eq!(n.money.exit.payees.len(), MAX_EXIT_ACCOUNTS);
    assert!(!n.money.exit.payees.contains_key(&id(0)), "the idlest went");
    let ops: Vec<WalletOp> = std::iter::from_fn(|| n.poll_wallet()).collect();
    let kept = ops.iter().any(|o| {
        matches!(o, WalletOp::Checkpoint(c)
            if c.iter().any(|(cid, s)| *cid == chan && s.total_bytes() == 5000))
    });
    assert!(kept, "its meter was checkpointed: {ops:?}");
    // It comes back: its debt is still there.
    assert!(n.exit_judge_and_bill(id(0), 100, false, later + Duration::from_secs(1)));
    let back = n
        .money
        .exit
        .payees
        .get(&id(0))
        .map(|a| a.payee.meter().total_bytes());
    assert_eq!(back, Some(5100));
    assert_eq!(n.money.exit.payees.len(), MAX_EXIT_ACCOUNTS);
}
