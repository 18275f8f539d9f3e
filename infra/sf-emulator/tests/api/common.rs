//! Starts an emulator on a loopback port and talks real HTTP to it.

#![allow(dead_code)]

use fieldgate_sf_emulator::{Emulator, EmulatorConfig};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

pub const V: &str = "/services/data/v66.0";

pub struct Org {
    pub em: Emulator,
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
}

pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Reply {
    pub fn limit(&self) -> Option<String> {
        self.headers
            .get("sforce-limit-info")
            .map(|v| v.to_str().unwrap().to_string())
    }
}

pub async fn serve(em: &Emulator) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(em.clone().serve(listener));
    format!("http://{addr}")
}

pub async fn start() -> Org {
    start_with(EmulatorConfig::default()).await
}

pub async fn start_with(config: EmulatorConfig) -> Org {
    let em = Emulator::new(config).unwrap();
    let base = serve(&em).await;
    let http = reqwest::Client::new();
    let mut org = Org {
        em,
        base,
        http,
        token: String::new(),
    };
    org.token = org.new_token().await;
    org
}

pub async fn reply(r: reqwest::Response) -> Reply {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let raw = r.bytes().await.unwrap().to_vec();
    let body = if raw.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&raw).unwrap_or(Value::Null)
    };
    Reply {
        status,
        headers,
        body,
        raw,
    }
}

impl Org {
    pub async fn token_call(&self, form: &[(&str, &str)]) -> Reply {
        reply(
            self.http
                .post(format!("{}/services/oauth2/token", self.base))
                .form(form)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn new_token(&self) -> String {
        let r = self
            .token_call(&[
                ("grant_type", "client_credentials"),
                ("client_id", &self.em.config().client_id),
                ("client_secret", &self.em.config().client_secret),
            ])
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["access_token"].as_str().unwrap().to_string()
    }

    /// `path` is either absolute (`/services/...`) or relative to v66.0.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("/services/") {
            format!("{}{path}", self.base)
        } else {
            format!("{}{V}{path}", self.base)
        }
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        reply(req.bearer_auth(&self.token).send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(self.http.post(self.url(path)).json(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(self.http.patch(self.url(path)).json(&body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.http.delete(self.url(path))).await
    }

    pub async fn query(&self, soql: &str) -> Reply {
        self.send(self.http.get(self.url("/query")).query(&[("q", soql)]))
            .await
    }

    pub async fn create_case(&self, subject: &str) -> String {
        let r = self
            .post("/sobjects/Case/", json!({"Subject": subject}))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    }
}

/// The single error entry of a Salesforce error array.
pub fn only_error(body: &Value) -> &Value {
    let arr = body
        .as_array()
        .unwrap_or_else(|| panic!("not an error array: {body}"));
    assert_eq!(arr.len(), 1, "{body}");
    &arr[0]
}
