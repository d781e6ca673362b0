//! The real engines on loopback (`ringmail_cluster::testing`).
#![allow(dead_code)]

pub use ringmail_cluster::testing::*;
