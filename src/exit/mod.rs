//! Exits, sans-IO (DESIGN.md §6): which exit a client uses (`choice`). The node feeds it the
//! exits the routing layer knows and the answers to its probes, and reads back the exit to
//! route through and the probes to send; no sockets and no clock inside.

pub mod choice;

pub use choice::{ChoiceConfig, ExitChoice, ExitEvent, ExitView, Mode, Offer};
