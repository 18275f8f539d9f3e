//! The MCP endpoint: `/mcp`, Model Context Protocol over Streamable HTTP.
//! An AI assistant (Claude and others) reads the workflows its token may
//! use and the records they bind, and proposes records. It never writes:
//! a proposal goes to the reviewers like a technician's report, and only
//! an approved one reaches Salesforce (the commit step).
//!
//! Stateless: no MCP session is kept (rmcp's `NeverSessionManager`), each
//! request is authenticated against the token store and served from the
//! table, so any request may reach a fresh Lambda container. Answers are
//! plain JSON where the protocol allows.

pub mod oauth;
mod tools;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use fieldgate::Chain;
use fieldgate::clock::Clock;
use fieldgate::compose::{BuildError, Components};
use fieldgate::domain::{AssistantToken, CredentialKind, CsrfKey, Workflows};
use fieldgate::ports::{AssetDirectory, AssistantTokens, ProposalStore};
use fieldgate::salesforce::SalesforceAssets;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use std::sync::Arc;

pub use tools::Tools;

/// The largest MCP request accepted (a proposal with its source text).
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;
/// Longest `source_text`, in characters (as the intake form's notes).
pub const MAX_SOURCE_TEXT: usize = 10_000;

pub struct McpDeps {
    pub store: Arc<dyn ProposalStore>,
    pub assistants: Arc<dyn AssistantTokens>,
    /// One asset by id (cached), for the asset a proposal binds.
    pub assets: Arc<dyn AssetDirectory>,
    /// Asset search by name, serial number or account.
    pub search: Arc<SalesforceAssets>,
    pub workflows: Arc<Workflows>,
    /// Signs the status links handed back (the same as the intake's).
    pub links: Arc<CsrfKey>,
    /// Base of the status links; unset, the request's own host (in AWS the
    /// API's URL cannot be given to a function the API routes to).
    pub public_url: Option<String>,
    pub clock: Arc<dyn Clock>,
}

impl McpDeps {
    /// The function's dependencies from the composition root.
    pub async fn build(c: &Components) -> Result<Self, BuildError> {
        // The Salesforce credential is read on the first search or lookup,
        // not at start: a token check, a status or a tools list never needs
        // it (issue 10: a cold start reads only the keys).
        let salesforce = c.deferred_salesforce().await?;
        let (store, assistants, assets, workflows, links) = tokio::try_join!(
            c.store(),
            c.assistants(),
            c.assets_on_first_call(),
            c.workflows(),
            c.links()
        )?;
        Ok(Self {
            store,
            assistants,
            assets,
            search: Arc::new(SalesforceAssets(salesforce)),
            workflows,
            links,
            public_url: c.config().public_url.clone(),
            clock: c.clock(),
        })
    }
}

/// The authenticated caller, put in the request's extensions for the tools.
#[derive(Debug, Clone)]
pub struct Caller(pub AssistantToken);

/// `/mcp` (POST for requests; GET/DELETE answer as a stateless server
/// does). Every request needs `Authorization: Bearer <token>`.
pub fn router(deps: Arc<McpDeps>) -> Router {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_max_request_body_bytes(MAX_REQUEST_BYTES)
        // Host/Origin checks guard unauthenticated local servers against
        // DNS rebinding; here every request carries a bearer token, which a
        // rebinding page cannot send, and API Gateway's host varies.
        .disable_allowed_hosts();
    let tools_deps = deps.clone();
    let service = StreamableHttpService::new(
        move || Ok(Tools::new(tools_deps.clone())),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    let oauth = Router::new()
        .route(oauth::TOKEN_PATH, axum::routing::post(oauth::token))
        .route(
            oauth::AUTHORIZE_PATH,
            axum::routing::get(oauth::authorize).post(oauth::authorize),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            axum::routing::get(oauth::authorization_server),
        )
        .route(
            "/.well-known/oauth-protected-resource",
            axum::routing::get(oauth::protected_resource),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            axum::routing::get(oauth::protected_resource),
        )
        .layer(tower_http::limit::RequestBodyLimitLayer::new(16 * 1024))
        .with_state(deps.clone());
    Router::new()
        .route_service("/mcp", service)
        .layer(middleware::from_fn_with_state(deps, authenticate))
        .merge(oauth)
}

/// The bearer token of the request, if it has one.
fn bearer(req: &Request) -> Option<&str> {
    let v = req
        .headers()
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

async fn authenticate(State(deps): State<Arc<McpDeps>>, mut req: Request, next: Next) -> Response {
    let base = oauth::base_url(&deps, req.headers());
    let Some(token) = bearer(&req) else {
        return unauthorized(&base, None, "send Authorization: Bearer <token>");
    };
    // A static token is looked up by its hash; an access token from the
    // token endpoint is checked, then its client's record is read (so a
    // revoked client's tokens stop at once).
    let (hash, expect) = if oauth::looks_like_access_token(token) {
        match oauth::verify(&deps.links, token, deps.clock.now()) {
            Ok(claims) => (claims.cth, Some(claims.sub)),
            Err(e) => return unauthorized(&base, Some("invalid_token"), &e.to_string()),
        }
    } else {
        (AssistantToken::hash(token), None)
    };
    match deps.assistants.by_hash(&hash).await {
        Ok(Some(t))
            if t.is_active()
                && match &expect {
                    None => t.kind == CredentialKind::Bearer,
                    Some(client) => t.kind == CredentialKind::ClientCredentials && &t.id == client,
                } =>
        {
            req.extensions_mut().insert(Caller(t));
            next.run(req).await
        }
        // Unknown and revoked look the same to the caller.
        Ok(_) => unauthorized(
            &base,
            Some("invalid_token"),
            "the token is unknown or revoked",
        ),
        Err(e) => {
            tracing::error!(error = %Chain(&e), "reading assistant tokens failed");
            (
                http::StatusCode::SERVICE_UNAVAILABLE,
                [(http::header::RETRY_AFTER, "5")],
                axum::Json(serde_json::json!({"error": "temporarily unavailable"})),
            )
                .into_response()
        }
    }
}

/// RFC 6750: 401 with the challenge (an error code only when a token was
/// sent), naming the protected resource metadata (RFC 9728) where OAuth
/// clients find the token endpoint.
fn unauthorized(base: &str, code: Option<&str>, description: &str) -> Response {
    let metadata = oauth::resource_metadata_url(base);
    let challenge = match code {
        Some(code) => format!(
            "Bearer realm=\"fieldgate\", error=\"{code}\", error_description=\"{description}\", resource_metadata=\"{metadata}\""
        ),
        None => format!("Bearer realm=\"fieldgate\", resource_metadata=\"{metadata}\""),
    };
    let code = code.unwrap_or("unauthorized");
    (
        http::StatusCode::UNAUTHORIZED,
        [(http::header::WWW_AUTHENTICATE, challenge)],
        axum::Json(serde_json::json!({"error": code, "error_description": description})),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
