//! The `fieldgate` command as a user runs it, in one test binary.

mod audit;
mod chaos;
mod check;
mod codes;
mod commands;
mod crash;
mod exposure;
mod serve;
mod stickers;
