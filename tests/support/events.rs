//! The events AWS services hand a function, built as they send them: API
//! Gateway HTTP API (payload format 2.0) requests and their responses, and
//! EventBridge's scheduled event.

use base64::Engine;
use serde_json::{Map, Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One HTTP API request as API Gateway delivers it to the function of
/// `route` (e.g. `"ANY /q/{code}"`).
pub struct HttpApiRequest<'a> {
    pub method: &'a str,
    pub route: &'a str,
    pub path: &'a str,
    pub headers: Vec<(&'a str, String)>,
    pub body: Option<&'a [u8]>,
}

impl<'a> HttpApiRequest<'a> {
    pub fn get(route: &'a str, path: &'a str) -> Self {
        Self {
            method: "GET",
            route,
            path,
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn post(route: &'a str, path: &'a str, content_type: &str, body: &'a [u8]) -> Self {
        Self {
            method: "POST",
            route,
            path,
            headers: vec![("content-type", content_type.to_owned())],
            body: Some(body),
        }
    }

    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The payload-format-2.0 event: lower-case headers, the path
    /// parameters of the route, and a body that API Gateway base64-encodes
    /// unless it is text.
    pub fn event(&self) -> Value {
        let (raw_path, query) = self.path.split_once('?').unwrap_or((self.path, ""));
        let domain = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com";
        let mut headers = Map::new();
        headers.insert("host".into(), domain.into());
        headers.insert("user-agent".into(), "Mozilla/5.0 (fieldgate test)".into());
        headers.insert("x-forwarded-for".into(), "198.51.100.7".into());
        headers.insert("x-forwarded-proto".into(), "https".into());
        headers.insert("x-forwarded-port".into(), "443".into());
        for (k, v) in &self.headers {
            headers.insert(k.to_ascii_lowercase(), Value::String(v.clone()));
        }
        let (_, template) = self.route.split_once(' ').expect("route is `METHOD /path`");
        let mut params = Map::new();
        for (t, p) in template.split('/').zip(raw_path.split('/')) {
            if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                params.insert(name.trim_end_matches('+').into(), p.into());
            }
        }
        let query_params: Map<String, Value> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        let text = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .is_some_and(|(_, v)| {
                v.starts_with("text/")
                    || v.starts_with("application/json")
                    || v.starts_with("application/x-www-form-urlencoded")
            });
        let mut ev = json!({
            "version": "2.0",
            "routeKey": self.route,
            "rawPath": raw_path,
            "rawQueryString": query,
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "a1b2c3d4e5",
                "domainName": domain,
                "domainPrefix": "a1b2c3d4e5",
                "http": {
                    "method": self.method,
                    "path": raw_path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "198.51.100.7",
                    "userAgent": "Mozilla/5.0 (fieldgate test)"
                },
                "requestId": "JKJaXmPLvHcESHA=",
                "routeKey": self.route,
                "stage": "$default",
                "time": "01/Dec/2026:14:00:00 +0000",
                "timeEpoch": 1796133600000u64
            },
            "isBase64Encoded": false
        });
        if !params.is_empty() {
            ev["pathParameters"] = Value::Object(params);
        }
        if !query_params.is_empty() {
            ev["queryStringParameters"] = Value::Object(query_params);
        }
        if let Some(body) = self.body {
            if text {
                ev["body"] = String::from_utf8_lossy(body).into_owned().into();
            } else {
                ev["body"] = B64.encode(body).into();
                ev["isBase64Encoded"] = true.into();
            }
        }
        ev
    }
}

/// A function's answer to an HTTP API request (payload format 2.0).
#[derive(Debug)]
pub struct HttpApiResponse {
    pub status: u16,
    pub headers: Map<String, Value>,
    pub body: Vec<u8>,
}

impl HttpApiResponse {
    pub fn parse(v: &Value) -> HttpApiResponse {
        let status = v["statusCode"]
            .as_u64()
            .unwrap_or_else(|| panic!("no statusCode in {v:#}")) as u16;
        let raw = v["body"].as_str().unwrap_or("");
        let body = if v["isBase64Encoded"].as_bool() == Some(true) {
            B64.decode(raw).expect("base64 body")
        } else {
            raw.as_bytes().to_vec()
        };
        HttpApiResponse {
            status,
            headers: v["headers"].as_object().cloned().unwrap_or_default(),
            body,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str())
    }
}

/// The event EventBridge Scheduler (a SAM `Schedule` event) sends.
pub fn scheduled_event(rule: &str) -> Value {
    json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-12-01T14:00:00Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:events:us-east-1:123456789012:rule/{rule}")],
        "detail": {}
    })
}

/// A form part: name, optional (file name, content type), bytes.
pub type Part<'a> = (&'a str, Option<(&'a str, &'a str)>, &'a [u8]);

/// A multipart/form-data body: its content type and bytes.
pub fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let b = "fgBoundary7";
    let mut body = Vec::new();
    for (name, file, data) in parts {
        body.extend_from_slice(format!("--{b}\r\n").as_bytes());
        match file {
            Some((f, ct)) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: {ct}\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}
