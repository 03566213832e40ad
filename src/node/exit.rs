//! The client's side of exit traffic: which exit the node sends internet-bound packets to
//! (set by the driver from [`crate::exit::ExitChoice`]), and the one session whose internet
//! source addresses it believes. Invariant: with no exit in use, nothing from the TUN for an
//! internet address enters the mesh and no node may speak for an internet address.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use super::Node;
use crate::drops::DropReason;
use crate::identity::NodeId;
use crate::session::aead::TransportAead;

impl<A: TransportAead> Node<A> {
    /// Route internet traffic through `exit` (None: through none).
    pub fn set_exit_in_use(&mut self, exit: Option<NodeId>) {
        self.exit_in_use = exit;
    }

    /// The exit internet traffic goes to.
    pub fn exit_in_use(&self) -> Option<NodeId> {
        self.exit_in_use
    }

    /// A TUN packet for an address outside the overlay: to the exit in use, end to end.
    pub(super) fn send_internet(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        len: usize,
    ) -> Option<(Range<usize>, SocketAddr)> {
        match self.exit_in_use {
            Some(exit) => self.send_internet_paid(exit, now, buf, len),
            None => {
                self.drops.add(DropReason::NoExit);
                None
            }
        }
    }
}
