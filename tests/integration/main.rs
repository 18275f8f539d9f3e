//! Every integration test of the workspace's flow in one binary: each test
//! binary links the whole workspace, which on 2 cores costs minutes of CI.
//! The stand-ins they talk to (DynamoDB Local, moto, chromedriver, the
//! Python clients) are started by `infra/scripts/test.sh` before this runs.

mod admin;
mod aws;
mod aws_pipeline;
mod aws_store;
mod browser;
mod flow;
mod lambda_runtime;
mod mcp_clients;
mod mcp_lambda;
mod org_setup;
mod salesforce;
mod simple_salesforce;
mod structuring;
mod work_order;
