//! Who fieldgate is to Salesforce: the two OAuth grants (what the
//! configuration holds; the network half is in `token.rs`, behind the
//! `salesforce` feature).

use std::fmt;

/// How fieldgate proves who it is. Secrets are redacted from Debug output.
#[derive(Clone)]
pub enum Auth {
    /// OAuth 2.0 JWT bearer: the recommended server-to-server grant. No
    /// secret travels; each token is bought with a fresh signed assertion.
    JwtBearer {
        /// The connected app's consumer key (`iss`).
        client_id: String,
        /// The integration user (`sub`).
        username: String,
        /// `aud`: https://login.salesforce.com, https://test.salesforce.com
        /// or a community URL.
        audience: String,
        /// PEM of the key whose certificate is on the app (PKCS#8 or PKCS#1).
        private_key_pem: String,
    },
    ClientCredentials {
        client_id: String,
        client_secret: String,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::JwtBearer {
                client_id,
                username,
                audience,
                ..
            } => f
                .debug_struct("JwtBearer")
                .field("client_id", client_id)
                .field("username", username)
                .field("audience", audience)
                .field("private_key_pem", &"…")
                .finish(),
            Auth::ClientCredentials { client_id, .. } => f
                .debug_struct("ClientCredentials")
                .field("client_id", client_id)
                .field("client_secret", &"…")
                .finish(),
        }
    }
}

/// The `aud` Salesforce expects for a login URL: sandboxes use
/// test.salesforce.com, production and My Domain login.salesforce.com;
/// anything else (a community, the emulator) is its own audience.
pub fn default_audience(login_url: &str) -> String {
    let host = login_url
        .split("://")
        .nth(1)
        .unwrap_or(login_url)
        .split(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if host == "test.salesforce.com" || host.ends_with(".sandbox.my.salesforce.com") {
        "https://test.salesforce.com".into()
    } else if host == "login.salesforce.com" || host.ends_with(".my.salesforce.com") {
        "https://login.salesforce.com".into()
    } else {
        login_url.trim_end_matches('/').to_owned()
    }
}
