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
