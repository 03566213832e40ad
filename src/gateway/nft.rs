//! Small builders for nftables JSON rules (the `nftables` crate's schema), so rule sets read
//! close to `nft` syntax. Only what our tables use; every builder returns owned values.

use std::borrow::Cow;
use std::net::IpAddr;

use nftables::expr::{
    Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, SetItem,
};
use nftables::stmt::{Accept, Match, Operator, Reject, RejectType, Statement};
use nftables::types::RejectCode;

/// `meta KEY`.
pub fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

/// `PROTOCOL FIELD`, e.g. `th dport`, `ip daddr`.
pub fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(protocol),
            field: Cow::Borrowed(field),
        },
    )))
}

/// A string immediate (interface names, symbolic constants such as `udp`).
pub fn s(v: &str) -> Expression<'static> {
    Expression::String(Cow::Owned(v.to_string()))
}

/// A number immediate.
pub fn n(v: u32) -> Expression<'static> {
    Expression::Number(v)
}

/// An anonymous set `{ a, b, ... }`.
pub fn set(items: Vec<Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(
        items.into_iter().map(SetItem::Element).collect(),
    ))
}

/// An address prefix `ADDR/LEN`.
pub fn prefix(addr: IpAddr, len: u8) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(&addr.to_string())),
        len: u32::from(len),
    }))
}

/// `LEFT == RIGHT` (for a set on the right, membership).
pub fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

/// `accept`.
pub fn accept() -> Statement<'static> {
    Statement::Accept(Some(Accept {}))
}

/// `reject with icmpx admin-prohibited`: local senders fail at once instead of timing out.
pub fn reject() -> Statement<'static> {
    Statement::Reject(Some(Reject::new(
        Some(RejectType::ICMPX),
        Some(RejectCode::AdminProhibited),
    )))
}

/// `LEFT != RIGHT` (for a set on the right, non-membership).
pub fn ne(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::NEQ,
    })
}

/// `LEFT in RIGHT`: for flags, every bit of the right is set (`tcp flags syn`).
pub fn has(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::IN,
    })
}

/// `drop`.
pub fn drop() -> Statement<'static> {
    Statement::Drop(Some(nftables::stmt::Drop {}))
}

/// `ct state { established, related }`.
pub fn ct_established() -> Statement<'static> {
    has(
        Expression::Named(NamedExpression::CT(nftables::expr::CT {
            key: Cow::Borrowed("state"),
            family: None,
            dir: None,
        })),
        set(vec![s("established"), s("related")]),
    )
}

/// `tcp option maxseg size`.
pub fn tcp_mss() -> Expression<'static> {
    Expression::Named(NamedExpression::TcpOption(nftables::expr::TcpOption {
        name: Cow::Borrowed("maxseg"),
        field: Some(Cow::Borrowed("size")),
    }))
}

/// `KEY set VALUE`.
pub fn mangle(key: Expression<'static>, value: Expression<'static>) -> Statement<'static> {
    Statement::Mangle(nftables::stmt::Mangle { key, value })
}

/// `masquerade`.
pub fn masquerade() -> Statement<'static> {
    Statement::Masquerade(None)
}

/// `LEFT > RIGHT`. nftables 0.6.3 swaps the names: its `Operator::LT` is the one that
/// serialises as `>` (a test below pins that, so a fixed crate is noticed).
pub fn gt(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::LT,
    })
}

/// Table `inet NAME`.
pub fn inet_table(name: &'static str) -> nftables::schema::Table<'static> {
    nftables::schema::Table {
        family: nftables::types::NfFamily::INet,
        name: Cow::Borrowed(name),
        handle: None,
    }
}

/// A batch that creates table `inet NAME` or empties it: `add table` is idempotent, and
/// flushing then refilling it in the same transaction is an atomic replace (nft 1.0.6 has no
/// `destroy`). The caller adds the chains and rules.
pub fn replace_table(name: &'static str) -> nftables::batch::Batch<'static> {
    use nftables::schema::{FlushObject, NfCmd, NfListObject};
    let mut b = nftables::batch::Batch::new();
    b.add(NfListObject::Table(inet_table(name)));
    b.add_cmd(NfCmd::Flush(FlushObject::Table(inet_table(name))));
    b
}

/// Base chain `NAME` of table `inet TABLE` on `hook` at priority `prio`.
pub fn base_chain(
    table: &'static str,
    name: &'static str,
    kind: nftables::types::NfChainType,
    hook: nftables::types::NfHook,
    prio: i32,
    policy: nftables::types::NfChainPolicy,
) -> nftables::schema::NfListObject<'static> {
    nftables::schema::NfListObject::Chain(nftables::schema::Chain {
        family: nftables::types::NfFamily::INet,
        table: Cow::Borrowed(table),
        name: Cow::Borrowed(name),
        _type: Some(kind),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(policy),
        ..nftables::schema::Chain::default()
    })
}

/// A rule appended to chain `CHAIN` of table `inet TABLE`.
pub fn rule(
    table: &'static str,
    chain: &'static str,
    expr: Vec<Statement<'static>>,
) -> nftables::schema::NfListObject<'static> {
    nftables::schema::NfListObject::Rule(nftables::schema::Rule {
        family: nftables::types::NfFamily::INet,
        table: Cow::Borrowed(table),
        chain: Cow::Borrowed(chain),
        expr: Cow::Owned(expr),
        ..nftables::schema::Rule::default()
    })
}

/// Whether table `inet NAME` exists.
pub fn table_present(name: &str) -> Result<bool, nftables::helper::NftablesError> {
    use nftables::schema::{NfListObject, NfObject};
    let tables = nftables::helper::get_current_ruleset_with_args(
        nftables::helper::DEFAULT_NFT,
        ["list", "tables"],
    )?;
    Ok(tables.objects.iter().any(|o| {
        matches!(o, NfObject::ListObject(NfListObject::Table(t))
            if t.family == nftables::types::NfFamily::INet && t.name == name)
    }))
}

/// Delete table `inet NAME` if it exists; returns whether it did.
pub fn delete_table(name: &'static str) -> Result<bool, nftables::helper::NftablesError> {
    if !table_present(name)? {
        return Ok(false);
    }
    let mut b = nftables::batch::Batch::new();
    b.delete(nftables::schema::NfListObject::Table(
        nftables::schema::Table {
            family: nftables::types::NfFamily::INet,
            name: Cow::Borrowed(name),
            handle: None,
        },
    ));
    nftables::helper::apply_ruleset(&b.to_nftables())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gt_serialises_as_greater_than() {
        let j = serde_json::to_string(&gt(n(1), n(2))).expect("serialises");
        assert!(j.contains("\"op\":\">\""), "{j}");
    }
}
