//! Byte format of channel messages (the payload of a `Channel` mesh frame): price quotes,
//! credit grants, vouchers, acks and resyncs. Invariants: decoding checks every length before
//! reading, never panics and never indexes input bytes; a message must be consumed exactly
//! (trailing bytes are an error); all integers are big-endian; a voucher's body is the exact
//! byte string its signature covers ([`Voucher::body_bytes`]).
//!
//! ```text
//! type u8, then:
//! 0x01 PriceQuote   epoch u32 | units_per_mib u64                                         12
//! 0x02 CreditGrant  channel_id [32] | nonce u64 | credit_window u128 | max_cumulative u128 72
//! 0x03 Voucher      channel_id [32] | seq u64 | cumulative_amount u128 |
//!                   cumulative_bytes u64 | price_epoch u32 | signature [64]              132
//! 0x04 VoucherAck   channel_id [32] | seq u64 | credited u128 | metered_bytes u64 |
//!                   metered_amount u128                                                  80
//! 0x05 Resync       channel_id [32] | meter_bytes u64 | meter_amount u128 |
//!                   has_voucher u8 (0, 1, or 2 for a backed voucher) |
//!                   [Voucher body and signature, 132 | backed voucher, 197]   57, 189 or 254
//! 0x06 Voucher, backed: as 0x03, then chain_sig [65] (EIP-712, docs/ledger.md)         197
//! 0x07 ChainAddress address [20] | Ed25519 signature [64] over it                       84
//! 0x08 ChainChannel channel_id [32] | onchain_id [32] | base_seq u64 |
//!                   base_amount u128 | base_bytes u64                                   96
//! ```

use crate::money::{
    Amount, ChainAddress, ChainChannel, ChainSig, ChannelId, CreditGrant, Price, PriceQuote,
    Resync, Voucher, VoucherAck,
};

/// Type byte of [`PriceQuote`].
pub const TYPE_PRICE_QUOTE: u8 = 0x01;
/// Type byte of [`CreditGrant`].
pub const TYPE_CREDIT_GRANT: u8 = 0x02;
/// Type byte of [`Voucher`].
pub const TYPE_VOUCHER: u8 = 0x03;
/// Type byte of [`VoucherAck`].
pub const TYPE_VOUCHER_ACK: u8 = 0x04;
/// Type byte of [`Resync`].
pub const TYPE_RESYNC: u8 = 0x05;
/// Type byte of a [`Voucher`] with a chain signature.
pub const TYPE_BACKED_VOUCHER: u8 = 0x06;
/// Type byte of [`ChainAddress`].
pub const TYPE_CHAIN_ADDRESS: u8 = 0x07;
/// Type byte of [`ChainChannel`].
pub const TYPE_CHAIN_CHANNEL: u8 = 0x08;

const PRICE_QUOTE_LEN: usize = 4 + 8;
const CREDIT_GRANT_LEN: usize = 32 + 8 + 16 + 16;
const VOUCHER_LEN: usize = crate::money::voucher::VOUCHER_LEN;
const BACKED_VOUCHER_LEN: usize = VOUCHER_LEN + crate::money::CHAIN_SIG_LEN;
const CHAIN_ADDRESS_LEN: usize = 20 + 64;
const CHAIN_CHANNEL_LEN: usize = 32 + 32 + 8 + 16 + 8;
const VOUCHER_ACK_LEN: usize = 32 + 8 + 16 + 8 + 16;
const RESYNC_FIXED_LEN: usize = 32 + 8 + 16 + 1;
/// The longest channel message, type byte included.
pub const MAX_CHANNEL_MSG_LEN: usize = 1 + RESYNC_FIXED_LEN + BACKED_VOUCHER_LEN;

/// Errors decoding or encoding channel messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelWireError {
    /// No bytes at all.
    #[error("empty channel message")]
    Empty,
    /// The type byte is not a known channel message.
    #[error("unknown channel message type {0:#04x}")]
    UnknownType(u8),
    /// The input ended inside a field.
    #[error("truncated {what}: field needs {need} bytes, {have} left")]
    Truncated {
        /// The message being read.
        what: &'static str,
        /// Bytes the next field needs.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// Bytes left over after a complete message.
    #[error("{extra} trailing bytes after {what}")]
    Trailing {
        /// The message read.
        what: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// The resync voucher flag was not 0, 1 or 2.
    #[error("invalid has_voucher flag {0}")]
    BadFlag(u8),
    /// The output buffer cannot hold the message.
    #[error("output buffer too small: need {need}, have {have}")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
}

/// One channel message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelMsg {
    /// Payee to payer: price from an epoch on.
    PriceQuote(PriceQuote),
    /// Payee to payer: channel and credit window.
    CreditGrant(CreditGrant),
    /// Payer to payee: a signed cumulative payment.
    Voucher(Voucher),
    /// Payee to payer: credited, with the payee's counters.
    VoucherAck(VoucherAck),
    /// Either way after a handshake: latest voucher and meter totals.
    Resync(Resync),
    /// Either way under an on-chain ledger: the sender's chain address, bound to its node id.
    ChainAddress(ChainAddress),
    /// Payer to payee: the on-chain channel that backs this channel from a base on.
    ChainChannel(ChainChannel),
}

fn voucher_len(v: &Voucher) -> usize {
    if v.chain_sig.is_some() {
        BACKED_VOUCHER_LEN
    } else {
        VOUCHER_LEN
    }
}

impl ChannelMsg {
    /// Encoded length, type byte included.
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            ChannelMsg::PriceQuote(_) => PRICE_QUOTE_LEN,
            ChannelMsg::CreditGrant(_) => CREDIT_GRANT_LEN,
            ChannelMsg::Voucher(v) => voucher_len(v),
            ChannelMsg::VoucherAck(_) => VOUCHER_ACK_LEN,
            ChannelMsg::Resync(r) => RESYNC_FIXED_LEN + r.latest.as_ref().map_or(0, voucher_len),
            ChannelMsg::ChainAddress(_) => CHAIN_ADDRESS_LEN,
            ChannelMsg::ChainChannel(_) => CHAIN_CHANNEL_LEN,
        }
    }

    /// Append the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.encoded_len(), 0);
        let mut w = Writer {
            buf: out.get_mut(start..).unwrap_or_default(),
        };
        self.write(&mut w);
    }

    /// Write the encoding into `buf` without allocating; returns the bytes written.
    pub fn encode_into(&self, buf: &mut [u8]) -> Result<usize, ChannelWireError> {
        let need = self.encoded_len();
        let Some(dst) = buf.get_mut(..need) else {
            return Err(ChannelWireError::BufferTooSmall {
                need,
                have: buf.len(),
            });
        };
        self.write(&mut Writer { buf: dst });
        Ok(need)
    }

    fn write(&self, w: &mut Writer<'_>) {
        match self {
            ChannelMsg::PriceQuote(q) => {
                w.put(&[TYPE_PRICE_QUOTE]);
                w.put(&q.price.epoch.to_be_bytes());
                w.put(&q.price.units_per_mib.to_be_bytes());
            }
            ChannelMsg::CreditGrant(g) => {
                w.put(&[TYPE_CREDIT_GRANT]);
                w.put(&g.channel_id.0);
                w.put(&g.nonce.to_be_bytes());
                w.put(&g.credit_window.units().to_be_bytes());
                w.put(&g.max_cumulative.units().to_be_bytes());
            }
            ChannelMsg::Voucher(v) => {
                w.put(&[if v.chain_sig.is_some() {
                    TYPE_BACKED_VOUCHER
                } else {
                    TYPE_VOUCHER
                }]);
                write_voucher(w, v);
            }
            ChannelMsg::ChainAddress(a) => {
                w.put(&[TYPE_CHAIN_ADDRESS]);
                w.put(&a.address);
                w.put(&a.signature);
            }
            ChannelMsg::ChainChannel(c) => {
                w.put(&[TYPE_CHAIN_CHANNEL]);
                w.put(&c.channel_id.0);
                w.put(&c.onchain_id);
                w.put(&c.base_seq.to_be_bytes());
                w.put(&c.base_amount.units().to_be_bytes());
                w.put(&c.base_bytes.to_be_bytes());
            }
            ChannelMsg::VoucherAck(a) => {
                w.put(&[TYPE_VOUCHER_ACK]);
                w.put(&a.channel_id.0);
                w.put(&a.seq.to_be_bytes());
                w.put(&a.credited.units().to_be_bytes());
                w.put(&a.metered_bytes.to_be_bytes());
                w.put(&a.metered_amount.units().to_be_bytes());
            }
            ChannelMsg::Resync(r) => {
                w.put(&[TYPE_RESYNC]);
                w.put(&r.channel_id.0);
                w.put(&r.meter_bytes.to_be_bytes());
                w.put(&r.meter_amount.units().to_be_bytes());
                match &r.latest {
                    Some(v) => {
                        w.put(&[if v.chain_sig.is_some() { 2 } else { 1 }]);
                        write_voucher(w, v);
                    }
                    None => w.put(&[0]),
                }
            }
        }
    }

    /// Decode exactly one message from `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<ChannelMsg, ChannelWireError> {
        let (&ty, body) = bytes.split_first().ok_or(ChannelWireError::Empty)?;
        let (what, msg, rest) = match ty {
            TYPE_PRICE_QUOTE => {
                let mut r = Reader::new(body, "PriceQuote");
                let epoch = u32::from_be_bytes(r.take()?);
                let units = u64::from_be_bytes(r.take()?);
                let q = PriceQuote {
                    price: Price::new(units, epoch),
                };
                (r.what, ChannelMsg::PriceQuote(q), r.rest)
            }
            TYPE_CREDIT_GRANT => {
                let mut r = Reader::new(body, "CreditGrant");
                let g = CreditGrant {
                    channel_id: ChannelId(r.take()?),
                    nonce: u64::from_be_bytes(r.take()?),
                    credit_window: r.amount()?,
                    max_cumulative: r.amount()?,
                };
                (r.what, ChannelMsg::CreditGrant(g), r.rest)
            }
            TYPE_VOUCHER => {
                let mut r = Reader::new(body, "Voucher");
                let v = read_voucher(&mut r, false)?;
                (r.what, ChannelMsg::Voucher(v), r.rest)
            }
            TYPE_BACKED_VOUCHER => {
                let mut r = Reader::new(body, "backed Voucher");
                let v = read_voucher(&mut r, true)?;
                (r.what, ChannelMsg::Voucher(v), r.rest)
            }
            TYPE_CHAIN_ADDRESS => {
                let mut r = Reader::new(body, "ChainAddress");
                let a = ChainAddress {
                    address: r.take()?,
                    signature: r.take()?,
                };
                (r.what, ChannelMsg::ChainAddress(a), r.rest)
            }
            TYPE_CHAIN_CHANNEL => {
                let mut r = Reader::new(body, "ChainChannel");
                let c = ChainChannel {
                    channel_id: ChannelId(r.take()?),
                    onchain_id: r.take()?,
                    base_seq: u64::from_be_bytes(r.take()?),
                    base_amount: r.amount()?,
                    base_bytes: u64::from_be_bytes(r.take()?),
                };
                (r.what, ChannelMsg::ChainChannel(c), r.rest)
            }
            TYPE_VOUCHER_ACK => {
                let mut r = Reader::new(body, "VoucherAck");
                let a = VoucherAck {
                    channel_id: ChannelId(r.take()?),
                    seq: u64::from_be_bytes(r.take()?),
                    credited: r.amount()?,
                    metered_bytes: u64::from_be_bytes(r.take()?),
                    metered_amount: r.amount()?,
                };
                (r.what, ChannelMsg::VoucherAck(a), r.rest)
            }
            TYPE_RESYNC => {
                let mut r = Reader::new(body, "Resync");
                let channel_id = ChannelId(r.take()?);
                let meter_bytes = u64::from_be_bytes(r.take()?);
                let meter_amount = r.amount()?;
                let latest = match r.take::<1>()? {
                    [0] => None,
                    [1] => Some(read_voucher(&mut r, false)?),
                    [2] => Some(read_voucher(&mut r, true)?),
                    [f] => return Err(ChannelWireError::BadFlag(f)),
                };
                let m = Resync {
                    channel_id,
                    latest,
                    meter_bytes,
                    meter_amount,
                };
                (r.what, ChannelMsg::Resync(m), r.rest)
            }
            other => return Err(ChannelWireError::UnknownType(other)),
        };
        if !rest.is_empty() {
            return Err(ChannelWireError::Trailing {
                what,
                extra: rest.len(),
            });
        }
        Ok(msg)
    }
}

fn write_voucher(w: &mut Writer<'_>, v: &Voucher) {
    w.put(&v.body_bytes());
    w.put(&v.signature);
    if let Some(c) = &v.chain_sig {
        w.put(&c.0);
    }
}

fn read_voucher(r: &mut Reader<'_>, backed: bool) -> Result<Voucher, ChannelWireError> {
    Ok(Voucher {
        channel_id: ChannelId(r.take()?),
        seq: u64::from_be_bytes(r.take()?),
        cumulative_amount: r.amount()?,
        cumulative_bytes: u64::from_be_bytes(r.take()?),
        price_epoch: u32::from_be_bytes(r.take()?),
        signature: r.take()?,
        chain_sig: if backed {
            Some(ChainSig(r.take()?))
        } else {
            None
        },
    })
}

/// Checked cursor over input bytes: every read checks the remaining length first.
struct Reader<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(rest: &'a [u8], what: &'static str) -> Self {
        Reader { rest, what }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], ChannelWireError> {
        let (head, tail) =
            self.rest
                .split_first_chunk::<N>()
                .ok_or(ChannelWireError::Truncated {
                    what: self.what,
                    need: N,
                    have: self.rest.len(),
                })?;
        self.rest = tail;
        Ok(*head)
    }

    fn amount(&mut self) -> Result<Amount, ChannelWireError> {
        Ok(Amount::from_units(u128::from_be_bytes(self.take()?)))
    }
}

/// Output cursor; callers size the buffer from `encoded_len` first, and `put` never panics.
struct Writer<'a> {
    buf: &'a mut [u8],
}

impl Writer<'_> {
    fn put(&mut self, src: &[u8]) {
        let buf = std::mem::take(&mut self.buf);
        let n = src.len().min(buf.len());
        let (head, tail) = buf.split_at_mut(n);
        head.copy_from_slice(src.get(..n).unwrap_or_default());
        self.buf = tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn voucher() -> impl Strategy<Value = Voucher> {
        (
            any::<[u8; 32]>(),
            any::<u64>(),
            any::<u128>(),
            any::<u64>(),
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 64),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 65)),
        )
            .prop_map(|(id, seq, amt, bytes, epoch, sig, chain)| Voucher {
                channel_id: ChannelId(id),
                seq,
                cumulative_amount: Amount::from_units(amt),
                cumulative_bytes: bytes,
                price_epoch: epoch,
                signature: sig.try_into().unwrap_or([0; 64]),
                chain_sig: chain.map(|c| ChainSig(c.try_into().unwrap_or([0; 65]))),
            })
    }

    fn msg() -> impl Strategy<Value = ChannelMsg> {
        prop_oneof![
            (any::<u32>(), any::<u64>()).prop_map(|(e, u)| ChannelMsg::PriceQuote(PriceQuote {
                price: Price::new(u, e)
            })),
            (
                any::<[u8; 32]>(),
                any::<u64>(),
                any::<u128>(),
                any::<u128>()
            )
                .prop_map(|(id, n, w, m)| ChannelMsg::CreditGrant(CreditGrant {
                    channel_id: ChannelId(id),
                    nonce: n,
                    credit_window: Amount::from_units(w),
                    max_cumulative: Amount::from_units(m),
                })),
            voucher().prop_map(ChannelMsg::Voucher),
            (
                any::<[u8; 32]>(),
                any::<u64>(),
                any::<u128>(),
                any::<u64>(),
                any::<u128>()
            )
                .prop_map(|(id, s, c, b, a)| ChannelMsg::VoucherAck(VoucherAck {
                    channel_id: ChannelId(id),
                    seq: s,
                    credited: Amount::from_units(c),
                    metered_bytes: b,
                    metered_amount: Amount::from_units(a),
                })),
            (
                any::<[u8; 32]>(),
                proptest::option::of(voucher()),
                any::<u64>(),
                any::<u128>()
            )
                .prop_map(|(id, v, b, a)| ChannelMsg::Resync(Resync {
                    channel_id: ChannelId(id),
                    latest: v,
                    meter_bytes: b,
                    meter_amount: Amount::from_units(a),
                })),
            (
                any::<[u8; 20]>(),
                proptest::collection::vec(any::<u8>(), 64)
            )
                .prop_map(|(address, sig)| ChannelMsg::ChainAddress(ChainAddress {
                    address,
                    signature: sig.try_into().unwrap_or([0; 64]),
                })),
            (
                any::<[u8; 32]>(),
                any::<[u8; 32]>(),
                any::<u64>(),
                any::<u128>(),
                any::<u64>()
            )
                .prop_map(|(id, on, s, a, b)| ChannelMsg::ChainChannel(ChainChannel {
                    channel_id: ChannelId(id),
                    onchain_id: on,
                    base_seq: s,
                    base_amount: Amount::from_units(a),
                    base_bytes: b,
                })),
        ]
    }

    #[test]
    fn known_answer_price_quote() {
        let m = ChannelMsg::PriceQuote(PriceQuote {
            price: Price::new(0x0102_0304_0506_0708, 9),
        });
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(hex::encode(&out), "01000000090102030405060708");
    }

    #[test]
    fn voucher_wire_body_is_the_signed_body() {
        let id = crate::identity::Identity::from_secret([3; 32]);
        let v = Voucher::sign(&id, ChannelId([7; 32]), 5, Amount::from_units(9), 10, 2);
        let mut out = Vec::new();
        ChannelMsg::Voucher(v).encode(&mut out);
        assert_eq!(out.len(), 1 + VOUCHER_LEN);
        assert_eq!(out.get(1..69), Some(&v.body_bytes()[..]));
        let ChannelMsg::Voucher(w) = ChannelMsg::decode(&out).unwrap() else {
            panic!()
        };
        assert!(w.verify(&id.id()));
    }

    #[test]
    fn typed_errors() {
        use ChannelWireError as E;
        assert_eq!(ChannelMsg::decode(&[]), Err(E::Empty));
        assert_eq!(ChannelMsg::decode(&[0x7f]), Err(E::UnknownType(0x7f)));
        assert_eq!(
            ChannelMsg::decode(&[1, 0, 0]),
            Err(E::Truncated {
                what: "PriceQuote",
                need: 4,
                have: 2
            })
        );
        let mut b = vec![1; 14];
        b[0] = TYPE_PRICE_QUOTE;
        assert_eq!(
            ChannelMsg::decode(&b),
            Err(E::Trailing {
                what: "PriceQuote",
                extra: 1
            })
        );
        let mut r = vec![TYPE_RESYNC];
        r.extend_from_slice(&[0; 56]);
        r.push(3);
        assert_eq!(ChannelMsg::decode(&r), Err(E::BadFlag(3)));
        let m = ChannelMsg::PriceQuote(PriceQuote {
            price: Price::new(1, 1),
        });
        assert_eq!(
            m.encode_into(&mut [0; 12]),
            Err(E::BufferTooSmall { need: 13, have: 12 })
        );
        assert_eq!(m.encode_into(&mut [0; MAX_CHANNEL_MSG_LEN]), Ok(13));
    }

    proptest! {
        #[test]
        fn roundtrip_and_exact_length(m in msg()) {
            let mut out = vec![0xee];
            m.encode(&mut out);
            let enc = &out[1..];
            prop_assert_eq!(enc.len(), m.encoded_len());
            prop_assert!(enc.len() <= MAX_CHANNEL_MSG_LEN);
            prop_assert_eq!(ChannelMsg::decode(enc), Ok(m));
            let mut buf = [0u8; MAX_CHANNEL_MSG_LEN];
            let n = m.encode_into(&mut buf).unwrap();
            prop_assert_eq!(&buf[..n], enc);
            // Every strict prefix is truncated, any extra byte is trailing.
            for cut in 0..enc.len() {
                prop_assert!(ChannelMsg::decode(&enc[..cut]).is_err());
            }
            let mut long = enc.to_vec();
            long.push(0);
            let is_trailing = matches!(
                ChannelMsg::decode(&long),
                Err(ChannelWireError::Trailing { extra: 1, .. })
            );
            prop_assert!(is_trailing);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..260)) {
            if let Ok(m) = ChannelMsg::decode(&b) {
                let mut out = Vec::new();
                m.encode(&mut out);
                prop_assert_eq!(out, b);
            }
        }

        #[test]
        fn typed_prefix_never_panics(ty in 1u8..6, b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut v = vec![ty];
            v.extend_from_slice(&b);
            let _ = ChannelMsg::decode(&v);
        }
    }
}
