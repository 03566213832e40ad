//! One direction pair of transport keys from a finished handshake, with its send counter and
//! replay window. Invariant: each counter is sealed at most once (the counter only grows and
//! sealing stops before it can wrap), and each received counter is delivered at most once.

use std::sync::Arc;
use std::time::Instant;

use super::aead::{TAG_LEN, TransportAead};
use super::replay::{Replay, ReplayWindow};
use crate::wire::outer::{
    Kind, LINK_AAD_MAX, TRANSPORT_HEADER_LEN, TransportHeader, encrypted_len, link_associated_data,
    write_transport_header,
};

/// WireGuard's REJECT_AFTER_MESSAGES (2^64 - 2^13 - 1): no key seals or opens past this.
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);

/// Why a transport message was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// The counter is past the key's limit.
    Exhausted,
    /// Seen before.
    Replayed,
    /// Older than the replay window.
    TooOld,
    /// AEAD authentication failed.
    Decrypt,
}

/// Transport keys of one session.
pub struct Keypair<A> {
    /// Our index: the peer puts it in every message it sends us.
    pub local_index: u32,
    /// The peer's index: we put it in every message we send.
    pub remote_index: u32,
    /// Shared so a [`SealJob`] can seal on another thread (issue 11, crypto on every core).
    send: Arc<A>,
    recv: A,
    send_counter: u64,
    replay: ReplayWindow,
    /// When the handshake that made it finished.
    pub created: Instant,
    /// Whether we initiated that handshake (only initiators rekey by age, as in WireGuard).
    pub initiator: bool,
    /// The transport cipher the handshake agreed on.
    pub cipher: super::aead::Cipher,
}

impl<A: TransportAead> Keypair<A> {
    /// Wrap freshly derived keys.
    pub fn new(
        keys: &super::handshake::SessionKeys,
        local_index: u32,
        remote_index: u32,
        created: Instant,
        initiator: bool,
    ) -> Self {
        Keypair {
            local_index,
            remote_index,
            send: Arc::new(A::with_cipher(&keys.send, keys.cipher)),
            recv: A::with_cipher(&keys.recv, keys.cipher),
            cipher: keys.cipher,
            send_counter: 0,
            replay: ReplayWindow::default(),
            created,
            initiator,
        }
    }

    /// Messages sealed so far.
    pub fn sent(&self) -> u64 {
        self.send_counter
    }

    /// Seal the plaintext at `buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + len]`: writes the
    /// header before it and the tag after it. Returns the message length, or None when the
    /// key is exhausted or `buf` has no room for the tag. The header is associated data, and
    /// a `MeshSealed` body is encrypted only in its trailing mesh header
    /// ([`encrypted_len`], [`link_associated_data`]).
    pub fn seal(&mut self, kind: Kind, buf: &mut [u8], len: usize) -> Option<usize> {
        let counter = self.reserve(kind, buf, len)?;
        seal_body(&*self.send, counter, kind, buf, len)?;
        Some(TRANSPORT_HEADER_LEN + len + TAG_LEN)
    }

    /// As [`Keypair::seal`], but only the counter is taken and the header written now; the
    /// returned job does the AEAD work later, on any thread, on the same `buf`. The message is
    /// not valid until the job has run.
    pub fn seal_deferred(
        &mut self,
        kind: Kind,
        buf: &mut [u8],
        len: usize,
    ) -> Option<(usize, SealJob<A>)> {
        let counter = self.reserve(kind, buf, len)?;
        let job = SealJob {
            key: Arc::clone(&self.send),
            counter,
            kind,
            len,
        };
        Some((TRANSPORT_HEADER_LEN + len + TAG_LEN, job))
    }

    /// Check that `buf` can hold the sealed message, take the next counter and write the
    /// header. Each counter is handed out once, so no two messages share a nonce.
    fn reserve(&mut self, kind: Kind, buf: &mut [u8], len: usize) -> Option<u64> {
        let total = TRANSPORT_HEADER_LEN + len + TAG_LEN;
        encrypted_len(kind as u8, len)?;
        if self.send_counter >= REJECT_AFTER_MESSAGES || buf.len() < total {
            return None;
        }
        let counter = self.send_counter;
        let hdr: &mut [u8; TRANSPORT_HEADER_LEN] =
            buf.get_mut(..TRANSPORT_HEADER_LEN)?.try_into().ok()?;
        write_transport_header(hdr, kind, self.remote_index, counter);
        self.send_counter += 1;
        Some(counter)
    }

    /// Open a transport message in place (`msg` is the whole datagram). On success the
    /// plaintext is at `msg[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + n]`, n returned.
    pub fn open(&mut self, hdr: &TransportHeader, msg: &mut [u8]) -> Result<usize, OpenError> {
        if hdr.counter >= REJECT_AFTER_MESSAGES {
            return Err(OpenError::Exhausted);
        }
        // Cheap check first so replays cost no AEAD work.
        self.replay.check(hdr.counter).map_err(replay_err)?;
        let body_len = msg
            .len()
            .checked_sub(TRANSPORT_HEADER_LEN + TAG_LEN)
            .ok_or(OpenError::Decrypt)?;
        let secret = encrypted_len(hdr.kind, body_len).ok_or(OpenError::Decrypt)?;
        let (ad, rest) = msg.split_at_mut(TRANSPORT_HEADER_LEN + body_len - secret);
        let (ct, tag) = rest.split_at_mut(secret);
        let tag: &[u8; TAG_LEN] = (&*tag).try_into().map_err(|_| OpenError::Decrypt)?;
        let mut scratch = [0u8; LINK_AAD_MAX];
        let aad = link_associated_data(hdr.kind, ad, &mut scratch);
        if !self.recv.open(hdr.counter, aad, ct, tag) {
            return Err(OpenError::Decrypt);
        }
        // Record only after authentication, or forged counters could poison the window.
        self.replay.update(hdr.counter).map_err(replay_err)?;
        Ok(body_len)
    }
}

/// The AEAD work of one [`Keypair::seal_deferred`]: a pure function of the key, the counter
/// it reserved and the bytes, so it may run on a worker thread.
pub struct SealJob<A> {
    key: Arc<A>,
    counter: u64,
    kind: Kind,
    len: usize,
}

impl<A: TransportAead> SealJob<A> {
    /// Encrypt and tag the message whose header `seal_deferred` wrote at the start of `buf`
    /// (the same slice it was given). None if `buf` is too short, which the reservation
    /// already ruled out.
    pub fn run(&self, buf: &mut [u8]) -> Option<()> {
        seal_body(&*self.key, self.counter, self.kind, buf, self.len)
    }
}

/// Seal the body after an already written header: the part [`encrypted_len`] names is
/// encrypted, the rest is associated data, and the tag follows.
fn seal_body<A: TransportAead>(
    key: &A,
    counter: u64,
    kind: Kind,
    buf: &mut [u8],
    len: usize,
) -> Option<()> {
    let secret = encrypted_len(kind as u8, len)?;
    let (ad, rest) = buf.split_at_mut_checked(TRANSPORT_HEADER_LEN + len - secret)?;
    let (pt, tail) = rest.split_at_mut_checked(secret)?;
    let mut scratch = [0u8; LINK_AAD_MAX];
    let tag = key.seal(
        counter,
        link_associated_data(kind as u8, ad, &mut scratch),
        pt,
    );
    tail.get_mut(..TAG_LEN)?.copy_from_slice(&tag);
    Some(())
}

fn replay_err(r: Replay) -> OpenError {
    match r {
        Replay::Duplicate => OpenError::Replayed,
        Replay::TooOld => OpenError::TooOld,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::aead::DefaultAead;
    use crate::session::handshake::SessionKeys;
    use crate::wire::outer::{Message, parse};

    fn pair() -> (Keypair<DefaultAead>, Keypair<DefaultAead>) {
        let now = Instant::now();
        let a = SessionKeys {
            send: [1; 32],
            recv: [2; 32],
            cipher: crate::session::aead::Cipher::Aes256Gcm,
        };
        let b = SessionKeys {
            send: [2; 32],
            recv: [1; 32],
            cipher: crate::session::aead::Cipher::Aes256Gcm,
        };
        (
            Keypair::new(&a, 10, 20, now, true),
            Keypair::new(&b, 20, 10, now, false),
        )
    }

    fn seal(k: &mut Keypair<DefaultAead>, data: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; TRANSPORT_HEADER_LEN + data.len() + TAG_LEN];
        buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + data.len()].copy_from_slice(data);
        let n = k.seal(Kind::Packet, &mut buf, data.len()).unwrap();
        buf.truncate(n);
        buf
    }

    fn open(k: &mut Keypair<DefaultAead>, mut msg: Vec<u8>) -> Result<Vec<u8>, OpenError> {
        let Ok(Message::Transport(h)) = parse(&msg) else {
            panic!("not transport")
        };
        let n = k.open(&h, &mut msg)?;
        Ok(msg[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + n].to_vec())
    }

    #[test]
    fn counters_replay_and_tamper() {
        let (mut a, mut b) = pair();
        let m0 = seal(&mut a, b"hello");
        let m1 = seal(&mut a, b"world");
        assert_eq!(open(&mut b, m1.clone()).unwrap(), b"world");
        assert_eq!(
            open(&mut b, m0.clone()).unwrap(),
            b"hello",
            "reordered is fine"
        );
        assert_eq!(open(&mut b, m0.clone()), Err(OpenError::Replayed));
        let mut t = seal(&mut a, b"x");
        let last = t.len() - 1;
        t[last] ^= 1;
        assert_eq!(open(&mut b, t), Err(OpenError::Decrypt));
        // A forged header (kind byte) fails: the header is AAD.
        let mut k = seal(&mut a, b"y");
        k[1] = 7;
        assert_eq!(open(&mut b, k), Err(OpenError::Decrypt));
        // Keepalive: empty plaintext.
        assert_eq!(open(&mut b, seal(&mut a, b"")).unwrap(), b"");
        assert_eq!(a.sent(), 5);
    }

    #[test]
    fn deferred_seal_is_the_same_message_and_may_run_on_another_thread() {
        let (mut a, mut b) = pair();
        let (mut a2, _) = pair();
        let data = b"deferred payload";
        let inline = seal(&mut a2, data);
        let mut buf = vec![0u8; TRANSPORT_HEADER_LEN + data.len() + TAG_LEN];
        buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + data.len()].copy_from_slice(data);
        let (n, job) = a.seal_deferred(Kind::Packet, &mut buf, data.len()).unwrap();
        // The counter is taken at reservation: the next seal gets the next one.
        let next = seal(&mut a, b"next");
        let buf = std::thread::spawn(move || {
            job.run(&mut buf).unwrap();
            buf
        })
        .join()
        .unwrap();
        assert_eq!(&buf[..n], &inline[..], "same key, counter and bytes");
        assert_eq!(open(&mut b, next).unwrap(), b"next");
        assert_eq!(open(&mut b, buf[..n].to_vec()).unwrap(), data);
        // A job run on a buffer shorter than it reserved refuses rather than panics.
        let mut buf = vec![0u8; TRANSPORT_HEADER_LEN + 4 + TAG_LEN];
        let (_, job) = a.seal_deferred(Kind::Packet, &mut buf, 4).unwrap();
        assert_eq!(job.run(&mut buf[..TRANSPORT_HEADER_LEN + 4]), None);
    }

    #[test]
    fn mesh_sealed_encrypts_only_its_trailer() {
        use crate::wire::mesh::MESH_HEADER_LEN;
        let (mut a, mut b) = pair();
        let mut body = b"already sealed end to end".to_vec();
        let trailer = [0x5a; MESH_HEADER_LEN];
        body.extend_from_slice(&trailer);
        let mut buf = vec![0u8; TRANSPORT_HEADER_LEN + body.len() + TAG_LEN];
        buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + body.len()].copy_from_slice(&body);
        let n = a.seal(Kind::MeshSealed, &mut buf, body.len()).unwrap();
        assert_eq!(n, buf.len());
        let clear = body.len() - MESH_HEADER_LEN;
        assert_eq!(
            &buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + clear],
            &body[..clear],
            "the e2e part travels as it is"
        );
        let at = TRANSPORT_HEADER_LEN + clear;
        assert_ne!(
            &buf[at..at + MESH_HEADER_LEN],
            &trailer[..],
            "the trailer is encrypted"
        );
        assert_eq!(open(&mut b, buf.clone()).unwrap(), body);
        // Any bit of the link header (the kind byte here) fails the tag.
        let mut t = seal_kind(&mut a, Kind::MeshSealed, &body);
        t[1] ^= 1;
        assert_eq!(open(&mut b, t), Err(OpenError::Decrypt));
    }

    #[test]
    fn mesh_sealed_authenticates_the_link_header_trailer_and_length_not_the_e2e_message() {
        use crate::wire::mesh::MESH_HEADER_LEN;
        let (mut a, mut b) = pair();
        let e2e: Vec<u8> = (0..1400u32).map(|i| i as u8).collect();
        let mut body = e2e.clone();
        body.extend_from_slice(&[0x5a; MESH_HEADER_LEN]);
        let m = seal_kind(&mut a, Kind::MeshSealed, &body);
        assert_eq!(open(&mut b, m.clone()).unwrap(), body);
        let e2e_at = TRANSPORT_HEADER_LEN;
        let e2e_end = e2e_at + e2e.len();
        // The link header, the encrypted mesh header and the link tag are covered.
        for i in [1, e2e_end, e2e_end + MESH_HEADER_LEN - 1, m.len() - 1] {
            let mut t = seal_kind(&mut a, Kind::MeshSealed, &body);
            t[i] ^= 1;
            assert_eq!(open(&mut b, t), Err(OpenError::Decrypt), "byte {i}");
        }
        // Bytes cut from or added to the e2e message change the length, which is covered.
        let mut cut = seal_kind(&mut a, Kind::MeshSealed, &body);
        cut.remove(e2e_at + 100);
        assert_eq!(open(&mut b, cut), Err(OpenError::Decrypt));
        let mut grown = seal_kind(&mut a, Kind::MeshSealed, &body);
        grown.insert(e2e_at + 100, 0);
        assert_eq!(open(&mut b, grown), Err(OpenError::Decrypt));
        // The e2e message itself is covered by its own tag, checked only by the destination:
        // the link lets a flipped bit through anywhere in it (docs/relay-crypto.md).
        for i in [e2e_at, e2e_at + 700, e2e_end - 1] {
            let mut t = seal_kind(&mut a, Kind::MeshSealed, &body);
            t[i] ^= 1;
            let got = open(&mut b, t).unwrap();
            assert_eq!(got.len(), body.len());
            assert_ne!(got, body);
        }
    }

    #[test]
    fn mesh_sealed_refuses_what_is_too_short() {
        let (mut a, mut b) = pair();
        // A body shorter than the trailer is neither sealed nor opened.
        let mut short = vec![0u8; TRANSPORT_HEADER_LEN + 3 + TAG_LEN];
        assert_eq!(a.seal(Kind::MeshSealed, &mut short, 3), None);
        let mut forged = seal_kind(&mut a, Kind::Mesh, b"abc");
        forged[1] = Kind::MeshSealed as u8;
        assert_eq!(open(&mut b, forged), Err(OpenError::Decrypt));
    }

    fn seal_kind(k: &mut Keypair<DefaultAead>, kind: Kind, data: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; TRANSPORT_HEADER_LEN + data.len() + TAG_LEN];
        buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + data.len()].copy_from_slice(data);
        let n = k.seal(kind, &mut buf, data.len()).unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn exhausted_key_stops_sealing() {
        let (mut a, _) = pair();
        a.send_counter = REJECT_AFTER_MESSAGES;
        let mut buf = [0u8; 64];
        assert_eq!(a.seal(Kind::Packet, &mut buf, 4), None);
    }
}
