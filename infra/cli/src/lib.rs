//! The `fieldgate` command: the one-process dev stack and admin tools.

pub mod audit;
pub mod check;
pub mod codes;
pub mod dev;
pub mod dispatch;
pub mod eval;
pub mod mcp;
pub mod qr;
pub mod serve;
pub mod stickers;
