//! The emulator over real HTTP, in one test binary (each binary links the
//! crate again; on 2 cores that is CI time).

mod common;
mod faults_and_state;
mod http_api;
mod jwt_bearer;
