//! The command line's integration tests, one binary (STYLE.md, convention 6): each runs the
//! `unseen` binary as its users do.

mod common;

mod check;
mod demo;
mod domain;
mod guide;
mod identities;
mod operations;
mod restore;
