//! Fake servers shared by the integration tests.
#![allow(dead_code)]

pub mod fake_imap;
pub mod fake_pop3;
pub mod fake_smtp;
