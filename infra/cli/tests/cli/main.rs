//! The `fieldgate` command as a user runs it, in one test binary.

mod check;
mod commands;
mod crash;
mod serve;
