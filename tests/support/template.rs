//! Reads what `template.yaml` gives each function (its environment, its
//! timeout, its stream filter), so the tests that run the real binaries
//! start them with the template's own wiring rather than a copy that could
//! drift. A small reader of the template's block style, not a YAML
//! library: CloudFormation's short tags (`!Ref`, `!If`) are kept as text and
//! resolved by [`resolve`] against the values a test stands in for.

use std::collections::{BTreeMap, HashMap};

/// template.yaml, as compiled into the tests.
pub const TEMPLATE: &str = include_str!("../../template.yaml");

/// (path of parent keys, key, value) of every `key: value` line.
fn entries(template: &str) -> Vec<(Vec<String>, String, String)> {
    let mut out = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut block_scalar_above: Option<usize> = None;
    for line in template.lines() {
        let content = line.trim_start();
        let indent = line.len() - content.len();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if let Some(i) = block_scalar_above {
            if indent > i {
                continue;
            }
            block_scalar_above = None;
        }
        // A list item's keys sit two columns in.
        let (indent, content) = match content.strip_prefix("- ") {
            Some(rest) => (indent + 2, rest),
            None => (indent, content),
        };
        let Some((key, value)) = content
            .split_once(": ")
            .or_else(|| content.strip_suffix(':').map(|k| (k, "")))
        else {
            continue;
        };
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let path: Vec<String> = stack.iter().map(|(_, k)| k.clone()).collect();
        let value = value.trim();
        if value.is_empty() {
            stack.push((indent, key.to_owned()));
        } else if matches!(value, ">" | "|" | ">-" | "|-") {
            block_scalar_above = Some(indent);
        }
        out.push((path, key.to_owned(), value.to_owned()));
    }
    out
}

/// The variables the template gives `resource` (Globals' overlaid by the
/// function's own), each as the template writes its value.
pub fn declared_environment(resource: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let globals = ["Globals", "Function", "Environment", "Variables"];
    let own = [
        "Resources",
        resource,
        "Properties",
        "Environment",
        "Variables",
    ];
    for (path, key, value) in entries(TEMPLATE) {
        if path == globals {
            env.insert(key, value);
        }
    }
    let mut found = false;
    for (path, key, value) in entries(TEMPLATE) {
        found |= path.len() == 1 && path[0] == "Resources" && key == resource;
        if path == own {
            env.insert(key, value);
        }
    }
    assert!(found, "template.yaml has no resource {resource}");
    env
}

/// The function's timeout (its own, else Globals').
pub fn timeout_seconds(resource: &str) -> u64 {
    let mut t = None;
    for (path, key, value) in entries(TEMPLATE) {
        let global = path == ["Globals", "Function"];
        let own = path == ["Resources", resource, "Properties"];
        if key == "Timeout" && (own || (global && t.is_none())) {
            t = Some(value.parse().expect("a number"));
        }
    }
    t.expect("a timeout in template.yaml")
}

/// The `FilterCriteria` pattern of the function's stream event.
pub fn stream_filter(resource: &str) -> serde_json::Value {
    let (_, _, pattern) = entries(TEMPLATE)
        .into_iter()
        .find(|(path, key, _)| path.len() > 2 && path[1] == resource && key == "Pattern")
        .unwrap_or_else(|| panic!("{resource} has no stream filter"));
    serde_json::from_str(pattern.trim_matches('\'')).expect("the pattern is JSON")
}

/// Splits `a, b, [c, d]` at its top-level commas.
fn top_level(list: &str) -> Vec<&str> {
    let (mut depth, mut quoted, mut start, mut parts) = (0, false, 0, Vec::new());
    for (i, c) in list.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                parts.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(list[start..].trim());
    parts
}

/// The value of a template expression: `!Ref NAME` from `refs`, `!If` by
/// `conditions`, literals as they are. `None` = `AWS::NoValue` (the
/// variable is not set). An expression it does not know fails the test,
/// so a new kind of wiring is noticed.
pub fn resolve(
    expr: &str,
    refs: &HashMap<&str, String>,
    conditions: &HashMap<&str, bool>,
) -> Option<String> {
    let expr = expr.trim();
    if let Some(name) = expr.strip_prefix("!Ref ") {
        if name == "AWS::NoValue" {
            return None;
        }
        return Some(
            refs.get(name)
                .unwrap_or_else(|| panic!("the test gives no value for !Ref {name}"))
                .clone(),
        );
    }
    if let Some(args) = expr.strip_prefix("!If [").and_then(|a| a.strip_suffix(']')) {
        let parts = top_level(args);
        assert_eq!(parts.len(), 3, "!If takes three arguments: {expr}");
        let holds = *conditions
            .get(parts[0])
            .unwrap_or_else(|| panic!("the test does not evaluate condition {}", parts[0]));
        return resolve(if holds { parts[1] } else { parts[2] }, refs, conditions);
    }
    assert!(
        !expr.starts_with('!'),
        "the test cannot resolve {expr}: teach tests/support/template.rs"
    );
    Some(expr.trim_matches('"').trim_matches('\'').to_owned())
}

/// The function's environment with every expression resolved.
pub fn environment(
    resource: &str,
    refs: &HashMap<&str, String>,
    conditions: &HashMap<&str, bool>,
) -> BTreeMap<String, String> {
    declared_environment(resource)
        .into_iter()
        .filter_map(|(k, v)| resolve(&v, refs, conditions).map(|v| (k, v)))
        .collect()
}

/// One `Allow` statement of a function's IAM policies on the table, as the
/// template writes it: its actions, its resource expression and, when it
/// has one, its `dynamodb:LeadingKeys` patterns (`ForAllValues:StringLike`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub actions: Vec<String>,
    pub resource: String,
    pub leading_keys: Option<Vec<String>>,
}

impl Grant {
    /// Whether this statement lets `action` touch an item whose partition
    /// key is `pk` (an index query: `pk` is `None`), on `resource`.
    pub fn allows(&self, action: &str, resource: &str, pk: Option<&str>) -> bool {
        self.actions.iter().any(|a| a == action)
            && self.resource == resource
            && match (&self.leading_keys, pk) {
                (None, _) => true,
                (Some(patterns), Some(pk)) => patterns.iter().any(|p| string_like(p, pk)),
                // Not a request the test can read a key from: refuse.
                (Some(_), None) => false,
            }
    }
}

/// IAM's `StringLike`: `*` any run of characters, `?` one.
pub fn string_like(pattern: &str, value: &str) -> bool {
    fn go(p: &[char], v: &[char]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some(('*', rest)) => (0..=v.len()).any(|i| go(rest, &v[i..])),
            Some(('?', rest)) => !v.is_empty() && go(rest, &v[1..]),
            Some((c, rest)) => v.first() == Some(c) && go(rest, &v[1..]),
        }
    }
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    go(&p, &v)
}

/// `[a, "b", 'c']` (or a single value) as its items, unquoted.
fn flow_list(value: &str) -> Vec<String> {
    let inner = value
        .trim()
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(value);
    top_level(inner)
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_matches('"').trim_matches('\'').to_owned())
        .collect()
}

/// The `Allow` statements the template gives `function`: its own
/// `Policies`, or those of the role it names (`Role: !GetAtt X.Arn`).
pub fn grants(function: &str) -> Vec<Grant> {
    let role = entries(TEMPLATE)
        .into_iter()
        .find(|(path, key, _)| path == &["Resources", function, "Properties"] && key == "Role")
        .map(|(_, _, v)| {
            v.strip_prefix("!GetAtt ")
                .and_then(|r| r.strip_suffix(".Arn"))
                .expect("Role: !GetAtt X.Arn")
                .to_owned()
        });
    let holder = role.as_deref().unwrap_or(function);
    let mut out: Vec<Grant> = Vec::new();
    let mut allow = false;
    for (path, key, value) in entries(TEMPLATE) {
        let inside = path.len() > 3
            && path[..3] == ["Resources", holder, "Properties"]
            && path[3] == "Policies"
            && path.iter().any(|k| k == "Statement");
        if !inside {
            continue;
        }
        match key.as_str() {
            "Effect" => {
                allow = value == "Allow";
                if allow {
                    out.push(Grant {
                        actions: vec![],
                        resource: String::new(),
                        leading_keys: None,
                    });
                }
            }
            "Action" if allow => out.last_mut().expect("a statement").actions = flow_list(&value),
            "Resource" if allow => out.last_mut().expect("a statement").resource = value,
            "dynamodb:LeadingKeys" if allow => {
                out.last_mut().expect("a statement").leading_keys = Some(flow_list(&value));
            }
            _ => {}
        }
    }
    assert!(
        !out.is_empty(),
        "template.yaml gives {function} no statements"
    );
    out
}

/// The resource expressions of the table and its status index, as the
/// template writes them in policies.
pub const TABLE_ARN: &str = "!GetAtt Table.Arn";
pub const STATUS_INDEX_ARN: &str = "!Sub \"${Table.Arn}/index/by_status\"";
