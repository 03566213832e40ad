//! Channel pair simulations.
